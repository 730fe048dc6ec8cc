"""Verification: after an action succeeds, re-query the symptom until it recovers or the deadline passes.

The symptom is the runbook's ``verify`` block: one metrics signal of the cause's service and a threshold
(``below`` or ``above``) that must hold for ``consecutive`` polls in a row within ``deadline_s``. A failing
metrics source counts as "no data" for that poll (named in the result), never as recovery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.remediate.catalog import Verify
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
