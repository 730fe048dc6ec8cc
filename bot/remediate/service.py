"""``RemediationService``: proposals from ranked causes, decisions from chat, executions, verification.

Every chat platform approves through ``decide`` (the clicker is authorised on the server every time,
invariant 3), every state change is a conditional update with its audit row (invariants 2 and 4), and only
catalog runbooks, re-rendered and re-checked against their scope right before execution, ever run
(invariants 1 and 5).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.audit import BOT, Actor, audit
from bot.context import AppContext
from bot.remediate import killswitch
from bot.remediate.auto import decide_auto
from bot.remediate.catalog import Catalog, Runbook, load_catalog
from bot.remediate.match import Cause, matches, render_action, render_text, resolve_values
from bot.remediate.params import ParamError
from bot.remediate.policy import approver_principals, check_preconditions, check_scope, is_authorised
from bot.remediate.state import decided_values, transition
from bot.remediate.verify import verify_until
from bot.store.models import Approval, Execution, Finding, Incident, Investigation, Job, Proposal
from integrations.executors import (
    DeploymentFinder,
    ExecutorError,
    ExecutorRefused,
    ExecutorRegistry,
    ExecutorUnknown,
    build_registry,
)

log = logging.getLogger(__name__)

MAX_PROPOSALS = 5
PREVIEW_TIMEOUT_S = 30.0
LIVE = ("pending", "approved", "executing")

DecisionStatus = Literal[
    "approved", "rejected", "awaiting_second_approval", "unauthorised", "already_decided", "expired",
    "not_found", "refused",
]


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    status: DecisionStatus
    message: str
    proposal: Proposal | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    runbook: Runbook
    cause: Cause
    values: dict[str, Any]
    action: dict[str, Any]
    title: str
    description: str
    preview: dict[str, Any]


class _NotOffered(Exception):
    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def _causes(report: Mapping[str, Any], findings: list[Finding]) -> list[Cause]:
    by_key = {(f.service, f.kind): f for f in findings}
    out: list[Cause] = []
    raw = report.get("causes") if isinstance(report.get("causes"), list) else None
    if raw:
        for i, c in enumerate(raw):
            if not isinstance(c, dict) or not c.get("service") or not c.get("kind"):
                continue
            f = by_key.get((str(c["service"]), str(c["kind"])))
            extras = {k: c[k] for k in ("node", "pod") if isinstance(c.get(k), str)}
            out.append(Cause(
                service=str(c["service"]), kind=str(c["kind"]), confidence=float(c.get("confidence") or 0.0),
                rank=i, evidence=tuple(str(e) for e in c.get("evidence") or ()),
                finding_id=f.id if f else None, extras=extras,
            ))
        return out
    for f in sorted(findings, key=lambda f: f.rank):
        out.append(Cause(service=f.service, kind=f.kind, confidence=f.confidence, rank=f.rank,
                         evidence=tuple(f.evidence_keys), finding_id=f.id))
    return out


def _target(action: Mapping[str, Any]) -> str:
    if action.get("executor") == "http":
        return f"{action.get('method')} {action.get('url')}"
    op = action.get("operation")
    if op == "cordon_drain":
        return f"node {action.get('node')}"
    if op == "delete_pod":
        return f"pod {action.get('namespace')}/{action.get('pod')}"
    return f"deployment {action.get('namespace')}/{action.get('deployment')}"


class RemediationService:
    def __init__(self, ctx: AppContext, *, catalog: Catalog | None = None,
                 executors: ExecutorRegistry | None = None):
        self.ctx = ctx
        self.settings = ctx.settings
        self.db = ctx.db
        self.catalog = catalog if catalog is not None else load_catalog(
            ctx.settings.runbooks.dir, ctx.settings, missing_ok=True)
        self._executors = executors

    @property
    def executors(self) -> ExecutorRegistry:
        if self._executors is None:
            self._executors = build_registry(self.settings)
        return self._executors

    async def aclose(self) -> None:
        if self._executors is not None:
            await self._executors.aclose()

    # ------------------------------------------------------------------ chat side effects

    async def _tell(self, call: Awaitable[None]) -> None:
        """Chat is a side channel: the decision is committed and audited whether or not a post succeeds."""
        try:
            await call
        except Exception:  # noqa: BLE001 - a chat platform outage must not undo or repeat a decision
            log.exception("chat update failed")

    async def _changed(self, proposal: Proposal, text: str | None = None) -> None:
        await self._tell(self.ctx.chat.proposal_changed(proposal.id))
        if text:
            await self._tell(self.ctx.chat.notify(proposal.incident_id, text))
        await self._tell(self.ctx.chat.incident_updated(proposal.incident_id))

    @staticmethod
    async def _incident(s: AsyncSession, incident_id: str, *, phase: str | None = None,
                        status: str | None = None) -> None:
        values: dict[str, Any] = {"updated_at": time.time()}
        if phase is not None:
            values["phase"] = phase
        stmt = update(Incident).where(col(Incident.id) == incident_id)
        await s.exec(stmt.values(**values))  # type: ignore[call-overload]
        if status is not None:
            await s.exec(  # type: ignore[call-overload]
                update(Incident).where(col(Incident.id) == incident_id, col(Incident.status) == "open")
                .values(status=status)
            )

    # ------------------------------------------------------------------ proposals

    async def _recent(self, rb: Runbook, service: str) -> dict[int, int]:
        out: dict[int, int] = {}
        for p in rb.preconditions:
            if p.check == "no_recent_execution" and p.minutes:
                since = time.time() - p.minutes * 60
                async with self.db.session() as s:
                    n = (await s.exec(
                        select(func.count()).select_from(Execution)
                        .join(Proposal, col(Proposal.id) == col(Execution.proposal_id))
                        .where(Proposal.runbook_id == rb.id, Proposal.service == service,
                               col(Execution.started_at) >= since)
                    )).one()
                out[p.minutes] = int(n)
        return out

    async def _plan(self, rb: Runbook, cause: Cause, incident_id: str,
                    evidence: Mapping[str, Mapping[str, Any]]) -> _Plan:
        finder: DeploymentFinder | None = None
        try:
            ex = self.executors.get("kubernetes")
            finder = ex if isinstance(ex, DeploymentFinder) else None
        except ExecutorRefused:
            finder = None
        try:
            values = await resolve_values(rb, cause, incident_id, self.settings, evidence=evidence, finder=finder)
            action = render_action(rb, values, cause.service)
            title, description = render_text(rb, values)
        except (ParamError, ExecutorError) as exc:
            raise _NotOffered(str(exc)) from None
        problems = check_scope(rb, action, self.settings)
        if problems:
            raise _NotOffered("out of scope: " + "; ".join(problems))
        try:
            executor = self.executors.get(str(action["executor"]))
            preview = await asyncio.wait_for(executor.preview(action), timeout=PREVIEW_TIMEOUT_S)
        except ExecutorError as exc:
            raise _NotOffered(f"cannot prepare it: {exc}") from None
        except TimeoutError:
            raise _NotOffered(f"the dry run did not answer within {PREVIEW_TIMEOUT_S:g} s") from None
        failed = check_preconditions(rb, confidence=cause.confidence, facts=preview,
                                     recent_executions=await self._recent(rb, cause.service))
        if failed:
            raise _NotOffered("precondition failed: " + "; ".join(failed))
        return _Plan(rb, cause, values, action, title, description, preview)

    async def propose(self, incident_id: str, investigation_id: str) -> list[Proposal]:
        """Offer the catalog runbooks that match the investigation's ranked causes, in scope, with a preview."""
        async with self.db.session() as s:
            inc = await s.get(Incident, incident_id)
            inv = await s.get(Investigation, investigation_id)
            findings = list((await s.exec(
                select(Finding).where(Finding.investigation_id == investigation_id)
            )).all())
            live = {(p.runbook_id, p.service) for p in (await s.exec(
                select(Proposal).where(Proposal.incident_id == incident_id, col(Proposal.status).in_(LIVE))
            )).all()}
        if inc is None or inv is None or inv.abstained:
            return []
        report = inv.report or {}
        causes = _causes(report, findings)
        evidence = {str(e["id"]): e for e in report.get("evidence") or [] if isinstance(e, dict) and "id" in e}
        plans: list[_Plan] = []
        refused: list[str] = []
        refused_rows: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for cause in causes:
            for rb in self.catalog:
                key = (rb.id, cause.service)
                if key in seen or key in live or not matches(rb, cause):
                    continue
                seen.add(key)
                if len(plans) >= MAX_PROPOSALS:
                    break
                try:
                    plans.append(await self._plan(rb, cause, incident_id, evidence))
                except _NotOffered as no:
                    refused.append(f"{rb.id} for {cause.service} ({cause.kind}): {no.reason}")
                    refused_rows.append({"runbook_id": rb.id, "service": cause.service, "kind": cause.kind,
                                         "reason": no.reason})
        autos = {id(p): await decide_auto(self.db, self.settings, p.runbook, p.cause) for p in plans}
        created: list[Proposal] = []
        ttl = self.settings.runbooks.proposal_ttl_s
        async with self.db.begin() as s:
            for row in refused_rows:
                await audit(self.db, BOT, "proposal.not_offered", incident_id=incident_id,
                            params={**row, "investigation_id": investigation_id}, result=row["reason"], session=s)
            for plan in plans:
                rb, cause = plan.runbook, plan.cause
                p = Proposal(
                    incident_id=incident_id, finding_id=cause.finding_id, runbook_id=rb.id, title=plan.title[:500],
                    service=cause.service, risk=rb.risk, requested_by=inv.requested_by or BOT.key,
                    approvals_needed=rb.approvals_needed, expires_at=time.time() + ttl,
                    params={"values": plan.values, "action": plan.action, "description": plan.description,
                            "cause": {"service": cause.service, "kind": cause.kind, "confidence": cause.confidence,
                                      "evidence": list(cause.evidence)},
                            "investigation_id": investigation_id},
                    preview=plan.preview,
                )
                s.add(p)
                await s.flush()
                await audit(self.db, BOT, "proposal.created", incident_id=incident_id,
                            params={"proposal_id": p.id, "runbook_id": rb.id, "service": cause.service,
                                    "cause_kind": cause.kind, "confidence": cause.confidence, "risk": rb.risk,
                                    "action": plan.action, "preview": plan.preview},
                            result=plan.title, session=s)
                auto = autos[id(plan)]
                if auto.allowed:
                    ok = await transition(s, self.db, p.id, incident_id, "pending", "approved", BOT,
                                          params={"auto": True, "why": auto.reason}, result=auto.reason,
                                          values={"auto": True, **decided_values(["onwatch:auto"])})
                    if ok:
                        p.status, p.auto = "approved", True
                        await self.ctx.jobs.enqueue("execution", {"proposal_id": p.id},
                                                    dedup_key=f"execute:{p.id}", max_attempts=1, session=s)
                elif rb.auto is not None:
                    await audit(self.db, BOT, "proposal.auto_declined", incident_id=incident_id,
                                params={"proposal_id": p.id}, result=auto.reason, session=s)
                created.append(p)
            if any(p.status == "pending" for p in created):
                await self._incident(s, incident_id, phase="awaiting_approval")
        if created or refused:
            await self._tell(self.ctx.chat.proposals_offered(incident_id, [p.id for p in created], refused))
        if any(p.status == "approved" for p in created):
            self.ctx.jobs.wakeup.set()
        return created

    # ------------------------------------------------------------------ decisions

    def approvers_for(self, proposal: Proposal) -> tuple[str, ...]:
        rb = self.catalog.get(proposal.runbook_id)
        return approver_principals(rb, self.settings) if rb is not None else ()

    async def _get(self, proposal_id: str) -> Proposal | None:
        async with self.db.session() as s:
            return await s.get(Proposal, proposal_id)

    async def _expire(self, p: Proposal) -> bool:
        async with self.db.begin() as s:
            ok = await transition(s, self.db, p.id, p.incident_id, "pending", "expired", BOT,
                                  result=f"not decided within {self.settings.runbooks.proposal_ttl_s} s",
                                  values={"decided_at": time.time()})
        if ok:
            await self._changed(p)
        return ok

    @staticmethod
    def _already(p: Proposal) -> DecisionOutcome:
        who = f" by {p.decided_by}" if p.decided_by and p.status in {"approved", "rejected"} else ""
        if p.status == "expired":
            return DecisionOutcome("expired", "This proposal expired before anyone decided.", p)
        return DecisionOutcome("already_decided", f"This proposal is already {p.status}{who}.", p)

    async def decide(self, proposal_id: str, actor: Actor, decision: Literal["approve", "reject"],
                     principals: frozenset[str]) -> DecisionOutcome:
        """One click from any chat platform. The clicker is authorised here, every time."""
        principals = frozenset(principals) | {actor.key}
        p = await self._get(proposal_id)
        if p is None:
            return DecisionOutcome("not_found", "No such proposal.")
        if decision not in ("approve", "reject"):
            return DecisionOutcome("refused", f"Unknown decision {decision!r}.", p)
        if p.status == "pending" and p.expires_at <= time.time():
            await self._expire(p)
            return DecisionOutcome("expired", "This proposal expired before anyone decided.", await self._get(p.id))
        if p.status != "pending":
            return self._already(p)
        rb = self.catalog.get(p.runbook_id)
        if rb is None:
            await audit(self.db, actor, "proposal.decision_refused", incident_id=p.incident_id,
                        params={"proposal_id": p.id, "decision": decision}, result="runbook not in the catalog")
            return DecisionOutcome("refused", f"Runbook {p.runbook_id} is no longer in the catalog.", p)
        if not is_authorised(rb, self.settings, principals):
            await audit(self.db, actor, "proposal.unauthorised", incident_id=p.incident_id,
                        params={"proposal_id": p.id, "decision": decision, "groups": rb.approval.groups},
                        result="not in an approval group")
            return DecisionOutcome(
                "unauthorised",
                f"You are not in an approver group for this runbook ({', '.join(rb.approval.groups)}).", p)
        if decision == "approve" and rb.risk == "high" and p.requested_by in principals:
            await audit(self.db, actor, "proposal.decision_refused", incident_id=p.incident_id,
                        params={"proposal_id": p.id, "decision": decision}, result="self-approval of high risk")
            return DecisionOutcome(
                "refused", "You requested this high-risk action; someone else must approve it.", p)
        outcome = await self._record(p, rb, actor, decision)
        if outcome.status in {"approved", "rejected", "awaiting_second_approval"}:
            await self._changed(outcome.proposal or p)
            if outcome.status == "approved":
                self.ctx.jobs.wakeup.set()
        return outcome

    async def _record(self, p: Proposal, rb: Runbook, actor: Actor,
                      decision: Literal["approve", "reject"]) -> DecisionOutcome:
        try:
            async with self.db.begin() as s:
                locked = (await s.exec(
                    select(Proposal).where(Proposal.id == p.id).with_for_update()
                )).one()
                if locked.status != "pending":
                    return self._already(locked)
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
                    await transition(s, self.db, p.id, p.incident_id, "pending", "rejected", actor,
                                     values=decided_values([actor.key]))
                    await self._incident(s, p.incident_id, phase="rejected")
                    status: DecisionStatus = "rejected"
                    msg = "Rejected. Nothing will run."
                else:
                    approvers = [a.actor for a in prior] + [actor.key]
                    if len(approvers) >= locked.approvals_needed:
                        await transition(s, self.db, p.id, p.incident_id, "pending", "approved", actor,
                                         params={"approvers": approvers}, values=decided_values(approvers))
                        await self.ctx.jobs.enqueue("execution", {"proposal_id": p.id},
                                                    dedup_key=f"execute:{p.id}", max_attempts=1, session=s)
                        status, msg = "approved", "Approved. onwatch is running it now."
                    else:
                        await audit(self.db, actor, "proposal.approval_recorded", incident_id=p.incident_id,
                                    params={"proposal_id": p.id, "approvers": approvers,
                                            "needed": locked.approvals_needed}, session=s)
                        status = "awaiting_second_approval"
                        msg = f"Your approval is recorded; {locked.approvals_needed - len(approvers)} more " \
                              "approver(s) needed (high risk needs two different people)."
        except IntegrityError:
            # The same person's concurrent second click lost the unique (proposal, actor) race.
            fresh = await self._get(p.id)
            return self._already(fresh) if fresh and fresh.status != "pending" else DecisionOutcome(
                "awaiting_second_approval", "Your approval was already recorded.", fresh)
        return DecisionOutcome(status, msg, await self._get(p.id))

    async def expire_due(self) -> int:
        """Expire every pending proposal past its TTL (run periodically by the leader)."""
        async with self.db.session() as s:
            due = list((await s.exec(
                select(Proposal).where(Proposal.status == "pending", col(Proposal.expires_at) <= time.time())
            )).all())
        n = 0
        for p in due:
            if await self._expire(p):
                n += 1
        return n

    # ------------------------------------------------------------------ execution

    async def run_execution(self, job: Job) -> None:
        """Job handler for kind ``execution``."""
        await self.execute(str(job.payload["proposal_id"]))

    async def _refuse(self, p: Proposal, reason: str) -> str:
        async with self.db.begin() as s:
            ok = await transition(s, self.db, p.id, p.incident_id, "approved", "failed", BOT,
                                  params={"refused": True}, result=f"refused at execution time: {reason}")
            if ok:
                s.add(Execution(proposal_id=p.id, incident_id=p.incident_id, status="failed", auto=p.auto,
                                finished_at=time.time(), error=f"refused at execution time: {reason}"[:4000]))
                await self._incident(s, p.incident_id, phase="failed")
        if ok:
            await self._changed(p, f"Not running “{p.title}”: {reason}")
        return "failed"

    async def execute(self, proposal_id: str) -> str:
        """Run an approved proposal at most once; return its final status."""
        p = await self._get(proposal_id)
        if p is None:
            return "not_found"
        if p.status != "approved":
            return p.status
        rb = self.catalog.get(p.runbook_id)
        if rb is None:
            return await self._refuse(p, f"runbook {p.runbook_id} is no longer in the catalog")
        try:
            action = render_action(rb, dict(p.params.get("values") or {}), p.service)
        except ParamError as exc:
            return await self._refuse(p, str(exc))
        problems = check_scope(rb, action, self.settings)
        if problems:
            return await self._refuse(p, "out of scope: " + "; ".join(problems))
        if p.auto:
            sw = await killswitch.state(self.db, self.settings)
            if not sw.enabled:
                return await self._refuse(p, f"automatic execution is {sw.describe()}")
        try:
            executor = self.executors.get(str(action["executor"]))
        except ExecutorRefused as exc:
            return await self._refuse(p, str(exc))
        exe = Execution(proposal_id=p.id, incident_id=p.incident_id, status="executing", auto=p.auto)
        async with self.db.begin() as s:
            ok = await transition(s, self.db, p.id, p.incident_id, "approved", "executing", BOT,
                                  params={"execution_id": exe.id, "action": action}, result=_target(action))
            if not ok:
                return "lost_race"
            s.add(exe)
            await self._incident(s, p.incident_id, phase="executing")
        await self._changed(p)
        timeout = float(action.get("timeout_s") or 60.0)
        status, error, before, after, detail = "failed", "", {}, {}, ""
        try:
            outcome = await asyncio.wait_for(executor.execute(action, execution_id=exe.id), timeout=timeout)
            status = "succeeded" if outcome.ok else "failed"
            before, after, detail = outcome.before, outcome.after, outcome.detail
            error = "" if outcome.ok else outcome.detail
        except ExecutorUnknown as exc:
            status, error = "unknown", str(exc)
        except ExecutorError as exc:
            status, error = "failed", str(exc)
        except TimeoutError:
            status, error = "unknown", f"no answer within {timeout:g} s; the change may or may not have happened"
        verifying = status == "succeeded" and rb.verify is not None
        async with self.db.begin() as s:
            await transition(s, self.db, p.id, p.incident_id, "executing", status, BOT,
                             params={"execution_id": exe.id, "before": before, "after": after},
                             result=error or detail)
            await s.exec(  # type: ignore[call-overload]
                update(Execution).where(col(Execution.id) == exe.id, col(Execution.status) == "executing")
                .values(status=status, finished_at=time.time(), before=before, after=after, error=error[:4000],
                        verification="pending" if verifying else "")
            )
            phase = {"succeeded": "verifying" if verifying else "executed", "failed": "failed",
                     "unknown": "execution_unknown"}[status]
            await self._incident(s, p.incident_id, phase=phase)
            if verifying:
                await self.ctx.jobs.enqueue("verification", {"execution_id": exe.id},
                                            dedup_key=f"verify:{exe.id}", session=s)
        text = {
            "succeeded": f"Done: {p.title}. {detail}".strip()
            + (" Verifying the symptom now." if verifying else " This runbook has no verify block: check the symptom."),
            "failed": f"Failed: {p.title}: {error}",
            "unknown": f"Outcome unknown: {p.title}: {error}. Check {_target(action)} by hand; onwatch will not re-run it.",
        }[status]
        await self._changed(p, text)
        if verifying:
            self.ctx.jobs.wakeup.set()
        return status

    async def on_execution_lost(self, job: Job) -> None:
        """The worker running this execution vanished (crash, kill): record ``unknown`` and say so. Never re-run."""
        p = await self._get(str(job.payload.get("proposal_id", "")))
        if p is None:
            return
        action = dict(p.params.get("action") or {})
        ok, text = False, ""
        async with self.db.begin() as s:
            if p.status == "executing":
                ok = await transition(s, self.db, p.id, p.incident_id, "executing", "unknown", BOT,
                                      params={"job_id": job.id}, result="the worker stopped mid-run")
                if ok:
                    await s.exec(  # type: ignore[call-overload]
                        update(Execution).where(col(Execution.proposal_id) == p.id,
                                                col(Execution.status) == "executing")
                        .values(status="unknown", finished_at=time.time(),
                                error="the worker stopped mid-run; the outcome is unknown")
                    )
                    await self._incident(s, p.incident_id, phase="execution_unknown")
                    text = (f"The run of “{p.title}” was interrupted (onwatch restarted mid-run). Its outcome is "
                            f"unknown: check {_target(action)} by hand. onwatch will not re-run it.")
            elif p.status == "approved":
                ok = await transition(s, self.db, p.id, p.incident_id, "approved", "failed", BOT,
                                      params={"job_id": job.id}, result="the worker stopped before it started")
                if ok:
                    s.add(Execution(proposal_id=p.id, incident_id=p.incident_id, status="failed", auto=p.auto,
                                    finished_at=time.time(),
                                    error="the worker stopped before the action started; nothing was changed"))
                    await self._incident(s, p.incident_id, phase="failed")
                    text = f"“{p.title}” did not start (onwatch restarted first); nothing was changed."
            else:
                return
        if ok:
            await self._changed(p, text)

    # ------------------------------------------------------------------ verification

    async def run_verification(self, job: Job) -> None:
        """Job handler for kind ``verification`` (resumable: re-running it only re-queries the symptom)."""
        await self.verify(str(job.payload["execution_id"]))

    async def verify(self, execution_id: str) -> str:
        """Re-query the symptom until it recovers or the deadline passes; mark the incident accordingly."""
        async with self.db.session() as s:
            exe = await s.get(Execution, execution_id)
            p = await s.get(Proposal, exe.proposal_id) if exe is not None else None
        if exe is None or p is None or exe.verification != "pending":
            return exe.verification if exe is not None else "not_found"
        rb = self.catalog.get(p.runbook_id)
        if rb is None or rb.verify is None:
            return ""
        result = await verify_until(self.ctx.sources_factory, rb.verify, p.service)
        outcome = "recovered" if result.recovered else "not_recovered"
        async with self.db.begin() as s:
            res = await s.exec(  # type: ignore[call-overload]
                update(Execution).where(col(Execution.id) == exe.id, col(Execution.verification) == "pending")
                .values(verification=outcome, verified_at=time.time())
            )
            if res.rowcount != 1:
                return outcome
            await audit(self.db, BOT, f"verification.{outcome}", incident_id=p.incident_id,
                        params={"execution_id": exe.id, "proposal_id": p.id, "signal": rb.verify.signal,
                                "value": result.value, "checks": result.checks,
                                "elapsed_s": round(result.elapsed_s, 3)},
                        result=result.detail, session=s)
            if result.recovered:
                await self._incident(s, p.incident_id, phase="verified", status="mitigated")
            else:
                await self._incident(s, p.incident_id, phase="not_recovered")
        text = (f"Recovered after “{p.title}”: {result.detail}. The incident is mitigated."
                if result.recovered else
                f"“{p.title}” did not help: {result.detail}. The incident stays open.")
        await self._changed(p, text)
        return outcome
