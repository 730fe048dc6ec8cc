"""Decide: one person's Approve or Reject from any chat platform, and the expiry of undecided proposals.

The clicker is authorised here, every time, against the runbook's approver groups (invariant 3); a high-risk
runbook needs two different approvers and never its requester's own approval. The decision is one
conditional update with its audit row (invariant 2, ``bot.remediate.state``); an approval queues the
execution job in the same transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.audit import BOT, Actor, audit
from bot.incidents.lifecycle import IncidentPhase
from bot.remediate.catalog import Runbook
from bot.remediate.policy import approver_principals, is_authorised
from bot.remediate.shared import Remediation, changed, set_phase
from bot.remediate.state import ProposalStatus, decided_values, transition
from bot.store.models import Approval, Proposal

S = ProposalStatus
DecisionStatus = Literal[
    "approved", "rejected", "awaiting_second_approval", "unauthorised", "already_decided", "expired",
    "not_found", "refused",
]


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    status: DecisionStatus
    message: str
    proposal: Proposal | None = None


def approvers_for(r: Remediation, proposal: Proposal) -> tuple[str, ...]:
    rb = r.catalog.get(proposal.runbook_id)
    return approver_principals(rb, r.settings) if rb is not None else ()


def already(p: Proposal) -> DecisionOutcome:
    who = f" by {p.decided_by}" if p.decided_by and p.status in {S.APPROVED, S.REJECTED} else ""
    if p.status == S.EXPIRED:
        return DecisionOutcome("expired", "This proposal expired before anyone decided.", p)
    return DecisionOutcome("already_decided", f"This proposal is already {p.status}{who}.", p)


async def expire(r: Remediation, p: Proposal) -> bool:
    async with r.db.begin() as s:
        ok = await transition(s, r.db, p.id, p.incident_id, S.PENDING, S.EXPIRED, BOT,
                              result=f"not decided within {r.settings.runbooks.proposal_ttl_s} s",
                              values={"decided_at": time.time()})
        if ok:
            await changed(s, p)
    if ok:
        await r.publish()
    return ok


async def expire_due(r: Remediation) -> int:
    """Expire every pending proposal past its TTL (run periodically by the leader)."""
    async with r.db.session() as s:
        due = list((await s.exec(
            select(Proposal).where(Proposal.status == S.PENDING.value, col(Proposal.expires_at) <= time.time())
        )).all())
    n = 0
    for p in due:
        if await expire(r, p):
            n += 1
    return n


async def decide(r: Remediation, proposal_id: str, actor: Actor, decision: Literal["approve", "reject"],
                 principals: frozenset[str]) -> DecisionOutcome:
    """One click from any chat platform. The clicker is authorised here, every time."""
    principals = frozenset(principals) | {actor.key}
    p = await r.proposal(proposal_id)
    if p is None:
        return DecisionOutcome("not_found", "No such proposal.")
    if decision not in ("approve", "reject"):
        return DecisionOutcome("refused", f"Unknown decision {decision!r}.", p)
    if p.status == S.PENDING and p.expires_at <= time.time():
        await expire(r, p)
        return DecisionOutcome("expired", "This proposal expired before anyone decided.", await r.proposal(p.id))
    if p.status != S.PENDING:
        return already(p)
    rb = r.catalog.get(p.runbook_id)
    if rb is None:
        await audit(r.db, actor, "proposal.decision_refused", incident_id=p.incident_id,
                    params={"proposal_id": p.id, "decision": decision}, result="runbook not in the catalog")
        return DecisionOutcome("refused", f"Runbook {p.runbook_id} is no longer in the catalog.", p)
    if not is_authorised(rb, r.settings, principals):
        await audit(r.db, actor, "proposal.unauthorised", incident_id=p.incident_id,
                    params={"proposal_id": p.id, "decision": decision, "groups": rb.approval.groups},
                    result="not in an approval group")
        return DecisionOutcome(
            "unauthorised",
            f"You are not in an approver group for this runbook ({', '.join(rb.approval.groups)}).", p)
    if decision == "approve" and rb.risk == "high" and p.requested_by in principals:
        await audit(r.db, actor, "proposal.decision_refused", incident_id=p.incident_id,
                    params={"proposal_id": p.id, "decision": decision}, result="self-approval of high risk")
        return DecisionOutcome(
            "refused", "You requested this high-risk action; someone else must approve it.", p)
    outcome = await _record(r, p, rb, actor, decision)
    if outcome.status in {"approved", "rejected", "awaiting_second_approval"}:
        await r.publish()
        if outcome.status == "approved":
            r.ctx.jobs.wakeup.set()
    return outcome


async def _record(r: Remediation, p: Proposal, rb: Runbook, actor: Actor,
                  decision: Literal["approve", "reject"]) -> DecisionOutcome:
    try:
        async with r.db.begin() as s:
            locked = (await s.exec(
                select(Proposal).where(Proposal.id == p.id).with_for_update()
            )).one()
            if locked.status != S.PENDING:
                return already(locked)
            prior = list((await s.exec(
                select(Approval).where(Approval.proposal_id == p.id, Approval.decision == "approve")
            )).all())
            if decision == "approve" and any(a.actor == actor.key for a in prior):
                return DecisionOutcome(
                    "awaiting_second_approval",
                    "You already approved this; it needs a second, different approver.", locked)
            s.add(Approval(proposal_id=p.id, actor=actor.key, actor_name=actor.name, decision=decision))
            await s.flush()
            if decision == "reject":
                await transition(s, r.db, p.id, p.incident_id, S.PENDING, S.REJECTED, actor,
                                 values=decided_values([actor.key]))
                await set_phase(s, r, p.incident_id, IncidentPhase.REJECTED)
                status: DecisionStatus = "rejected"
                msg = "Rejected. Nothing will run."
            else:
                approvers = [a.actor for a in prior] + [actor.key]
                if len(approvers) >= locked.approvals_needed:
                    await transition(s, r.db, p.id, p.incident_id, S.PENDING, S.APPROVED, actor,
                                     params={"approvers": approvers}, values=decided_values(approvers))
                    await r.ctx.jobs.enqueue("execution", {"proposal_id": p.id},
                                             dedup_key=f"execute:{p.id}", max_attempts=1, session=s)
                    status, msg = "approved", "Approved. onwatch is running it now."
                else:
                    await audit(r.db, actor, "proposal.approval_recorded", incident_id=p.incident_id,
                                params={"proposal_id": p.id, "approvers": approvers,
                                        "needed": locked.approvals_needed}, session=s)
                    status = "awaiting_second_approval"
                    msg = f"Your approval is recorded; {locked.approvals_needed - len(approvers)} more " \
                          "approver(s) needed (high risk needs two different people)."
            await changed(s, p)
    except IntegrityError:
        # The same person's concurrent second click lost the unique (proposal, actor) race.
        fresh = await r.proposal(p.id)
        return already(fresh) if fresh and fresh.status != S.PENDING else DecisionOutcome(
            "awaiting_second_approval", "Your approval was already recorded.", fresh)
    return DecisionOutcome(status, msg, await r.proposal(p.id))
