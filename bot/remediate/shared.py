"""What the four remediation steps (propose, decide, execute, verify) share: the context, the catalog and the
executors they work with, and how a step records what it did for the incident and its thread.

A step never calls chat: it moves the incident through ``bot.incidents.lifecycle`` and writes outbox events
(``proposal.changed``, a note) in the transaction of its change, then publishes once committed. The thread
is a side channel: a chat outage leaves the events for a later publish and never undoes a decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.audit import BOT
from bot.config import Settings
from bot.context import AppContext
from bot.incidents.lifecycle import IncidentPhase, IncidentStatus, transition
from bot.incidents.outbox import EventKind, emit
from bot.remediate.catalog import Catalog
from bot.store.db import Database
from bot.store.models import Proposal
from integrations.executors import ExecutorRegistry


@dataclass
class Remediation:
    """The context, catalog and executors of one remediation service."""

    ctx: AppContext
    catalog: Catalog
    executors: ExecutorRegistry

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def db(self) -> Database:
        return self.ctx.db

    async def aclose(self) -> None:
        await self.executors.aclose()

    async def proposal(self, proposal_id: str) -> Proposal | None:
        async with self.db.session() as s:
            return await s.get(Proposal, proposal_id)

    async def publish(self) -> None:
        """Hand what the step committed to the outbox's subscribers (the chat hub) now."""
        await self.ctx.outbox.flush()


async def set_phase(session: AsyncSession, r: Remediation, incident_id: str, phase: IncidentPhase,
                    status: IncidentStatus | None = None) -> None:
    """Move the incident's phase (and status) for a remediation step. A move the incident has gone past (it was
    resolved meanwhile) is skipped: the proposal's own state still records the step."""
    await transition(session, r.db, incident_id, phase, BOT, to_status=status, late_ok=True)


async def changed(session: AsyncSession, proposal: Proposal, text: str = "") -> None:
    """Record, with the change, that ``proposal``'s message must be redrawn (and ``text`` said in the thread)."""
    await emit(session, proposal.incident_id, EventKind.PROPOSAL_CHANGED, {"proposal_id": proposal.id})
    if text:
        await emit(session, proposal.incident_id, EventKind.NOTE, {"text": text})


def target(action: Mapping[str, Any]) -> str:
    """What an action changes, in a few words (for the audit trail and the thread)."""
    if action.get("executor") == "http":
        return f"{action.get('method')} {action.get('url')}"
    op = action.get("operation")
    if op == "cordon_drain":
        return f"node {action.get('node')}"
    if op == "delete_pod":
        return f"pod {action.get('namespace')}/{action.get('pod')}"
    return f"deployment {action.get('namespace')}/{action.get('deployment')}"
