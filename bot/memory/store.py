"""Remember resolved incidents and recall the most similar ones.

Similarity is a weighted Jaccard over what a person would compare: the services hit, the alert names,
and the cause. It is deliberately simple and explainable ("same services, same alert"), never a claim
about the present incident: the engine uses it only as a small prior, and the thread shows it as context.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlmodel import col, select

from bot.audit import BOT, audit
from bot.store.db import Database
from bot.store.models import Execution, Finding, Incident, Investigation, Memory, Proposal
from bot.store.queries import incident_alerts


@dataclass(frozen=True, slots=True)
class Recalled:
    incident_id: str
    title: str
    services: tuple[str, ...]
    cause_service: str
    cause_kind: str
    fix: str
    similarity: float
    resolved_at: float


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def similarity(services: set[str], alertnames: set[str], mem: Memory) -> float:
    sig_alerts = set(mem.signature.get("alertnames", []))
    mem_services = set(mem.services) | ({mem.cause_service} if mem.cause_service else set())
    return round(0.6 * _jaccard(services, mem_services) + 0.4 * _jaccard(alertnames, sig_alerts), 4)


async def remember(db: Database, incident_id: str) -> Memory | None:
    """Store (or refresh) what an incident was and what fixed it. Idempotent per incident."""
    async with db.begin() as s:
        inc = await s.get(Incident, incident_id)
        if inc is None:
            return None
        alertnames = sorted({a.name for a in await incident_alerts(s, incident_id)})
        inv = (
            await s.exec(
                select(Investigation)
                .where(Investigation.incident_id == incident_id, Investigation.status == "done")
                .order_by(col(Investigation.finished_at).desc())
            )
        ).first()
        top: Finding | None = None
        if inv is not None and not inv.abstained:
            top = (await s.exec(select(Finding).where(Finding.investigation_id == inv.id).order_by(col(Finding.rank)))).first()
        fixed = (
            await s.exec(
                select(Proposal.title)
                .join(Execution, col(Execution.proposal_id) == col(Proposal.id))
                .where(Proposal.incident_id == incident_id, Execution.status == "succeeded")
            )
        ).first()
        mem = (await s.exec(select(Memory).where(Memory.incident_id == incident_id))).first()
        if mem is None:
            mem = Memory(incident_id=incident_id)
        mem.title = inc.title
        mem.services = list(inc.services)
        mem.cause_service = top.service if top else ""
        mem.cause_kind = top.kind if top else ""
        mem.fix = fixed or ""
        mem.signature = {"alertnames": alertnames, "severity": inc.severity}
        mem.resolved_at = inc.resolved_at or time.time()
        s.add(mem)
        await audit(db, BOT, "memory.remembered", incident_id=incident_id,
                    params={"cause_service": mem.cause_service, "cause_kind": mem.cause_kind, "fix": mem.fix},
                    session=s)
    return mem


async def recall(
    db: Database, services: list[str], alertnames: list[str], *, exclude: str | None = None,
    limit: int = 3, min_similarity: float = 0.3,
) -> list[Recalled]:
    """The past incidents most like this one, most similar first (ties: most recent first)."""
    async with db.session() as s:
        rows = (await s.exec(select(Memory).order_by(col(Memory.resolved_at).desc()).limit(2000))).all()
    scored = [
        Recalled(m.incident_id, m.title, tuple(m.services), m.cause_service, m.cause_kind, m.fix,
                 similarity(set(services), set(alertnames), m), m.resolved_at)
        for m in rows
        if m.incident_id != exclude
    ]
    scored = [r for r in scored if r.similarity >= min_similarity]
    scored.sort(key=lambda r: (-r.similarity, -r.resolved_at, r.incident_id))
    return scored[:limit]


async def remember_resolved(db: Database, limit: int = 100) -> int:
    """Remember every resolved incident not yet in memory (a periodic leader job; idempotent)."""
    async with db.session() as s:
        remembered = select(Memory.incident_id)
        ids = (
            await s.exec(
                select(Incident.id)
                .where(Incident.status == "resolved", col(Incident.id).not_in(remembered))
                .order_by(col(Incident.resolved_at))
                .limit(limit)
            )
        ).all()
    for incident_id in ids:
        await remember(db, incident_id)
    return len(ids)
