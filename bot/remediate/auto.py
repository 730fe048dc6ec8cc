"""Automatic execution policy: a runbook may run without a human only for the failure classes its ``auto``
block allowlists, at or above its minimum confidence, within its rate limit per service per hour (counted
from Execution rows, plus auto-approved proposals not yet started), and only while the kill switch is on."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlmodel import col, func, select

from bot.config import Settings
from bot.remediate.catalog import Runbook
from bot.remediate.killswitch import state as switch_state
from bot.remediate.match import Cause
from bot.remediate.state import ProposalStatus
from bot.store.db import Database
from bot.store.models import Execution, Proposal

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class AutoDecision:
    allowed: bool
    reason: str


async def auto_runs(db: Database, runbook_id: str, service: str, since: float) -> int:
    async with db.session() as s:
        executed = (await s.exec(
            select(func.count()).select_from(Execution).join(Proposal, col(Proposal.id) == col(Execution.proposal_id))
            .where(col(Execution.auto).is_(True), Proposal.runbook_id == runbook_id, Proposal.service == service,
                   col(Execution.started_at) >= since)
        )).one()
        waiting = (await s.exec(
            select(func.count()).select_from(Proposal)
            .where(col(Proposal.auto).is_(True), Proposal.status == ProposalStatus.APPROVED.value,
                   Proposal.runbook_id == runbook_id,
                   Proposal.service == service, col(Proposal.decided_at) >= since)
        )).one()
    return int(executed) + int(waiting)


async def decide_auto(db: Database, settings: Settings, rb: Runbook, cause: Cause,
                      now: float | None = None) -> AutoDecision:
    if rb.auto is None:
        return AutoDecision(False, "the runbook has no auto block")
    if cause.kind not in rb.auto.classes:
        return AutoDecision(False, f"{cause.kind} is not an allowlisted failure class for automatic runs")
    if cause.confidence < rb.auto.min_confidence:
        return AutoDecision(
            False, f"confidence {cause.confidence:.2f} is below the automatic minimum {rb.auto.min_confidence:.2f}"
        )
    sw = await switch_state(db, settings)
    if not sw.enabled:
        return AutoDecision(False, f"automatic execution is {sw.describe()}")
    now = time.time() if now is None else now
    n = await auto_runs(db, rb.id, cause.service, now - HOUR)
    if n >= rb.auto.max_per_service_per_hour:
        return AutoDecision(
            False, f"rate limit: {n} automatic run(s) of {rb.id} for {cause.service} in the last hour "
                   f"(limit {rb.auto.max_per_service_per_hour})"
        )
    return AutoDecision(True, f"{cause.kind} at confidence {cause.confidence:.2f} is allowlisted for automatic runs")
