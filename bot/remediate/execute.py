"""Execute: run an approved proposal at most once (invariant 2), re-rendered from its catalog runbook and
re-checked against its scope and the kill switch right before it runs (invariants 1 and 5).

``approved -> executing`` is one conditional update, so two workers cannot both start it; the outcome is
``succeeded``, ``failed`` or ``unknown`` (a write sent and no answer: never re-run by itself). A worker that
vanished mid-run leaves ``unknown`` (``on_execution_lost``). A success with a ``verify`` block queues the
verification job in the same transaction.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import update
from sqlmodel import col

from bot.audit import BOT
from bot.incidents.lifecycle import IncidentPhase
from bot.remediate import killswitch
from bot.remediate.match import render_action
from bot.remediate.params import ParamError
from bot.remediate.policy import check_scope
from bot.remediate.shared import Remediation, changed, set_phase, target
from bot.remediate.state import ProposalStatus, transition
from bot.store.models import Execution, Job, Proposal
from integrations.executors import ExecutorError, ExecutorRefused, ExecutorUnknown

P = IncidentPhase
S = ProposalStatus
_PHASE_AFTER = {S.FAILED: P.FAILED, S.UNKNOWN: P.EXECUTION_UNKNOWN}


async def _refuse(r: Remediation, p: Proposal, reason: str) -> str:
    why = f"refused at execution time: {reason}"
    await _fail_unstarted(r, p, {"refused": True}, why, why, f"Not running “{p.title}”: {reason}")
    return S.FAILED


async def _fail_unstarted(r: Remediation, p: Proposal, params: dict[str, Any], result: str, error: str,
                          note: str) -> None:
    """``approved -> failed`` before anything ran: a failed execution row, the incident's phase, the thread told."""
    async with r.db.begin() as s:
        ok = await transition(s, r.db, p.id, p.incident_id, S.APPROVED, S.FAILED, BOT, params=params, result=result)
        if ok:
            s.add(Execution(proposal_id=p.id, incident_id=p.incident_id, status=S.FAILED.value, auto=p.auto,
                            finished_at=time.time(), error=error[:4000]))
            await set_phase(s, r, p.incident_id, P.FAILED)
            await changed(s, p, note)
    if ok:
        await r.publish()


async def execute(r: Remediation, proposal_id: str) -> str:
    """Run an approved proposal at most once; return its final status."""
    p = await r.proposal(proposal_id)
    if p is None:
        return "not_found"
    if p.status != S.APPROVED:
        return p.status
    rb = r.catalog.get(p.runbook_id)
    if rb is None:
        return await _refuse(r, p, f"runbook {p.runbook_id} is no longer in the catalog")
    try:
        action = render_action(rb, dict(p.params.get("values") or {}), p.service)
    except ParamError as exc:
        return await _refuse(r, p, str(exc))
    problems = check_scope(rb, action, r.settings)
    if problems:
        return await _refuse(r, p, "out of scope: " + "; ".join(problems))
    if p.auto:
        sw = await killswitch.state(r.db, r.settings)
        if not sw.enabled:
            return await _refuse(r, p, f"automatic execution is {sw.describe()}")
    try:
        executor = r.executors.get(str(action["executor"]))
    except ExecutorRefused as exc:
        return await _refuse(r, p, str(exc))
    exe = Execution(proposal_id=p.id, incident_id=p.incident_id, status=S.EXECUTING.value, auto=p.auto)
    async with r.db.begin() as s:
        ok = await transition(s, r.db, p.id, p.incident_id, S.APPROVED, S.EXECUTING, BOT,
                              params={"execution_id": exe.id, "action": action}, result=target(action))
        if not ok:
            return "lost_race"
        s.add(exe)
        await set_phase(s, r, p.incident_id, P.EXECUTING)
        await changed(s, p)
    await r.publish()
    timeout = float(action.get("timeout_s") or 60.0)
    status: ProposalStatus = S.FAILED
    error, before, after, detail = "", {}, {}, ""
    try:
        outcome = await asyncio.wait_for(executor.execute(action, execution_id=exe.id), timeout=timeout)
        status = S.SUCCEEDED if outcome.ok else S.FAILED
        before, after, detail = outcome.before, outcome.after, outcome.detail
        error = "" if outcome.ok else outcome.detail
    except ExecutorUnknown as exc:
        status, error = S.UNKNOWN, str(exc)
    except ExecutorError as exc:
        status, error = S.FAILED, str(exc)
    except TimeoutError:
        status, error = S.UNKNOWN, f"no answer within {timeout:g} s; the change may or may not have happened"
    verifying = status == S.SUCCEEDED and rb.verify is not None
    await _finish(r, p, exe, action, status, error, detail, before, after, verifying)
    if verifying:
        r.ctx.jobs.wakeup.set()
    return status


async def _finish(r: Remediation, p: Proposal, exe: Execution, action: dict[str, Any], status: ProposalStatus,
                  error: str,
                  detail: str, before: dict[str, Any], after: dict[str, Any], verifying: bool) -> None:
    text = {
        S.SUCCEEDED: f"Done: {p.title}. {detail}".strip()
        + (" Verifying the symptom now." if verifying else " This runbook has no verify block: check the symptom."),
        S.FAILED: f"Failed: {p.title}: {error}",
        S.UNKNOWN: f"Outcome unknown: {p.title}: {error}. Check {target(action)} by hand; onwatch will not re-run it.",
    }[status]
    async with r.db.begin() as s:
        await transition(s, r.db, p.id, p.incident_id, S.EXECUTING, status, BOT,
                         params={"execution_id": exe.id, "before": before, "after": after},
                         result=error or detail)
        await s.exec(  # type: ignore[call-overload]
            update(Execution).where(col(Execution.id) == exe.id, col(Execution.status) == S.EXECUTING.value)
            .values(status=status.value, finished_at=time.time(), before=before, after=after, error=error[:4000],
                    verification="pending" if verifying else "")
        )
        phase = (P.VERIFYING if verifying else P.EXECUTED) if status == S.SUCCEEDED else _PHASE_AFTER[status]
        await set_phase(s, r, p.incident_id, phase)
        if verifying:
            await r.ctx.jobs.enqueue("verification", {"execution_id": exe.id},
                                     dedup_key=f"verify:{exe.id}", session=s)
        await changed(s, p, text)
    await r.publish()


async def on_execution_lost(r: Remediation, job: Job) -> None:
    """The worker running this execution vanished (crash, kill): record ``unknown`` and say so. Never re-run."""
    p = await r.proposal(str(job.payload.get("proposal_id", "")))
    if p is None:
        return
    if p.status == S.APPROVED:
        await _fail_unstarted(r, p, {"job_id": job.id}, "the worker stopped before it started",
                              "the worker stopped before the action started; nothing was changed",
                              f"“{p.title}” did not start (onwatch restarted first); nothing was changed.")
        return
    if p.status != S.EXECUTING:
        return
    action = dict(p.params.get("action") or {})
    async with r.db.begin() as s:
        ok = await transition(s, r.db, p.id, p.incident_id, S.EXECUTING, S.UNKNOWN, BOT,
                              params={"job_id": job.id}, result="the worker stopped mid-run")
        if ok:
            await s.exec(  # type: ignore[call-overload]
                update(Execution).where(col(Execution.proposal_id) == p.id,
                                        col(Execution.status) == S.EXECUTING.value)
                .values(status=S.UNKNOWN.value, finished_at=time.time(),
                        error="the worker stopped mid-run; the outcome is unknown")
            )
            await set_phase(s, r, p.incident_id, P.EXECUTION_UNKNOWN)
            await changed(s, p, f"The run of “{p.title}” was interrupted (onwatch restarted mid-run). Its "
                                f"outcome is unknown: check {target(action)} by hand. onwatch will not re-run it.")
    if ok:
        await r.publish()
