"""How far a memory's cause can be trusted, graded by people and by outcomes.

- *confirmed*: a person confirmed or corrected the cause (chat, CLI), or it came from an imported postmortem;
- *verified*: the fix's verification passed and the symptom did not come back within ``memory.verify_quiet_s``;
- *unconfirmed*: otherwise (the engine's own guess).

Only confirmed and verified memories act as a prior in the engine; an unconfirmed one is context only, so a
wrong guess cannot come back to raise the confidence of the same wrong answer.
"""

from __future__ import annotations

import time
from enum import StrEnum

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.audit import BOT, audit
from bot.store.db import Database
from bot.store.models import Alert, Execution, Memory
from bot.store.queries import incident_alerts


class Grade(StrEnum):
    UNCONFIRMED = "unconfirmed"
    CONFIRMED = "confirmed"
    VERIFIED = "verified"


PRIOR_GRADES = frozenset({Grade.CONFIRMED, Grade.VERIFIED})

LABELS = {
    Grade.CONFIRMED: "confirmed",
    Grade.VERIFIED: "fix verified",
    Grade.UNCONFIRMED: "unconfirmed: context only",
}


async def symptom_returned(s: AsyncSession, incident_id: str, since: float, until: float) -> float | None:
    """When an alert like the incident's (same alert name on the same service) fired again after ``since``
    and up to ``until``; None when it did not."""
    pairs = {(a.name, a.service) for a in await incident_alerts(s, incident_id)}
    if not pairs:
        return None
    names = sorted({n for n, _ in pairs})
    rows = (await s.exec(select(Alert.name, Alert.service, Alert.starts_at)
                         .where(col(Alert.name).in_(names), col(Alert.starts_at) > since,
                                col(Alert.starts_at) <= until))).all()
    times = [t for n, svc, t in rows if (n, svc) in pairs]
    return min(times) if times else None


async def grade_outcomes(db: Database, quiet_s: float, now: float | None = None, limit: int = 200) -> int:
    """Grade unconfirmed memories by what happened after their fix (a periodic leader job; idempotent).

    A memory whose incident had an execution verified as ``recovered`` at least ``quiet_s`` ago becomes
    *verified* when no alert like the incident's fired since the verification; when one did, it stays
    unconfirmed with a note saying when the symptom came back (and is not looked at again). Returns how many
    memories were graded either way.
    """
    now = time.time() if now is None else now
    graded = 0
    async with db.begin() as s:
        rows = (await s.exec(
            select(Memory, Execution.verified_at)
            .join(Execution, col(Execution.incident_id) == col(Memory.incident_id))
            .where(Memory.grade == Grade.UNCONFIRMED, Memory.grade_note == "",
                   Execution.verification == "recovered", col(Execution.verified_at) <= now - quiet_s)
            .order_by(col(Execution.verified_at)).limit(limit)
        )).all()
        for mem, verified_at in rows:
            if mem.grade != Grade.UNCONFIRMED or mem.grade_note or mem.incident_id is None or verified_at is None:
                continue  # two executions of one incident: the first row graded it
            back = await symptom_returned(s, mem.incident_id, verified_at, now)
            if back is None:
                mem.grade = Grade.VERIFIED
                mem.graded_by = BOT.key
                mem.graded_at = now
                mem.grade_note = (f"fix verified {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(verified_at))}; "
                                  f"symptom quiet for {(now - verified_at) / 3600:.0f} h")
                action, result = "memory.verified", mem.grade_note
            else:
                mem.grade_note = (f"symptom came back {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(back))}, "
                                  f"{(back - verified_at) / 60:.0f} min after the fix was verified")
                action, result = "memory.not_verified", mem.grade_note
            s.add(mem)
            await audit(db, BOT, action, incident_id=mem.incident_id, params={"memory": mem.ref}, result=result,
                        session=s)
            graded += 1
    return graded
