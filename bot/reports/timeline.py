"""One incident as a reader sees it: its alerts, everything the audit trail says happened to it in order, the
investigations with their evidence, causes (or abstention) and the model's reading, proposals, decisions,
executions and verification, who acknowledged it, and what people said about its cause and fix (with the
grade of the memory that feedback made).

A read view only (the web page and ``onwatch incidents show`` both render this): it never writes. Reports
written by older or newer engines are read tolerantly — a missing or oddly typed key shows as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select

from bot.errors import NotFound
from bot.memory.grade import LABELS as GRADE_LABELS
from bot.memory.grade import Grade
from bot.reports.times import iso
from bot.store.db import Database
from bot.store.models import (
    Acknowledgement,
    Alert,
    Approval,
    AuditEvent,
    Evidence,
    Execution,
    Finding,
    Incident,
    IncidentFeedback,
    Investigation,
    Memory,
    Proposal,
)
from bot.store.queries import incident_alerts

MAX_AUDIT_ROWS = 2000
# Keys under which an investigation report may hold the LLM's evidence-checked reading, newest name first.
READING_KEYS = ("reading", "llm_reading", "narrative", "explanation")


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One thing that happened, in time order: an alert starting, or an audit row."""

    at: float
    kind: str  # alert | audit
    action: str  # the audit action, or "alert.firing" / "alert.resolved"
    actor: str
    text: str
    detail: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class EvidenceView:
    key: str
    source: str
    kind: str
    service: str
    summary: str
    query: str
    link: str
    before: float | None
    after: float | None


@dataclass(frozen=True, slots=True)
class CauseView:
    rank: int
    service: str
    kind: str
    confidence: float
    summary: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reading:
    """The model's reading of a report (kept only when its citations checked out)."""

    text: str
    cited: tuple[str, ...] = ()
    model: str = ""


@dataclass(slots=True)
class InvestigationView:
    id: str
    status: str
    requested_by: str
    started_at: float | None
    finished_at: float | None
    abstained: bool
    reason: str
    error: str
    steps: list[tuple[int, str, str]]  # (n, looked at, concluded)
    causes: list[CauseView]
    evidence: list[EvidenceView]
    missing: list[str]
    reading: Reading | None
    report: dict[str, Any]  # the raw report, for the chart


@dataclass(frozen=True, slots=True)
class DecisionView:
    actor: str
    decision: str
    at: float


@dataclass(slots=True)
class ProposalView:
    id: str
    title: str
    runbook_id: str
    service: str
    risk: str
    status: str
    auto: bool
    created_at: float
    decided_at: float | None
    decided_by: str
    decisions: list[DecisionView]
    execution: Execution | None


CAUSE_VERBS = {"confirmed": "confirmed", "ranked": "corrected", "free": "named"}


@dataclass(frozen=True, slots=True)
class FeedbackView:
    """People's word on the cause and the fix (``bot.memory.feedback``), and how far memory trusts it."""

    cause_service: str = ""
    cause_kind: str = ""
    cause_verb: str = ""  # confirmed | corrected | named; empty when nobody spoke to the cause
    cause_note: str = ""
    cause_by: str = ""
    cause_at: float | None = None
    fix: str = ""
    fix_by: str = ""
    fix_at: float | None = None
    memory: str = ""  # the memory's grade as shown ("confirmed", "fix verified", ...); empty before it is remembered

    @property
    def empty(self) -> bool:
        return not (self.cause_service or self.fix or self.memory)


def feedback_view(fb: IncidentFeedback | None, memory: Memory | None) -> FeedbackView:
    grade = ""
    if memory is not None:
        grade = GRADE_LABELS[Grade(memory.grade)] if memory.grade in set(Grade) else memory.grade
    if fb is None:
        return FeedbackView(memory=grade)
    return FeedbackView(
        cause_service=fb.cause_service, cause_kind=fb.cause_kind.replace("_", " "),
        cause_verb=CAUSE_VERBS.get(fb.cause_choice, "named") if fb.cause_service else "",
        cause_note=fb.cause_note, cause_by=fb.cause_by_name or fb.cause_by, cause_at=fb.cause_at,
        fix=fb.fix, fix_by=fb.fix_by_name or fb.fix_by, fix_at=fb.fix_at, memory=grade)


@dataclass(slots=True)
class IncidentTimeline:
    incident: Incident
    alerts: list[Alert]
    entries: list[TimelineEntry]
    investigations: list[InvestigationView]
    proposals: list[ProposalView]
    acks: list[Acknowledgement]
    feedback: FeedbackView = field(default_factory=FeedbackView)

    @property
    def latest(self) -> InvestigationView | None:
        return self.investigations[-1] if self.investigations else None


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if f == f and abs(f) != float("inf") else None


def _str(x: Any) -> str:
    return "" if x is None else str(x)


def reading_of(report: Mapping[str, Any]) -> Reading | None:
    """The model's reading if the report holds one, in whichever shape the LLM step stored it."""
    for key in READING_KEYS:
        raw = report.get(key)
        if isinstance(raw, str) and raw.strip():
            return Reading(raw.strip())
        if isinstance(raw, Mapping):
            text = _str(raw.get("text") or raw.get("summary") or raw.get("content")).strip()
            if text:
                cited = raw.get("cited") or raw.get("citations") or ()
                cited_t = tuple(str(c) for c in cited) if isinstance(cited, list | tuple) else ()
                return Reading(text, cited_t, _str(raw.get("model")))
    return None


def _steps(report: Mapping[str, Any]) -> list[tuple[int, str, str]]:
    out: list[tuple[int, str, str]] = []
    raw = report.get("steps")
    for i, s in enumerate(raw if isinstance(raw, list) else [], 1):
        if not isinstance(s, Mapping):
            continue
        n = s.get("n", s.get("index", i))
        looked = _str(s.get("looked_at")).strip()
        concluded = _str(s.get("concluded")).strip()
        if not looked and not concluded:
            looked = _str(s.get("text"))
        out.append((int(n) if isinstance(n, int) else i, looked, concluded))
    return out


def _evidence(report: Mapping[str, Any], rows: list[Evidence]) -> list[EvidenceView]:
    raw = report.get("evidence")
    if isinstance(raw, list) and raw:
        items = [e for e in raw if isinstance(e, Mapping)]
        return [EvidenceView(_str(e.get("id") or e.get("key")), _str(e.get("source")), _str(e.get("kind")),
                             _str(e.get("service")), _str(e.get("summary")), _str(e.get("query")),
                             _str(e.get("link")), _num(e.get("before")), _num(e.get("after"))) for e in items]
    return [EvidenceView(r.key, r.source, r.kind, r.service, r.summary, r.query, r.link, r.before, r.after)
            for r in rows]


def _causes(report: Mapping[str, Any], rows: list[Finding]) -> list[CauseView]:
    raw = report.get("causes")
    if isinstance(raw, list) and raw:
        out = []
        for rank, c in enumerate((c for c in raw if isinstance(c, Mapping)), 1):
            ev = c.get("evidence")
            out.append(CauseView(rank, _str(c.get("service")), _str(c.get("kind")), _num(c.get("confidence")) or 0.0,
                                 _str(c.get("summary")), tuple(str(k) for k in ev) if isinstance(ev, list) else ()))
        return out
    return [CauseView(f.rank, f.service, f.kind, f.confidence, f.summary, tuple(f.evidence_keys))
            for f in sorted(rows, key=lambda f: f.rank)]


def _audit_text(row: AuditEvent) -> str:
    p = row.params or {}
    if row.action == "investigation.step":
        looked = _str(p.get("looked_at"))
        return f"{looked} → {row.result}" if row.result else looked
    return row.result or ", ".join(f"{k}={v}" for k, v in list(p.items())[:4] if not isinstance(v, dict | list))


def actor_of(row: AuditEvent) -> str:
    who = row.actor_name or row.actor_id
    return who if row.actor_platform == "onwatch" else f"{who} ({row.actor_platform})"


def _alert_entries(alerts: list[Alert]) -> list[TimelineEntry]:
    out = []
    for a in alerts:
        text = f"{a.name} on {a.service or '?'} [{a.severity}]"
        summary = a.annotations.get("summary") or a.annotations.get("description") or ""
        if summary:
            text += f": {summary}"
        if a.suppressed:
            text += f" (suppressed: {a.suppressed})"
        out.append(TimelineEntry(a.starts_at, "alert", "alert.firing", a.source, text,
                                 {"fingerprint": a.fingerprint, "duplicates": a.duplicates}))
        if a.status == "resolved" and a.ends_at is not None:
            out.append(TimelineEntry(a.ends_at, "alert", "alert.resolved", a.source, f"{a.name} on {a.service} resolved"))
    return out


async def incident_timeline(db: Database, incident_id: str) -> IncidentTimeline:
    """Everything about one incident; ``NotFound`` when there is no such incident."""
    async with db.session() as s:
        inc = await s.get(Incident, incident_id)
        if inc is None:
            raise NotFound(f"there is no incident {incident_id}")
        alerts = await incident_alerts(s, incident_id)
        audit_rows = list((await s.exec(select(AuditEvent).where(AuditEvent.incident_id == incident_id)
                                        .order_by(col(AuditEvent.seq)).limit(MAX_AUDIT_ROWS))).all())
        invs = list((await s.exec(select(Investigation).where(Investigation.incident_id == incident_id))).all())
        invs.sort(key=lambda i: (i.started_at or 0.0, i.id))
        inv_views = []
        for inv in invs:
            report: dict[str, Any] = dict(inv.report) if isinstance(inv.report, Mapping) else {}
            ev_rows = list((await s.exec(select(Evidence).where(Evidence.investigation_id == inv.id)
                                         .order_by(col(Evidence.id)))).all())
            f_rows = list((await s.exec(select(Finding).where(Finding.investigation_id == inv.id))).all())
            missing = report.get("missing")
            inv_views.append(InvestigationView(
                id=inv.id, status=inv.status, requested_by=inv.requested_by, started_at=inv.started_at,
                finished_at=inv.finished_at, abstained=bool(report.get("abstained", inv.abstained)),
                reason=_str(report.get("reason")), error=inv.error, steps=_steps(report),
                causes=_causes(report, f_rows), evidence=_evidence(report, ev_rows),
                missing=[str(m) for m in missing] if isinstance(missing, list) else list(inv.missing),
                reading=reading_of(report), report=report))
        proposals = list((await s.exec(select(Proposal).where(Proposal.incident_id == incident_id)
                                       .order_by(col(Proposal.created_at)))).all())
        p_views = []
        for p in proposals:
            approvals = (await s.exec(select(Approval).where(Approval.proposal_id == p.id)
                                      .order_by(col(Approval.at)))).all()
            execution = (await s.exec(select(Execution).where(Execution.proposal_id == p.id))).first()
            p_views.append(ProposalView(p.id, p.title or p.runbook_id, p.runbook_id, p.service, p.risk, p.status,
                                        p.auto, p.created_at, p.decided_at, p.decided_by,
                                        [DecisionView(a.actor_name or a.actor, a.decision, a.at) for a in approvals],
                                        execution))
        acks = list((await s.exec(select(Acknowledgement).where(Acknowledgement.incident_id == incident_id)
                                  .order_by(col(Acknowledgement.at)))).all())
        feedback = feedback_view(await s.get(IncidentFeedback, incident_id),
                                 (await s.exec(select(Memory).where(Memory.incident_id == incident_id))).first())
    entries = _alert_entries(alerts) + [
        TimelineEntry(r.at, "audit", r.action, actor_of(r), _audit_text(r), dict(r.params or {}), r.seq)
        for r in audit_rows
    ]
    entries.sort(key=lambda e: (e.at, 0 if e.kind == "alert" else 1, e.seq or 0))
    return IncidentTimeline(inc, alerts, entries, inv_views, p_views, acks, feedback)


def _feedback_dict(f: FeedbackView) -> dict[str, Any]:
    cause = None if not f.cause_service else {
        "service": f.cause_service, "kind": f.cause_kind, "how": f.cause_verb, "note": f.cause_note,
        "by": f.cause_by, "at": iso(f.cause_at)}
    fix = None if not f.fix else {"text": f.fix, "by": f.fix_by, "at": iso(f.fix_at)}
    return {"cause": cause, "fix": fix, "memory": f.memory or None}


def timeline_dict(t: IncidentTimeline) -> dict[str, Any]:
    """The timeline as JSON-ready data (``onwatch incidents show --json``); times are Unix seconds and ISO."""
    inc = t.incident

    def ex(e: Execution | None) -> dict[str, Any] | None:
        if e is None:
            return None
        return {"id": e.id, "status": e.status, "auto": e.auto, "started_at": iso(e.started_at),
                "finished_at": iso(e.finished_at), "before": e.before, "after": e.after, "error": e.error,
                "verification": e.verification, "verified_at": iso(e.verified_at)}

    return {
        "id": inc.id, "title": inc.title, "status": inc.status, "phase": inc.phase, "severity": inc.severity,
        "services": list(inc.services), "owner": inc.owner, "source": inc.source, "alert_count": inc.alert_count,
        "opened_at": iso(inc.opened_at), "resolved_at": iso(inc.resolved_at), "summary": inc.summary,
        "acknowledgements": [{"actor": a.actor_name or a.actor, "at": iso(a.at)} for a in t.acks],
        "feedback": _feedback_dict(t.feedback),
        "timeline": [{"at": iso(e.at), "kind": e.kind, "action": e.action, "actor": e.actor, "text": e.text}
                     for e in t.entries],
        "investigations": [
            {"id": v.id, "status": v.status, "started_at": iso(v.started_at), "finished_at": iso(v.finished_at),
             "abstained": v.abstained, "reason": v.reason, "error": v.error,
             "steps": [{"n": n, "looked_at": a, "concluded": c} for n, a, c in v.steps],
             "causes": [{"rank": c.rank, "service": c.service, "kind": c.kind, "confidence": c.confidence,
                         "summary": c.summary, "evidence": list(c.evidence)} for c in v.causes],
             "evidence": [{"id": e.key, "source": e.source, "kind": e.kind, "service": e.service,
                           "summary": e.summary, "query": e.query, "link": e.link, "before": e.before,
                           "after": e.after} for e in v.evidence],
             "missing": v.missing,
             "reading": None if v.reading is None else {"text": v.reading.text, "cited": list(v.reading.cited)}}
            for v in t.investigations
        ],
        "proposals": [
            {"id": p.id, "title": p.title, "runbook_id": p.runbook_id, "service": p.service, "risk": p.risk,
             "status": p.status, "auto": p.auto, "created_at": iso(p.created_at), "decided_at": iso(p.decided_at),
             "decisions": [{"actor": d.actor, "decision": d.decision, "at": iso(d.at)} for d in p.decisions],
             "execution": ex(p.execution)}
            for p in t.proposals
        ],
    }
