"""Remember resolved incidents, recall the most similar ones, and list, show or forget what is remembered.

A memory keeps an incident's cause (a person's word from ``incident_feedback`` when there is one, else the
engine's leading cause), its fix (a person's word, else the runbook that ran and succeeded), a signature
(services, alerts, failure classes, evidence signals, log templates) and text, and a grade
(``bot.memory.grade``). Recall scores every memory with ``bot.memory.similar`` and says why each matched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, delete, select

from bot.audit import BOT, Actor, audit
from bot.errors import NotFound
from bot.memory.grade import LABELS, Grade
from bot.memory.similar import Signature, rank, report_facets
from bot.store.db import Database
from bot.store.models import (
    AuditEvent,
    Execution,
    Finding,
    Incident,
    IncidentFeedback,
    Investigation,
    Memory,
    Proposal,
)
from bot.store.queries import incident_alerts

FORGOTTEN = "memory.forgotten"


class MemoryNotFound(NotFound):
    """No memory by that name."""


@dataclass(frozen=True, slots=True)
class Recalled:
    """A past incident like the present one, with the reason it matched."""

    ref: str
    incident_id: str | None
    title: str
    services: tuple[str, ...]
    cause_service: str
    cause_kind: str
    fix: str
    similarity: float
    resolved_at: float
    grade: str = Grade.UNCONFIRMED
    why: str = ""
    cause_text: str = ""
    source: str = "incident"
    signature_score: float = 0.0
    text_score: float = 0.0

    @property
    def grade_label(self) -> str:
        return LABELS.get(Grade(self.grade), self.grade) if self.grade in Grade.__members__.values() else self.grade

    def to_dict(self, link: str = "") -> dict[str, Any]:
        return {"incident_id": self.incident_id or self.ref, "ref": self.ref, "title": self.title,
                "cause_service": self.cause_service, "cause_kind": self.cause_kind, "cause": self.cause_text,
                "fix": self.fix, "grade": str(self.grade), "grade_label": self.grade_label, "why": self.why,
                "score": self.similarity, "signature_score": self.signature_score, "text_score": self.text_score,
                "link": link}


def memory_text(m: Memory) -> str:
    return " ".join(x for x in (m.title, m.cause_text, m.fix, m.text, " ".join(m.tags)) if x)


def memory_signature(m: Memory) -> Signature:
    sig = m.signature or {}
    services = set(m.services) | ({m.cause_service} if m.cause_service else set())
    return Signature.of(services, sig.get("alertnames", []), [*sig.get("failure_classes", []), m.cause_kind],
                        sig.get("signal_kinds", []), sig.get("log_templates", []), memory_text(m))


async def remember(db: Database, incident_id: str) -> Memory | None:
    """Store (or refresh) what an incident was and what fixed it. Idempotent per incident."""
    async with db.begin() as s:
        inc = await s.get(Incident, incident_id)
        if inc is None:
            return None
        alertnames = sorted({a.name for a in await incident_alerts(s, incident_id)})
        inv = (await s.exec(
            select(Investigation)
            .where(Investigation.incident_id == incident_id, Investigation.status == "done")
            .order_by(col(Investigation.finished_at).desc())
        )).first()
        top: Finding | None = None
        if inv is not None and not inv.abstained:
            top = (await s.exec(select(Finding).where(Finding.investigation_id == inv.id)
                                .order_by(col(Finding.rank)))).first()
        fixed = (await s.exec(
            select(Proposal.title)
            .join(Execution, col(Execution.proposal_id) == col(Proposal.id))
            .where(Proposal.incident_id == incident_id, Execution.status == "succeeded")
        )).first()
        fb = await s.get(IncidentFeedback, incident_id)
        mem = (await s.exec(select(Memory).where(Memory.incident_id == incident_id))).first()
        if mem is None:
            mem = Memory(ref=incident_id, incident_id=incident_id)
        mem.title = inc.title
        mem.services = list(inc.services)
        if fb is not None and fb.cause_service:
            mem.cause_service, mem.cause_kind = fb.cause_service, fb.cause_kind
            mem.cause_text = fb.cause_note or f"{fb.cause_kind.replace('_', ' ')} in {fb.cause_service}"
            mem.grade, mem.graded_by, mem.graded_at = Grade.CONFIRMED, fb.cause_by, fb.cause_at
            mem.grade_note = f"cause {fb.cause_choice} by {fb.cause_by_name or fb.cause_by}"
        else:
            mem.cause_service = top.service if top else ""
            mem.cause_kind = top.kind if top else ""
            mem.cause_text = top.summary if top else ""
        mem.fix = (fb.fix if fb is not None and fb.fix else "") or fixed or ""
        mem.signature = {"alertnames": alertnames, "severity": inc.severity,
                         **report_facets(inv.report if inv is not None else {})}
        mem.resolved_at = inc.resolved_at or time.time()
        s.add(mem)
        await audit(db, BOT, "memory.remembered", incident_id=incident_id,
                    params={"cause_service": mem.cause_service, "cause_kind": mem.cause_kind, "fix": mem.fix,
                            "grade": str(mem.grade)},
                    session=s)
    return mem


async def recall(
    db: Database, query: Signature, *, exclude: str | None = None, limit: int = 3, min_score: float = 0.3,
    text_weight: float = 0.3, before: float | None = None,
) -> list[Recalled]:
    """The remembered incidents most like ``query``, best first (ties: most recent first). ``before`` keeps
    only memories resolved before that time (a replay must not recall the future)."""
    async with db.session() as s:
        stmt = select(Memory).order_by(col(Memory.resolved_at).desc()).limit(2000)
        if before is not None:
            stmt = stmt.where(col(Memory.resolved_at) < before)
        rows = [m for m in (await s.exec(stmt)).all() if m.incident_id is None or m.incident_id != exclude]
    matches = rank(query, [memory_signature(m) for m in rows], text_weight)
    found = [
        Recalled(m.ref, m.incident_id, m.title, tuple(m.services), m.cause_service, m.cause_kind, m.fix, x.score,
                 m.resolved_at, m.grade, x.why, m.cause_text, m.source, x.signature, x.text)
        for m, x in zip(rows, matches, strict=True) if x.score >= min_score
    ]
    found.sort(key=lambda r: (-r.similarity, -r.resolved_at, r.ref))
    return found[:limit]


async def remember_resolved(db: Database, limit: int = 100) -> int:
    """Remember every resolved incident not yet in memory and not forgotten (a periodic leader job)."""
    async with db.session() as s:
        remembered = select(Memory.incident_id).where(col(Memory.incident_id).is_not(None))
        forgotten = select(AuditEvent.incident_id).where(AuditEvent.action == FORGOTTEN,
                                                         col(AuditEvent.incident_id).is_not(None))
        ids = (await s.exec(
            select(Incident.id)
            .where(Incident.status == "resolved", col(Incident.id).not_in(remembered),
                   col(Incident.id).not_in(forgotten))
            .order_by(col(Incident.resolved_at))
            .limit(limit)
        )).all()
    for incident_id in ids:
        await remember(db, incident_id)
    return len(ids)


async def list_memories(db: Database, limit: int = 100) -> list[Memory]:
    async with db.session() as s:
        return list((await s.exec(select(Memory).order_by(col(Memory.resolved_at).desc()).limit(limit))).all())


async def get_memory(db: Database, ref: str) -> Memory:
    async with db.session() as s:
        mem = (await s.exec(select(Memory).where(Memory.ref == ref))).first()
        if mem is None and ref.upper() != ref:
            mem = (await s.exec(select(Memory).where(Memory.ref == ref.upper()))).first()
    if mem is None:
        raise MemoryNotFound(f"no memory {ref!r} (see `onwatch memory list`)")
    return mem


async def forget(db: Database, ref: str, actor: Actor) -> Memory:
    """Delete one memory; an incident's is not remembered again (the audit row says it was forgotten)."""
    mem = await get_memory(db, ref)
    async with db.begin() as s:
        await s.exec(delete(Memory).where(col(Memory.id) == mem.id))  # type: ignore[call-overload]
        await audit(db, actor, FORGOTTEN, incident_id=mem.incident_id,
                    params={"memory": mem.ref, "cause_service": mem.cause_service, "cause_kind": mem.cause_kind},
                    session=s)
    return mem


def memory_dict(m: Memory) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ref": m.ref, "incident_id": m.incident_id, "source": m.source, "title": m.title, "services": m.services,
        "cause_service": m.cause_service, "cause_kind": m.cause_kind, "cause": m.cause_text, "fix": m.fix,
        "grade": m.grade, "graded_by": m.graded_by, "graded_at": m.graded_at, "grade_note": m.grade_note,
        "tags": m.tags, "resolved_at": m.resolved_at, "signature": m.signature,
    }
    if m.text:
        out["text"] = m.text
    return out
