"""Investigations as durable work: request one (a row, an audit row, a job), run one (the job handler).

The engine stays pure; this module loads the incident and its alerts, builds the scope, runs the
engine over the sources the context provides, stores the report, evidence and findings, writes an
audit row per reasoning step, and tells the chat and the remediation service. While the engine runs,
each reasoning step is posted to the incident thread as it is made (keyed ``step:<inv>:<n>``), and
the root card moves to "Investigating" at the start. When an LLM is configured, the LLM investigator
(``bot.investigate.llm``) continues from the finished report with read-only tools; its checked answer is stored as
``report["llm"]`` beside the engine's ranking, and a failing endpoint is a line of ``missing``, never a
failed investigation.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.audit import BOT, audit
from bot.config import MemorySettings
from bot.context import AppContext
from bot.incidents.lifecycle import IncidentPhase, transition
from bot.incidents.outbox import EventKind, emit
from bot.investigate.engine import PastIncident, StepCallback, investigate
from bot.investigate.llm.investigator import configured, investigate_report
from bot.investigate.llm.loop import CallRecord, LlmOutcome, LlmStatus, off
from bot.investigate.llm.thread import LlmThread
from bot.investigate.report import Report, Step
from bot.investigate.scope import build_scope, window_end
from bot.investigate.tiebreak import tie_broken
from bot.memory.similar import Signature, report_facets
from bot.memory.store import Recalled, recall
from bot.messages.model import incident_page
from bot.store.models import Alert, Evidence, Finding, Incident, Investigation
from bot.store.queries import incident_alerts, investigation_and_incident
from integrations.base import Sources

EarlyWarnings = Callable[[str, Sequence[str]], Awaitable[list[dict[str, Any]]]]
"""``(incident_id, services) -> evidence``: joins the open early warnings of these services to the incident
(``bot.watch.service.WatchService.escalate``, plugged in by the composition root) and returns each one as an
evidence dict; the investigation starts from them and keeps them in its report (``early_warnings``)."""


async def _load(ctx: AppContext, investigation_id: str) -> tuple[Investigation, Incident, list[Alert]]:
    async with ctx.db.session() as s:
        inv, incident = await investigation_and_incident(s, investigation_id)
        alerts = await incident_alerts(s, incident.id)
    return inv, incident, alerts


def _memory_settings(ctx: AppContext) -> MemorySettings:
    cfg = getattr(getattr(ctx, "settings", None), "memory", None)
    return cfg if isinstance(cfg, MemorySettings) else MemorySettings()


def past_incidents(found: list[Recalled]) -> list[PastIncident]:
    """Recalled memories as the engine sees them; their grade decides whether they may act as a prior."""
    return [PastIncident(r.incident_id or r.ref, tuple(r.services), r.cause_service, r.cause_kind, r.title, r.fix,
                         grade=str(r.grade)) for r in found]


def report_signature(services: list[str], alertnames: list[str], title: str, data: dict[str, Any]) -> Signature:
    """The present incident after its investigation: the facets of its report, its leading suspects (a past
    incident caused in one of them is a closer look-alike) and the text of its causes."""
    facets = report_facets(data)
    top = [c for c in (data.get("causes") or [])[:3] if isinstance(c, dict)]
    causes = " ".join(str(c.get("summary", "")) for c in top)
    suspects = [str(c["service"]) for c in top if c.get("service")]
    return Signature.of([*services, *suspects], alertnames, facets["failure_classes"], facets["signal_kinds"],
                        facets["log_templates"], f"{title} {causes}".strip())


async def _past(ctx: AppContext, incident: Incident, alertnames: list[str]) -> list[PastIncident]:
    cfg = _memory_settings(ctx)
    found = await recall(ctx.db, Signature.of(incident.services, alertnames, text=incident.title),
                         exclude=incident.id, limit=cfg.recall_limit, min_score=cfg.min_score,
                         text_weight=cfg.text_weight)
    return past_incidents(found)


async def _similar(ctx: AppContext, incident: Incident, alertnames: list[str], data: dict[str, Any]) -> list[Recalled]:
    """The look-alikes of the present incident over everything the investigation found (its report ``data``)."""
    cfg = _memory_settings(ctx)
    return await recall(ctx.db, report_signature(list(incident.services), alertnames, incident.title, data),
                        exclude=incident.id, limit=cfg.recall_limit, min_score=cfg.min_score,
                        text_weight=cfg.text_weight)


def _show_similar(ctx: AppContext, data: dict[str, Any], found: list[Recalled]) -> None:
    """Replace the report's look-alikes by ``found``, each with why it matched, its grade and a link to its page."""
    public_url = getattr(getattr(getattr(ctx, "settings", None), "server", None), "public_url", None)
    data.pop("similar", None)
    if found:
        data["similar"] = [r.to_dict(incident_page(public_url, r.incident_id) if r.incident_id else "") for r in found]


async def run_investigation(ctx: AppContext, investigation_id: str, sources: Sources | None = None,
                            early_warnings: EarlyWarnings | None = None) -> None:
    """Run one queued investigation to the end and record everything it did."""
    inv, incident, alerts = await _load(ctx, investigation_id)
    if inv.status == "done":
        return  # a redelivered job: the report is already stored
    async with ctx.db.begin() as s:
        row = await s.get(Investigation, investigation_id)
        assert row is not None
        row.status = "running"
        row.started_at = time.time()
        s.add(row)
        await transition(s, ctx.db, incident.id, IncidentPhase.INVESTIGATING, BOT, late_ok=True,
                         params={"investigation_id": investigation_id})
    await ctx.outbox.flush()  # the card moves to "Investigating" before the first step is posted
    firing = [a for a in alerts if a.status == "firing"] or alerts
    onset = min((a.starts_at for a in firing), default=incident.opened_at)
    symptoms = sorted({a.service for a in firing if a.service} | set(incident.services))
    alertnames = sorted({a.name for a in firing})
    warnings = await early_warnings(incident.id, symptoms) if early_warnings is not None else []
    if warnings:
        await ctx.outbox.flush()  # "Early warning since ..." is in the thread before the first step
    src = sources if sources is not None else ctx.sources_factory()
    try:
        now = window_end(onset, src.clock())  # a late or re-run job looks at the alert's time, not today
        triage = getattr(ctx.settings, "triage", None)
        scope = build_scope(symptoms, onset, now, incident_id=incident.id, title=incident.title,
                            alert_names=alertnames, topology=getattr(triage, "topology", {}) or {},
                            owners=getattr(triage, "owners", {}) or {}, alert_labels=[a.labels for a in firing])
        past = await _past(ctx, incident, alertnames)
        report = await investigate(scope, src, past, on_step=_step_poster(ctx, incident.id, investigation_id))
        llm = await _investigate_llm(ctx, incident.id, investigation_id, report, src)  # needs the sources open
    except Exception as exc:  # noqa: BLE001 - recorded on the row and in the audit trail, then re-raised
        async with ctx.db.begin() as s:
            row = await s.get(Investigation, investigation_id)
            if row is not None:
                row.status = "failed"
                row.error = f"{type(exc).__name__}: {exc}"[:4000]
                row.finished_at = time.time()
                s.add(row)
            await audit(ctx.db, BOT, "investigation.failed", incident_id=incident.id,
                        params={"investigation_id": investigation_id}, result=f"{type(exc).__name__}: {exc}", session=s)
        raise
    finally:
        await src.aclose()
    found = await _similar(ctx, incident, alertnames, report.to_dict())
    report = tie_broken(report, past_incidents(found))  # a confirmed look-alike orders what the evidence left tied
    data = report.to_dict()
    _show_similar(ctx, data, found)
    data["llm"] = llm.to_dict()
    if warnings:
        data["early_warnings"] = warnings
        data["evidence"] = [*data.get("evidence", []), *warnings]
    if llm.status == LlmStatus.ERROR:
        data["missing"] = sorted({*data.get("missing", []), f"llm: {llm.reason}"})
    await _store(ctx, investigation_id, incident.id, report, data)
    await ctx.outbox.flush()
    if report.causes and not report.abstained and ctx.remediation is not None:
        await ctx.remediation.propose(incident.id, investigation_id)


def _step_poster(ctx: AppContext, incident_id: str, investigation_id: str) -> StepCallback:
    """A callback that shows each reasoning step in the incident thread as the engine makes it.

    Each step is an ``investigation.steps`` event carrying the reasoning so far, published at once: the thread
    shows one message, posted with the first step and edited with each next one (adapters coalesce rapid
    edits); the final summary replaces it under the same key.
    """
    shown: list[list[Any]] = []

    async def post(step: Step) -> None:
        shown.append([step.n, step.kind, step.text])
        async with ctx.db.begin() as s:
            await emit(s, incident_id, EventKind.INVESTIGATION_STEPS,
                       {"investigation_id": investigation_id, "steps": list(shown)})
        await ctx.outbox.flush()

    return post


async def _investigate_llm(ctx: AppContext, incident_id: str, investigation_id: str, report: Report,
                          src: Sources) -> LlmOutcome:
    """With ``llm:`` configured, the investigator continues from the report (docs/llm.md): every model call
    an audit row, its steps and its checked reading in the thread as the model's. It never raises for the
    model's sake, and never changes ``report``."""
    cfg = getattr(getattr(ctx, "settings", None), "llm", None)
    if not configured(cfg):
        return off()

    async def on_call(rec: CallRecord) -> None:
        await audit(ctx.db, BOT, "llm.call", incident_id=incident_id,
                    params={"investigation_id": investigation_id, **rec.params()}, result=rec.outcome)

    thread = LlmThread(ctx.db, ctx.outbox, incident_id, investigation_id)
    outcome = await investigate_report(cfg, report, src, on_call=on_call, on_step=thread.step)
    await thread.finish(outcome)
    return outcome


async def _store(ctx: AppContext, investigation_id: str, incident_id: str, report: Report, data: dict[str, Any]) -> None:
    async with ctx.db.begin() as s:
        row = await s.get(Investigation, investigation_id)
        assert row is not None
        row.status = "done"
        row.finished_at = time.time()
        row.abstained = report.abstained
        row.report = data
        row.missing = list(data.get("missing", report.missing))
        s.add(row)
        for e in report.evidence:
            s.add(Evidence(
                investigation_id=investigation_id, key=e.id, source=e.source[:64], kind=e.kind[:64],
                service=e.service[:300], query=e.query[:4000], summary=e.summary[:4000],
                before=e.before, after=e.after, link=e.link[:4000],
                data={"signal": e.signal, "z": round(e.z, 6), "onset": e.onset},
            ))
        for w in data.get("early_warnings") or []:
            s.add(Evidence(investigation_id=investigation_id, key=str(w["id"])[:64], source="watch",
                           kind="early_warning", service=str(w.get("service", ""))[:300],
                           summary=str(w.get("summary", ""))[:4000], before=w.get("before"), after=w.get("after"),
                           data={"signal": w.get("signal", ""), "onset": w.get("onset"),
                                 "watch_item": w.get("watch_item"), "watch_key": w.get("watch_key")}))
        for rank, c in enumerate(report.causes, 1):
            s.add(Finding(investigation_id=investigation_id, rank=rank, service=c.service[:300], kind=c.kind[:64],
                          confidence=c.confidence, evidence_keys=list(c.evidence), summary=c.summary[:4000]))
        for st in report.steps:
            await audit(ctx.db, BOT, "investigation.step", incident_id=incident_id,
                        params={"investigation_id": investigation_id, "n": st.n, "looked_at": st.looked_at},
                        result=st.concluded, session=s)
        found = not report.abstained and bool(report.causes)
        await transition(s, ctx.db, incident_id, IncidentPhase.CAUSE_FOUND if found else IncidentPhase.INCONCLUSIVE,
                         BOT, late_ok=True, params={"investigation_id": investigation_id})
        await emit(s, incident_id, EventKind.INVESTIGATION_FINISHED, {"investigation_id": investigation_id})
        top = report.causes[0] if report.causes else None
        await audit(
            ctx.db, BOT, "investigation.result", incident_id=incident_id,
            params={"investigation_id": investigation_id, "abstained": report.abstained,
                    "causes": [c.to_dict() for c in report.causes[:5]], "missing": row.missing},
            result=("not enough evidence: " + report.reason) if report.abstained or top is None
            else f"{top.service} {top.kind} ({top.confidence:.2f})",
            session=s,
        )


async def handle_job(ctx: AppContext, payload: dict[str, Any], early_warnings: EarlyWarnings | None = None) -> None:
    """The job handler core: ``payload`` is ``{"investigation_id": ...}``."""
    await run_investigation(ctx, str(payload["investigation_id"]), early_warnings=early_warnings)
