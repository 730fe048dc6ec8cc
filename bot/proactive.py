"""The proactive checks as the scheduler leader runs them: the degradation scan and the SLO check, feeding the watch.

Both read the metrics source the investigations read (a fresh set of sources per run, closed after it), so a
check never holds a connection between ticks. A fast SLO burn is paged through triage by ``check_slos``; its slow
burns and every degradation become watch items (``bot.watch``): early warnings, posted once, rate-limited,
silenced, closed on recovery and escalated when an incident on the service is investigated.
"""

from __future__ import annotations

import logging
import time

from bot.context import AppContext
from bot.detect.scan import ScanResult, scan_and_watch
from bot.ports import WatchPort
from bot.slo.check import SloWarning, key_of
from bot.slo.evaluate import SloStatus
from bot.slo.prom import PrometheusSli
from bot.slo_check import check_slos, fired_alerts
from bot.watch.model import WatchFinding, WatchKind

log = logging.getLogger(__name__)

SLO_WARNING_NAME = "SLOErrorBudgetBurn"


def slo_finding(warning: SloWarning) -> WatchFinding:
    """A slow burn as a watch finding: its value is the fastest burn, against the sustainable 1x."""
    return WatchFinding(kind=WatchKind.SLO_BURN, key=warning.key, service=warning.service, signal=warning.slo,
                        title=warning.title, summary=warning.text, started_at=warning.at,
                        value=max(warning.burns.values(), default=None), baseline=1.0, unit="x",
                        labels=warning.labels, name=SLO_WARNING_NAME)


async def run_degradation_scan(ctx: AppContext, watch: WatchPort) -> ScanResult:
    return await scan_and_watch(ctx.sources_factory, ctx.settings.detect, watch)


async def run_slo_check(ctx: AppContext, watch: WatchPort) -> list[SloStatus]:
    """One SLO check over the metrics source; nothing when it is not a Prometheus API, or when there is neither an
    SLO to check nor a page left to resolve (no sources are built then)."""
    if not ctx.settings.slos and not await fired_alerts(ctx.db):
        return []
    sources = ctx.sources_factory()
    try:
        sli = PrometheusSli.from_source(sources.metrics)
        if sli is None:
            log.warning("slos: configured, but sources.metrics is not a Prometheus API; no SLO is checked")
            return []

        async def warn(w: SloWarning) -> None:
            await watch.observe(slo_finding(w))

        async def clear(name: str) -> None:
            await watch.close(key_of(name))

        return await check_slos(ctx, sli, now=sources.now if sources.now is not None else time.time(),
                                warn=warn, clear=clear)
    finally:
        await sources.aclose()
