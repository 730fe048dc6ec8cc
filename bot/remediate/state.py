"""The approval state machine. Every transition is ONE conditional update (``... WHERE status = <expected>``)
plus its audit row, in the caller's transaction: double clicks, retries and replicas decide and execute once.

    pending  -> approved | rejected | expired
    approved -> executing | failed      (failed: refused at execution time, nothing ran)
    executing -> succeeded | failed | unknown
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.audit import Actor, audit
from bot.errors import OnwatchError
from bot.store.db import Database
from bot.store.models import Proposal


class ProposalStatus(StrEnum):
    """Where a proposal stands. The values are what ``proposal.status`` stores (and what audit actions say)."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


S = ProposalStatus
TRANSITIONS: dict[ProposalStatus, frozenset[ProposalStatus]] = {
    S.PENDING: frozenset({S.APPROVED, S.REJECTED, S.EXPIRED}),
    S.APPROVED: frozenset({S.EXECUTING, S.FAILED}),
    S.EXECUTING: frozenset({S.SUCCEEDED, S.FAILED, S.UNKNOWN}),
}
TERMINAL = frozenset({S.REJECTED, S.EXPIRED, S.SUCCEEDED, S.FAILED, S.UNKNOWN})
# Statuses that still hold their runbook for a service (the same runbook is not offered twice meanwhile).
LIVE = frozenset({S.PENDING, S.APPROVED, S.EXECUTING})


class IllegalTransition(OnwatchError):
    """A transition the state machine does not have (a programming error, never a race)."""


async def transition(
    session: AsyncSession,
    db: Database,
    proposal_id: str,
    incident_id: str,
    expected: ProposalStatus,
    new: ProposalStatus,
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
        .where(col(Proposal.id) == proposal_id, col(Proposal.status) == expected.value)
        .values(status=new.value, version=col(Proposal.version) + 1, **(values or {}))
    )
    res = await session.exec(stmt)  # type: ignore[call-overload]
    if res.rowcount != 1:
        return False
    await audit(
        db, actor, f"proposal.{new.value}", incident_id=incident_id,
        params={"proposal_id": proposal_id, "from": expected.value, "to": new.value, **(params or {})},
        result=result, session=session,
    )
    return True


def decided_values(actors: list[str]) -> dict[str, Any]:
    return {"decided_at": time.time(), "decided_by": ",".join(actors)[:400]}
