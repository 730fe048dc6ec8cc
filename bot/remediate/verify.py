"""Verify: after an action succeeds, re-query the symptom until it recovers or the deadline passes, and record
the outcome (the incident is mitigated when the fix held).

The symptom is the runbook's ``verify`` block: one metrics signal of the cause's service and a threshold
(``below`` or ``above``) that must hold for ``consecutive`` polls in a row within ``deadline_s``. A failing
metrics source counts as "no data" for that poll (named in the result), never as recovery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import col

from bot.audit import BOT, audit
from bot.incidents.lifecycle import IncidentPhase, IncidentStatus
from bot.remediate.catalog import Verify
from bot.remediate.shared import Remediation, changed, set_phase
from bot.store.models import Execution, Proposal
from integrations.base import SourceError, Sources, TimeWindow


@dataclass(frozen=True, slots=True)
class VerifyResult:
    recovered: bool
    value: float | None
    checks: int
    elapsed_s: float
    detail: str


async def observe(sources: Sources, verify: Verify, service: str) -> float | None:
    """The latest value of the signal for ``service`` (None when there is no data)."""
    if sources.metrics is None:
        raise SourceError("metrics", "no metrics source is configured")
    now = sources.clock()
    series = await sources.metrics.signal(verify.signal, TimeWindow(now - verify.lookback_s, now), [service])
    mine = [s for s in series if s.service == service] or series
    points = [p for s in mine for p in s.points]
    if not points:
        return None
    return float(max(points, key=lambda p: p[0])[1])


async def verify_until(
    sources_factory: Callable[[], Sources],
    verify: Verify,
    service: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> VerifyResult:
    start = clock()
    deadline = start + verify.deadline_s
    good = checks = 0
    last: float | None = None
    last_error = ""
    sources = sources_factory()
    try:
        while True:
            checks += 1
            try:
                last = await asyncio.wait_for(observe(sources, verify, service),
                                              timeout=max(0.05, deadline - clock()) + 5.0)
                last_error = ""
            except (SourceError, TimeoutError) as exc:
                last, last_error = None, str(exc) or "timed out"
            if last is not None and verify.holds(last):
                good += 1
                if good >= verify.consecutive:
                    return VerifyResult(True, last, checks, clock() - start,
                                        f"{verify.describe()} holds: {verify.signal} = {last:g}")
            else:
                good = 0
            remaining = deadline - clock()
            if remaining <= 0:
                seen = f"{verify.signal} = {last:g}" if last is not None else f"no data ({last_error or 'empty'})"
                return VerifyResult(False, last, checks, clock() - start,
                                    f"{verify.describe()} did not hold within {verify.deadline_s:g} s: {seen}")
            await sleep(min(verify.poll_s, remaining))
    finally:
        await sources.aclose()


async def verify(r: Remediation, execution_id: str) -> str:
    """Re-query the symptom until it recovers or the deadline passes; mark the incident accordingly. Resumable:
    a re-run job only re-queries, and the outcome is recorded once (``verification = 'pending'`` guards it)."""
    async with r.db.session() as s:
        exe = await s.get(Execution, execution_id)
        p = await s.get(Proposal, exe.proposal_id) if exe is not None else None
    if exe is None or p is None or exe.verification != "pending":
        return exe.verification if exe is not None else "not_found"
    rb = r.catalog.get(p.runbook_id)
    if rb is None or rb.verify is None:
        return ""
    result = await verify_until(r.ctx.sources_factory, rb.verify, p.service)
    outcome = "recovered" if result.recovered else "not_recovered"
    async with r.db.begin() as s:
        res = await s.exec(  # type: ignore[call-overload]
            update(Execution).where(col(Execution.id) == exe.id, col(Execution.verification) == "pending")
            .values(verification=outcome, verified_at=time.time())
        )
        if res.rowcount != 1:
            return outcome
        await audit(r.db, BOT, f"verification.{outcome}", incident_id=p.incident_id,
                    params={"execution_id": exe.id, "proposal_id": p.id, "signal": rb.verify.signal,
                            "value": result.value, "checks": result.checks,
                            "elapsed_s": round(result.elapsed_s, 3)},
                    result=result.detail, session=s)
        if result.recovered:
            await set_phase(s, r, p.incident_id, IncidentPhase.VERIFIED, IncidentStatus.MITIGATED)
            text = f"Recovered after “{p.title}”: {result.detail}. The incident is mitigated."
        else:
            await set_phase(s, r, p.incident_id, IncidentPhase.NOT_RECOVERED)
            text = f"“{p.title}” did not help: {result.detail}. The incident stays open."
        await changed(s, p, text)
    await r.publish()
    return outcome
