"""The approval state machine. Every transition is ONE conditional update (``... WHERE status = <expected>``)
plus its audit row, in the caller's transaction: double clicks, retries and replicas decide and execute once.

    pending  -> approved | rejected | expired
    approved -> executing | failed      (failed: refused at execution time, nothing ran)
    executing -> succeeded | failed | unknown
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.audit import Actor, audit
from bot.errors import OnwatchError
from bot.store.db import Database
from bot.store.models import Proposal

TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"approved", "rejected", "expired"}),
    "approved": frozenset({"executing", "failed"}),
    "executing": frozenset({"succeeded", "failed", "unknown"}),
}
TERMINAL = frozenset({"rejected", "expired", "succeeded", "failed", "unknown"})


class IllegalTransition(OnwatchError):
    """A transition the state machine does not have (a programming error, never a race)."""


async def transition(
    session: AsyncSession,
    db: Database,
    proposal_id: str,
    incident_id: str,
    expected: str,
    new: str,
    actor: Actor,
    *,
    params: dict[str, Any] | None = None,
    result: str = "",
    values: dict[str, Any] | None = None,
) -> bool:
    """Move ``proposal_id`` from ``expected`` to ``new``; False when another actor moved it first."""
    if new not in TRANSITIONS.get(expected, frozenset()):
        raise IllegalTransition(f"proposal cannot go from {expected} to {new}")
    stmt = (
        update(Proposal)
        .where(col(Proposal.id) == proposal_id, col(Proposal.status) == expected)
        .values(status=new, version=col(Proposal.version) + 1, **(values or {}))
    )
    res = await session.exec(stmt)  # type: ignore[call-overload]
    if res.rowcount != 1:
        return False
    await audit(
        db, actor, f"proposal.{new}", incident_id=incident_id,
        params={"proposal_id": proposal_id, "from": expected, "to": new, **(params or {})},
        result=result, session=session,
    )
    return True


def decided_values(actors: list[str]) -> dict[str, Any]:
    return {"decided_at": time.time(), "decided_by": ",".join(actors)[:400]}
