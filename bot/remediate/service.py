"""``RemediationService``: the one object the rest of onwatch holds for remediation. It owns the catalog and
the executors and hands each call to its step: ``propose``, ``decide``, ``execute``, ``verify`` (one module
each, sharing ``bot.remediate.shared``).

Every chat platform approves through ``decide`` (the clicker is authorised on the server every time,
invariant 3), every state change is a conditional update with its audit row (invariants 2 and 4), and only
catalog runbooks, re-rendered and re-checked against their scope right before execution, ever run
(invariants 1 and 5).
"""

from __future__ import annotations

from typing import Literal

from bot.audit import Actor
from bot.context import AppContext
from bot.remediate import decide, execute, propose, verify
from bot.remediate.catalog import Catalog, load_catalog
from bot.remediate.decide import DecisionOutcome, DecisionStatus
from bot.remediate.shared import Remediation
from bot.store.models import Job, Proposal
from integrations.executors import ExecutorRegistry

__all__ = ["DecisionOutcome", "DecisionStatus", "RemediationService"]


class RemediationService:
    def __init__(self, ctx: AppContext, *, catalog: Catalog | None = None,
                 executors: ExecutorRegistry | None = None):
        """``executors`` are what actions run on (``bot.app`` wires the shipped ones); without them every
        action is refused."""
        self.ctx = ctx
        self.settings = ctx.settings
        self.db = ctx.db
        self._r = Remediation(ctx, catalog if catalog is not None else load_catalog(
            ctx.settings.runbooks.dir, ctx.settings, missing_ok=True),
            executors if executors is not None else ExecutorRegistry())

    @property
    def catalog(self) -> Catalog:
        return self._r.catalog

    @catalog.setter
    def catalog(self, catalog: Catalog) -> None:
        """A reloaded catalog applies to every step from the next call on."""
        self._r.catalog = catalog

    @property
    def executors(self) -> ExecutorRegistry:
        return self._r.executors

    async def aclose(self) -> None:
        await self._r.aclose()

    async def propose(self, incident_id: str, investigation_id: str) -> list[Proposal]:
        """Offer the catalog runbooks that match the investigation's ranked causes, in scope, with a preview."""
        return await propose.propose(self._r, incident_id, investigation_id)

    def approvers_for(self, proposal: Proposal) -> tuple[str, ...]:
        return decide.approvers_for(self._r, proposal)

    async def decide(self, proposal_id: str, actor: Actor, decision: Literal["approve", "reject"],
                     principals: frozenset[str]) -> DecisionOutcome:
        """One click from any chat platform. The clicker is authorised here, every time."""
        return await decide.decide(self._r, proposal_id, actor, decision, principals)

    async def expire_due(self) -> int:
        """Expire every pending proposal past its TTL (run periodically by the leader)."""
        return await decide.expire_due(self._r)

    async def run_execution(self, job: Job) -> None:
        """Job handler for kind ``execution``."""
        await self.execute(str(job.payload["proposal_id"]))

    async def execute(self, proposal_id: str) -> str:
        """Run an approved proposal at most once; return its final status."""
        return await execute.execute(self._r, proposal_id)

    async def on_execution_lost(self, job: Job) -> None:
        """The worker running this execution vanished (crash, kill): record ``unknown`` and say so. Never re-run."""
        await execute.on_execution_lost(self._r, job)

    async def run_verification(self, job: Job) -> None:
        """Job handler for kind ``verification`` (resumable: re-running it only re-queries the symptom)."""
        await self.verify(str(job.payload["execution_id"]))

    async def verify(self, execution_id: str) -> str:
        """Re-query the symptom until it recovers or the deadline passes; mark the incident accordingly."""
        return await verify.verify(self._r, execution_id)
