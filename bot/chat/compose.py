"""Domain rows → neutral chat messages: the reasoning, the chart, ranked causes with evidence, proposals.

Every function here reads the database and returns ``bot.messages.model`` values; nothing knows Slack or Teams.
Messages that may be edited later carry a ``key`` (``proposal:<id>``; ``investigation:<id>:<part>``).
The investigation report is read tolerantly: the engine's report format (``bot/investigate/report.py``)
and the contract's shape (``steps: [{index, kind, text}]``) are both understood.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from sqlmodel import col, select

from bot.errors import NotFound
from bot.messages.chart import chart_for_report
from bot.messages.format import phase_label
from bot.messages.format import utc_time as when
from bot.messages.model import (
    Action,
    Block,
    Cause,
    Chart,
    EvidenceItem,
    Facts,
    Message,
    ProposalBlock,
    Step,
    Text,
    incident_page,
    steps_key,
)
from bot.store.db import Database
from bot.store.models import (
    Approval,
    Evidence,
    Execution,
    Finding,
    Incident,
    Investigation,
    Proposal,
)
from bot.store.queries import investigation_and_incident

MAX_STEPS = 30
MAX_CAUSES = 5
MAX_EVIDENCE_PER_CAUSE = 4
MAX_READING = 600  # characters of the model's mechanism shown beside the engine's cause
RISKY = frozenset({"medium", "high"})
# keys of an evidence dict that hold something worth quoting (a log excerpt, a trace id, a deploy diff)
_EXCERPT_KEYS = ("excerpt", "log_excerpt", "lines", "sample", "trace_id", "trace", "commit", "version",
                 "diff", "diff_link", "revision", "message")


def person(actor: str, name: str = "") -> str:
    """How a decider is shown: their display name if known, otherwise the platform id."""
    return name or actor


# ----------------------------------------------------------------- investigation


def _steps(report: Mapping[str, Any]) -> list[Step]:
    out: list[Step] = []
    for i, s in enumerate(report.get("steps") or [], 1):
        if not isinstance(s, Mapping):
            continue
        if "text" in s:
            out.append(Step(int(s.get("index", i)), str(s.get("kind", "looked")), str(s["text"])))
            continue
        looked, concluded = str(s.get("looked_at", "")).strip(), str(s.get("concluded", "")).strip()
        text = f"{looked} → {concluded}" if looked and concluded else looked or concluded
        kind = "concluded" if s is (report.get("steps") or [None])[-1] else "looked"
        out.append(Step(int(s.get("n", i)), kind, text))
    return out


def _excerpt(ev: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for key in _EXCERPT_KEYS:
        v = ev.get(key)
        if v in (None, "", [], {}):
            continue
        if isinstance(v, list):
            v = "\n".join(str(x) for x in v[:20])
        label = {"trace_id": "trace", "diff_link": "diff", "commit": "commit", "version": "version"}.get(key)
        parts.append(f"{label} {v}" if label else str(v))
    return "\n".join(parts)


def _evidence_item(ev: Mapping[str, Any]) -> EvidenceItem:
    def num(x: Any) -> float | None:
        return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None

    return EvidenceItem(
        key=str(ev.get("id") or ev.get("key") or ""),
        source=str(ev.get("source", "")),
        summary=str(ev.get("summary", "")),
        query=str(ev.get("query", "")),
        link=str(ev.get("link", "")),
        before=num(ev.get("before")),
        after=num(ev.get("after")),
        excerpt=_excerpt(ev),
        service=str(ev.get("service", "")),
    )


def _evidence_from_rows(rows: Iterable[Evidence]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d: dict[str, Any] = dict(r.data or {})
        d.update(id=r.key, source=r.source, kind=r.kind, service=r.service, query=r.query, summary=r.summary,
                 before=r.before, after=r.after, link=r.link)
        out.append(d)
    return out


def _causes_from_rows(rows: Iterable[Finding]) -> list[dict[str, Any]]:
    return [{"service": f.service, "kind": f.kind, "confidence": f.confidence, "evidence": list(f.evidence_keys),
             "summary": f.summary} for f in sorted(rows, key=lambda f: f.rank)]


async def load_report(db: Database, investigation_id: str) -> tuple[Investigation, Incident, dict[str, Any]]:
    """The investigation, its incident, and a report dict completed from Evidence/Finding rows if needed."""
    async with db.session() as s:
        inv, inc = await investigation_and_incident(s, investigation_id)
        report: dict[str, Any] = dict(inv.report or {})
        if not report.get("evidence"):
            rows = (await s.exec(select(Evidence).where(Evidence.investigation_id == investigation_id))).all()
            report["evidence"] = _evidence_from_rows(rows)
        if not report.get("causes"):
            frows = (await s.exec(select(Finding).where(Finding.investigation_id == investigation_id))).all()
            report["causes"] = _causes_from_rows(frows)
    report.setdefault("abstained", inv.abstained)
    report.setdefault("missing", list(inv.missing))
    return inv, inc, report


async def investigation_messages(db: Database, investigation_id: str, public_url: str | None = None) -> list[Message]:
    """The reasoning steps, a chart of the key signal, and the ranked causes each with its evidence; the causes
    (the summary) link to the incident's web page when ``public_url`` is set."""
    inv, inc, report = await load_report(db, investigation_id)
    out: list[Message] = []

    if inv.status == "failed":
        text = f"The investigation of {inc.id} failed: {inv.error or 'no reason recorded'}. Try `investigate {inc.id}` again."
        return [Message(blocks=(Text(text, "warning"),), fallback=text, key=f"investigation:{inv.id}:causes")]

    steps = _steps(report)
    if steps:
        shown = steps[:MAX_STEPS]
        blocks: list[Block] = [Text(f"How I investigated {inc.id}", "heading"), *shown]
        if len(steps) > len(shown):
            blocks.append(Text(f"…and {len(steps) - len(shown)} more steps (full report: `status {inc.id}`)", "muted"))
        out.append(Message(blocks=tuple(blocks), fallback=f"Reasoning for {inc.id}: {len(steps)} steps",
                           key=steps_key(inv.id)))

    chart = await chart_for_report(report, title=f"{inc.id}: {inc.title}")
    if chart is not None:
        out.append(Message(blocks=(Chart(chart.title, chart.png, chart.filename),), fallback=chart.title,
                           key=f"investigation:{inv.id}:chart", attachments=(chart,)))

    out.append(replace(_causes_message(inv, inc, report), page_url=incident_page(public_url, inc.id)))
    return out


def model_reading(report: Mapping[str, Any]) -> Text | None:
    """The LLM investigator's accepted reading, one line marked as the model's with the evidence it cites;
    None when the model was off, refused or failed (the engine's causes then stand alone)."""
    llm = report.get("llm")
    answer = llm.get("answer") if isinstance(llm, Mapping) and llm.get("status") == "accepted" else None
    if not isinstance(answer, Mapping) or not answer.get("service"):
        return None
    cited = [str(e) for e in answer.get("evidence") or []]
    for claim in answer.get("claims") or []:
        if isinstance(claim, Mapping):
            cited += [str(e) for e in claim.get("evidence") or []]
    mechanism = " ".join(str(answer.get("mechanism") or "").split())[:MAX_READING]
    return Text(f"Model's reading (LLM investigator, not the engine's ranking): {answer['service']} "
                f"{str(answer.get('kind') or '').replace('_', ' ')}: {mechanism}"
                f"{', cites ' + ', '.join(dict.fromkeys(cited)) if cited else ''}", "muted")


def _causes_message(inv: Investigation, inc: Incident, report: Mapping[str, Any]) -> Message:
    evidence = {str(e.get("id") or e.get("key")): e for e in report.get("evidence") or [] if isinstance(e, Mapping)}
    causes = [c for c in report.get("causes") or [] if isinstance(c, Mapping)][:MAX_CAUSES]
    abstained = bool(report.get("abstained"))
    blocks: list[Block] = []
    if abstained:
        reason = str(report.get("reason") or "")
        blocks.append(Text(f"Not enough evidence to name a cause for {inc.id}." + (f" {reason}" if reason else ""),
                           "warning"))
        if causes:
            blocks.append(Text("What I saw (unconfirmed):", "muted"))
    elif causes:
        blocks.append(Text(f"Likely causes of {inc.id}", "heading"))
    else:
        blocks.append(Text(f"No cause found for {inc.id}.", "warning"))
    reading = model_reading(report)
    for rank, c in enumerate(causes, 1):
        keys = tuple(str(k) for k in c.get("evidence") or [])
        blocks.append(Cause(rank=rank, service=str(c.get("service", "")), kind=str(c.get("kind", "")),
                            confidence=float(c.get("confidence") or 0.0), evidence_keys=keys,
                            summary=str(c.get("summary", ""))))
        for k in keys[:MAX_EVIDENCE_PER_CAUSE]:
            ev = evidence.get(k)
            if ev is not None:
                blocks.append(_evidence_item(ev))
        if rank == 1 and reading is not None:  # beside the engine's leading cause, never in the ranking
            blocks.append(reading)
    if not causes and reading is not None:
        blocks.append(reading)
    missing = [str(m) for m in report.get("missing") or []]
    if missing:
        blocks.append(Text("Could not check: " + "; ".join(missing), "muted"))
    for past in (report.get("similar") or [])[:3]:
        if not isinstance(past, Mapping):
            continue
        cause = f"{past.get('cause_service')} {str(past.get('cause_kind', '')).replace('_', ' ')}".strip()
        fix = f"; fixed by: {past['fix']}" if past.get("fix") else ""
        grade = f" [{past['grade_label']}]" if past.get("grade_label") else ""
        why = f" Why: {past['why']}." if past.get("why") else ""
        link = f" {past['link']}" if past.get("link") else ""
        blocks.append(Text(f"Looks like {past.get('incident_id')} ({past.get('title', '')}): "
                           f"{cause or 'cause not established'}{fix}{grade}.{why}{link}", "muted"))
    if abstained or not causes:
        fallback = f"{inc.id}: not enough evidence to name a cause"
    else:
        top = causes[0]
        fallback = f"{inc.id}: likely cause {top.get('service')} {top.get('kind')} ({float(top.get('confidence') or 0):.0%})"
    return Message(blocks=tuple(blocks), fallback=fallback, key=f"investigation:{inv.id}:causes")


# ----------------------------------------------------------------- proposals


def _preview(p: Proposal) -> tuple[tuple[str, str], ...]:
    items = [(str(k), v if isinstance(v, str) else repr(v)) for k, v in (p.preview or {}).items()
             if k not in ("approvers",)]
    if not items:
        items = [(str(k), str(v)) for k, v in (p.params or {}).items()]
    return tuple(items[:10])


def _approvers(p: Proposal) -> tuple[str, ...]:
    raw = (p.preview or {}).get("approvers")
    return tuple(str(a) for a in raw) if isinstance(raw, list) else ()


def _actions(p: Proposal) -> tuple[Action, ...]:
    confirm = ""
    if p.risk in RISKY:
        target = f" on {p.service}" if p.service else ""
        confirm = f"Run “{p.title or p.runbook_id}”{target}? Risk: {p.risk}. This changes production."
    return (
        Action("onwatch_approve", "Approve", p.id, "primary", confirm),
        Action("onwatch_reject", "Reject", p.id, "danger"),
    )


def _description(p: Proposal, approvals: list[Approval]) -> str:
    parts = [f"Runbook `{p.runbook_id}`" + (f" for {p.service}" if p.service else "") + f" · risk {p.risk}"]
    if p.auto:
        parts.append("runs automatically (policy)")
    if p.approvals_needed > 1:
        yes = [a for a in approvals if a.decision == "approve"]
        names = ", ".join(person(a.actor, a.actor_name) for a in yes)
        parts.append(f"needs {p.approvals_needed} approvers" + (f"; approved so far by {names}" if names else ""))
    if p.status == "pending":
        parts.append(f"expires {when(p.expires_at)}")
    return " · ".join(parts)


def _decided(p: Proposal, approvals: list[Approval], execution: Execution | None) -> str:
    yes = [a for a in approvals if a.decision == "approve"]
    no = [a for a in approvals if a.decision == "reject"]
    who_yes = ", ".join(person(a.actor, a.actor_name) for a in yes) or (p.decided_by or "policy")
    at = when(p.decided_at or (yes[-1].at if yes else None))
    if p.status == "rejected":
        who = ", ".join(person(a.actor, a.actor_name) for a in no) or p.decided_by or "?"
        return f"Rejected by {who} at {when(p.decided_at or (no[-1].at if no else None))}"
    if p.status == "expired":
        return f"Expired at {when(p.expires_at)} without a decision"
    head = "Approved automatically by policy" if p.auto and not yes else f"Approved by {who_yes}"
    head += f" at {at}"
    if p.status == "approved":
        return head
    if p.status == "executing":
        return f"{head} · executing…"
    if p.status == "succeeded":
        tail = {"recovered": "; the symptom recovered", "not_recovered": "; the symptom did NOT recover",
                "pending": "; verifying"}.get(execution.verification if execution else "", "")
        return f"{head} · done{tail}"
    if p.status == "failed":
        err = f": {execution.error}" if execution and execution.error else ""
        return f"{head} · failed{err}"
    if p.status == "unknown":
        return f"{head} · state unknown (interrupted); check by hand, it will not be re-run"
    return f"{head} · {p.status}"


async def _proposal_rows(db: Database, proposal_ids: list[str]) -> list[tuple[Proposal, list[Approval], Execution | None]]:
    out = []
    async with db.session() as s:
        for pid in proposal_ids:
            p = await s.get(Proposal, pid)
            if p is None:
                continue
            approvals = list((await s.exec(select(Approval).where(Approval.proposal_id == pid)
                                          .order_by(col(Approval.at)))).all())
            execution = (await s.exec(select(Execution).where(Execution.proposal_id == pid))).first()
            out.append((p, approvals, execution))
    return out


def _proposal_message(p: Proposal, approvals: list[Approval], execution: Execution | None) -> Message:
    pending = p.status == "pending"
    block = ProposalBlock(
        proposal_id=p.id,
        title=p.title or p.runbook_id,
        description=_description(p, approvals),
        risk=p.risk,
        preview=_preview(p),
        actions=_actions(p) if pending else (),
        approvers=_approvers(p),
        decided="" if pending else _decided(p, approvals, execution),
    )
    fallback = f"Proposed: {block.title} (risk {p.risk})" if pending else f"{block.title}: {block.decided}"
    return Message(blocks=(block,), fallback=fallback, key=f"proposal:{p.id}")


async def proposal_messages(db: Database, proposal_ids: list[str], refused: list[str]) -> list[Message]:
    """One message per proposal with Approve/Reject (confirm text when risky), and a line for refused matches."""
    out = [_proposal_message(*row) for row in await _proposal_rows(db, proposal_ids)]
    if refused:
        text = "Not offered: " + "; ".join(refused)
        out.append(Message(blocks=(Text(text, "muted"),), fallback=text))
    return out


async def proposal_status_message(db: Database, proposal_id: str) -> tuple[str, Message]:
    """The proposal's message as it should look now (buttons gone once decided), with its incident id."""
    rows = await _proposal_rows(db, [proposal_id])
    if not rows:
        raise NotFound(f"proposal {proposal_id} does not exist")
    p, approvals, execution = rows[0]
    return p.incident_id, _proposal_message(p, approvals, execution)


# ----------------------------------------------------------------- incident status


async def status_message(db: Database, incident_id: str, public_url: str | None = None) -> Message | None:
    """An incident at a glance: its card facts, the latest investigation's top causes, its proposals."""
    async with db.session() as s:
        inc = await s.get(Incident, incident_id)
        if inc is None:
            return None
        inv = (await s.exec(select(Investigation).where(Investigation.incident_id == incident_id)
                            .order_by(col(Investigation.started_at).desc(), col(Investigation.id)))).first()
        proposals = (await s.exec(select(Proposal).where(Proposal.incident_id == incident_id)
                                  .order_by(col(Proposal.created_at)))).all()
    facts = [("Status", inc.status), ("Phase", phase_label(inc.phase)), ("Severity", inc.severity),
             ("Services", ", ".join(inc.services) or "–"), ("Owner", inc.owner or "–"), ("Opened", when(inc.opened_at))]
    blocks: list[Block] = [Text(f"{inc.id} · {inc.title}", "heading"), Facts(tuple(facts))]
    if inv is not None:
        causes = (inv.report or {}).get("causes") or []
        if inv.status != "done":
            blocks.append(Text(f"Investigation {inv.id}: {inv.status}", "muted"))
        elif inv.abstained or not causes:
            blocks.append(Text("Latest investigation: not enough evidence to name a cause.", "muted"))
        else:
            for rank, c in enumerate(causes[:3], 1):
                blocks.append(Cause(rank, str(c.get("service", "")), str(c.get("kind", "")),
                                    float(c.get("confidence") or 0.0), tuple(c.get("evidence") or ()),
                                    str(c.get("summary", ""))))
        reading = model_reading(inv.report or {}) if inv.status == "done" else None
        if reading is not None:  # after the engine's causes (or its abstention), never among them
            blocks.append(reading)
    for p in proposals:
        blocks.append(Text(f"Runbook {p.title or p.runbook_id}: {p.status}", "plain"))
    return Message(blocks=tuple(blocks), fallback=f"{inc.id}: {inc.status} ({inc.phase})",
                   page_url=incident_page(public_url, inc.id))
