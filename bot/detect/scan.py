"""The degradation scan: every service's catalog signals, replayed through the detector, as watch findings.

Run by the scheduler leader every ``detect.every_s``. Each configured signal is one query over the last
``detect.lookback_s`` (a series per service, as investigations read it). A series whose latest episode in the
signal's bad direction still holds (``bot.detect.episodes``) is a finding for the watch (``bot.watch``), which
posts it once, holds it, rate-limits and silences it. What the scan read and found holding also tells the watch
which degradations recovered; a signal whose query failed recovers nothing, since no data is not health.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.config import DetectSettings
from bot.detect.detector import DetectorConfig
from bot.detect.episodes import Episode, current_episode
from bot.investigate.catalog import classify
from bot.messages.format import utc_time
from bot.ports import WatchPort
from bot.watch.model import WatchFinding, WatchKind
from integrations.base import Series, SourceError, Sources, TimeWindow

log = logging.getLogger(__name__)

FINDING_NAME = "Degradation"
MIN_SERIES_POINTS = 30  # fewer points than this is no baseline


@dataclass(slots=True)
class ScanResult:
    findings: list[WatchFinding] = field(default_factory=list)
    holding: set[str] = field(default_factory=set)  # keys of the degradations that still hold
    judged: set[str] = field(default_factory=set)  # keys of every series read and judged
    failed: list[str] = field(default_factory=list)  # "signal: reason" for each query that failed
    skipped: list[str] = field(default_factory=list)  # configured signals the catalog does not have
    series: int = 0

    @property
    def complete(self) -> bool:
        """Every signal was read: only then may the watch close what no longer holds."""
        return not self.failed


def watch_key(service: str, signal: str) -> str:
    return f"degradation:{service}:{signal}"


def detector_config(points: Sequence[tuple[float, float]], settings: DetectSettings) -> DetectorConfig:
    """The detector for a series at its own step: a baseline of ``baseline_s`` worth of its points."""
    steps = [b[0] - a[0] for a, b in zip(points, points[1:], strict=False) if b[0] > a[0]]
    step = statistics.median(steps) if steps else 60.0
    history = max(int(settings.baseline_s / step), MIN_SERIES_POINTS)
    return DetectorConfig(warmup=history, history=history, quiet_s=float(settings.quiet_s),
                          season_tolerance_s=max(step, 60.0))


def _finding(series: Series, episode: Episode) -> WatchFinding:
    way = "up" if episode.direction > 0 else "down"
    since = utc_time(episode.started_at)
    return WatchFinding(
        kind=WatchKind.DEGRADATION, key=watch_key(series.service, series.signal), service=series.service,
        signal=series.signal, name=FINDING_NAME,
        title=f"{series.signal} of {series.service} is drifting {way}",
        summary=(f"{series.signal} is {episode.value:.4g}, against a usual {episode.baseline:.4g} "
                 f"({abs(episode.change):.1f} times its usual spread) since {since}; seen at "
                 f"{utc_time(episode.detected_at)}. No alert has fired on it yet."),
        started_at=episode.started_at, value=episode.value, baseline=episode.baseline,
        points=series.points, labels={"direction": way})


def judge(series: Series, settings: DetectSettings) -> WatchFinding | None:
    """A finding when ``series`` is in a degradation that still holds, in its signal's bad direction."""
    if len(series.points) < MIN_SERIES_POINTS:
        return None
    direction = classify(series.signal).direction
    episode = current_episode(series.points, detector_config(series.points, settings), direction)
    if episode is None or not episode.holding:
        return None
    return _finding(series, episode)


async def scan(sources: Sources, settings: DetectSettings) -> ScanResult:
    """One pass over the configured signals; what held, what was found, what could not be read."""
    result = ScanResult()
    metrics = sources.metrics
    if metrics is None:
        result.failed.append("no metrics source")
        return result
    now = sources.clock()
    window = TimeWindow(now - settings.lookback_s, now)
    try:
        available = set(await metrics.available_signals())
    except SourceError as exc:
        result.failed.append(f"signals: {exc}")
        return result
    wanted = set(settings.services)
    for signal in settings.signals:
        if signal not in available:
            result.skipped.append(signal)
            continue
        try:
            found = await metrics.signal(signal, window, sorted(wanted) or None)
        except SourceError as exc:
            result.failed.append(f"{signal}: {exc}")
            continue
        series = [s for s in found if not wanted or s.service in wanted]
        result.series += len(series)
        result.judged.update(watch_key(s.service, s.signal) for s in series)
        # a few ms of CPU per series: off the event loop, so webhooks are answered while a scan runs
        for finding in await asyncio.to_thread(_judge_all, series, settings):
            result.findings.append(finding)
            result.holding.add(finding.key)
    return result


def _judge_all(series: Sequence[Series], settings: DetectSettings) -> list[WatchFinding]:
    return [f for f in (judge(s, settings) for s in series) if f is not None]


async def scan_and_watch(sources_factory: Callable[[], Sources], settings: DetectSettings,
                         watch: WatchPort) -> ScanResult:
    """The scheduled job: scan, hand each finding to the watch, and close what recovered (only after a scan
    that read every signal)."""
    sources = sources_factory()
    try:
        result = await scan(sources, settings)
    finally:
        await sources.aclose()
    if result.skipped:
        log.info("degradation scan: the metrics catalog has no %s; not scanned (detect.signals)",
                 ", ".join(result.skipped))
    for finding in result.findings:
        await watch.observe(finding)
    if result.complete:
        await watch.recover(result.holding, WatchKind.DEGRADATION, judged=result.judged)
    else:
        log.warning("degradation scan could not read %s; no watch item is closed this time", "; ".join(result.failed))
    return result
