"""A person acknowledging an incident ("I'm on it"): one row per person and incident, and an audit row, in one
transaction. The first acknowledgement ends the incident's time to acknowledge (docs/reports.md); a second
click by the same person changes nothing and says so."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from bot.audit import Actor, audit
from bot.errors import NotFound
from bot.store.db import Database
from bot.store.models import Acknowledgement, Incident


@dataclass(frozen=True, slots=True)
class AckResult:
    incident_id: str
    first: bool  # this was the incident's first acknowledgement
    already: bool  # this person had acknowledged it before
    at: float


async def acknowledge(db: Database, incident_id: str, actor: Actor) -> AckResult:
    """Record ``actor``'s acknowledgement of ``incident_id``; ``NotFound`` when there is no such incident."""
    async with db.begin() as s:
        inc = await s.get(Incident, incident_id)
        if inc is None:
            raise NotFound(f"there is no incident {incident_id}")
        rows = list((await s.exec(select(Acknowledgement).where(Acknowledgement.incident_id == incident_id)
                                  .order_by(col(Acknowledgement.at)))).all())
        mine = next((r for r in rows if r.actor == actor.key), None)
        if mine is not None:
            return AckResult(incident_id, first=False, already=True, at=mine.at)
        row = Acknowledgement(incident_id=incident_id, actor=actor.key, actor_name=actor.name)
        s.add(row)
        await s.flush()
        await audit(db, actor, "incident.acknowledged", incident_id=incident_id,
                    params={"first": not rows}, result="acknowledged", session=s)
        return AckResult(incident_id, first=not rows, already=False, at=row.at)
