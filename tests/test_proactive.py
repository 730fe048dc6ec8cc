"""The proactive checks end to end on real parts: ``bot.proactive`` over a real Prometheus (Debian's package,
backfilled with promtool), the metrics source built from settings (``build_sources``), the real watch service
over the test database, posting through a recording poster (the chat edge is covered by tests/test_watch_*.py).

Four days of data, one sample a minute. ``latency_seconds{job}`` is a noisy daily cycle (0.2 s +- 0.05, noise
0.01) for ``search``, ``checkout`` and ``basket``; ``checkout`` drifts up by 0.25 s over the four hours before
``NOW`` and is back to normal right after (``basket`` the same, but from the low of its daily cycle). ``ledger``
fails 0.2 % of its requests (2x a 0.999 budget: a slow burn, a ticket on the 3d/6h pair) until ``NOW`` and 0.01 %
after, so four hours later (``LATER``) its 6 h window is under 1x. ``wallet`` burns 2x too, then 20x in the hour
before ``LATER``: a page. The catalog's ``latency_p99`` reads the gauge (``sources.metrics.signals``), the way an
operator maps a signal.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bot.app import build_runner, build_scheduler, context_for
from bot.audit import Actor, verify_chain
from bot.config import DetectSettings, Settings, WatchSettings
from bot.context import AppContext
from bot.detect.scan import watch_key
from bot.messages.model import Message
from bot.proactive import SLO_WARNING_NAME, run_degradation_scan, run_slo_check
from bot.slo.evaluate import SloState
from bot.slo.model import SLO
from bot.store.db import Database
from bot.store.models import AuditEvent, Incident, Investigation, WatchItem
from bot.triage import silences
from bot.triage.alert import make_alert
from bot.watch.model import PostRef, WatchKind, WatchStatus
from bot.watch.service import WatchService
from integrations.registry import build_sources
from integrations.settings import MetricsSourceSettings, SourcesSettings
from tests.integrations_fixtures import RunningPrometheus, free_port, prometheus_with_openmetrics
from tests.prom_fixtures import REQUESTS, event_slo, gauge_rows, request_counter_rows, write_openmetrics
from tests.watch_fixtures import Clock

pytestmark = pytest.mark.prometheus

STEP = 60
DAY, HOUR = 86_400, 3_600
T0 = 1_700_006_400  # a multiple of the step
NOW = T0 + 4 * DAY  # checkout has drifted for four hours; ledger has burnt 2x for four days
LATER = NOW + 4 * HOUR  # both recovered
END = LATER + 1_800
DRIFT_FROM, DRIFT = NOW - 4 * HOUR, 0.25
HEALTHY, DRIFTING, BURNING, PAGED = "search", "checkout", "ledger", "wallet"
LATE = "basket"  # drifts like checkout, but starting from its daily low (see test_a_drift_from_the_daily_low)
SCANNED = [HEALTHY, DRIFTING]  # what the tests scan, unless they say otherwise
PEAK_AT = {HEALTHY: NOW + 3 * HOUR, DRIFTING: NOW, LATE: NOW + 6 * HOUR}  # when each daily cycle is highest
OPERATOR = Actor("cli", "op")

LATENCY = {"latency_p99": "max by (${by}) (latency_seconds{${sel}})"}
# The same gauge under a second signal name: a second degradation of the same service (the rate limit)
SECOND = {**LATENCY, "latency_p90": "max by (${by}) (latency_seconds{${sel}})"}
# rate() of an instant vector: Prometheus refuses the query (its metric exists, so the signal is listed)
BROKEN = {**LATENCY, "error_rate": "rate(max by (${by}) (latency_seconds{${sel}}))"}


def latency(service: str, t: int, rng: random.Random) -> float:
    cycle = 0.2 + 0.05 * math.cos(2 * math.pi * (t - PEAK_AT[service]) / DAY)
    drifts = service in (DRIFTING, LATE) and DRIFT_FROM < t <= NOW
    drift = DRIFT * (t - DRIFT_FROM) / (NOW - DRIFT_FROM) if drifts else 0.0
    return round(cycle + drift + rng.gauss(0.0, 0.01), 6)


def ledger_errors(t: int) -> float:
    return 0.002 if t <= NOW else 0.0001


def wallet_errors(t: int) -> float:
    """A slow burn that turns fast: 2x until the hour before ``LATER``, 20x in it."""
    return 0.02 if LATER - HOUR < t <= LATER else 0.002


def openmetrics(path: Path) -> Path:
    times = range(T0, END + 1, STEP)
    gauges = [row for svc in (HEALTHY, DRIFTING, LATE)
              for row in gauge_rows("latency_seconds", {"job": svc},
                                    [(t, latency(svc, t, rng)) for rng in [random.Random(svc)] for t in times])]
    return write_openmetrics(path, {"latency_seconds": gauges,
                                    REQUESTS: request_counter_rows(BURNING, times, 600.0, ledger_errors)
                                    + request_counter_rows(PAGED, times, 600.0, wallet_errors)})


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    work = tmp_path_factory.mktemp("proactive")
    with prometheus_with_openmetrics(openmetrics(work / "proactive.om"), work) as p:
        yield p


@dataclass
class RecordingPoster:
    """A ``WatchPoster`` that keeps what it was asked to post."""

    platform: str = "recording"
    started: list[Message] = field(default_factory=list)
    replies: list[tuple[PostRef, Message]] = field(default_factory=list)

    async def start(self, message: Message) -> PostRef | None:
        self.started.append(message)
        return PostRef(self.platform, "incidents", f"post-{len(self.started)}")

    async def reply(self, ref: PostRef, message: Message) -> bool:
        self.replies.append((ref, message))
        return True


@dataclass
class Rig:
    ctx: AppContext
    watch: WatchService
    poster: RecordingPoster
    clock: Clock

    @property
    def settings(self) -> Settings:
        return self.ctx.settings


def rig(settings: Settings, db: Database, url: str, signals: dict[str, str], *, detect: dict[str, Any] | None = None,
        watch: dict[str, Any] | None = None, slos: list[dict[str, Any]] | None = None) -> Rig:
    """The context ``build_context`` would give (its sources from settings, its watch over ``db``), with the
    clock of the sources and of the watch at ``NOW`` and a recording poster for chat."""
    metrics = MetricsSourceSettings.model_validate({"url": url, "catalog": "otel", "signals": signals, "retries": 0})
    s = settings.model_copy(update={
        "sources": SourcesSettings(metrics=metrics), "detect": DetectSettings(**{"services": SCANNED, **(detect or {})}),
        "watch": WatchSettings(**(watch or {})), "slos": [SLO.model_validate(x) for x in slos or []]})
    ctx = context_for(s, db)
    clock = Clock(float(NOW))
    ctx.sources_factory = lambda: build_sources(s.sources, db=db, now=clock.now)
    poster = RecordingPoster()
    ctx.watch = WatchService(s.watch, db, [poster], ctx.sources_factory, memory=s.memory, clock=clock)
    return Rig(ctx, ctx.watch, poster, clock)


async def items(db: Database) -> list[WatchItem]:
    async with db.session() as s:
        return list((await s.exec(select(WatchItem).order_by(col(WatchItem.id)))).all())


async def incidents(db: Database) -> list[Incident]:
    async with db.session() as s:
        return list((await s.exec(select(Incident))).all())


CHECKOUT_KEY = watch_key(DRIFTING, "latency_p99")


# ---------------------------------------------------------------- the degradation scan


async def test_a_drift_opens_one_item_held_then_closed_on_recovery(settings: Settings, anydb: Database,
                                                                   prom: RunningPrometheus) -> None:
    db = anydb
    r = rig(settings, db, prom.url, LATENCY)

    result = await run_degradation_scan(r.ctx, r.watch)
    assert result.complete and result.series == 2  # both services read; the otel signals not in the TSDB skipped
    assert "latency_p99" not in result.skipped and "cpu" in result.skipped  # the otel catalog has no cpu
    (found,) = result.findings
    assert (found.service, found.signal, found.kind) == (DRIFTING, "latency_p99", WatchKind.DEGRADATION)
    assert result.holding == {CHECKOUT_KEY}
    # dated from the drift's beginning, not from when it became certain; the value is the drifted level
    assert DRIFT_FROM <= found.started_at < NOW - HOUR
    assert found.value is not None and found.baseline is not None and found.value - found.baseline > 0.15
    (item,) = await items(db)
    assert (item.key, item.service, item.status, item.opened_at) == (CHECKOUT_KEY, DRIFTING, WatchStatus.OPEN, NOW)
    (post,) = r.poster.started
    assert "checkout" in post.fallback and "latency_p99" in post.fallback
    assert item.posts == [{"platform": "recording", "channel": "incidents", "thread": "post-1"}]

    # the next tick at the same time: held, nothing posted again
    r.clock.now = NOW + 300
    again = await run_degradation_scan(r.ctx, r.watch)
    assert again.holding == {CHECKOUT_KEY}
    (held,) = await items(db)
    assert held.id == item.id and held.status == WatchStatus.OPEN and held.last_seen_at == NOW + 300
    assert len(r.poster.started) == 1 and r.poster.replies == []

    # four hours on checkout is back to normal: the scan still reads the episode, but it no longer holds
    r.clock.now = LATER
    recovered = await run_degradation_scan(r.ctx, r.watch)
    assert recovered.complete and recovered.findings == [] and recovered.holding == set()
    (closed,) = await items(db)
    assert closed.status == WatchStatus.CLOSED and closed.closed_at == LATER
    (ref, reply), = r.poster.replies
    assert ref.thread == "post-1" and reply.key == f"watch:{item.id}:closed" and "Recovered at" in reply.fallback
    assert len(r.poster.started) == 1
    async with db.session() as s:
        actions = [a.action for a in (await s.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))).all()
                   if a.action.startswith("watch.")]
    assert actions == ["watch.opened", "watch.closed"] and (await verify_chain(db)).ok


async def test_a_drift_from_the_daily_low_is_found(settings: Settings, db: Database, prom: RunningPrometheus) -> None:
    """basket drifts exactly like checkout (0.25 s over four hours, 5 spreads above its usual level at NOW), but
    starts at the low of its daily cycle."""
    r = rig(settings, db, prom.url, LATENCY, detect={"services": [LATE]})
    result = await run_degradation_scan(r.ctx, r.watch)
    assert result.series == 1 and [f.key for f in result.findings] == [watch_key(LATE, "latency_p99")]


async def test_a_silence_on_the_service_suppresses_it(settings: Settings, db: Database,
                                                      prom: RunningPrometheus) -> None:
    r = rig(settings, db, prom.url, LATENCY)
    made = await silences.create(db, r.settings, OPERATOR, None, {"service": DRIFTING}, 2 * HOUR, "deploy",
                                 now=NOW - 60)
    result = await run_degradation_scan(r.ctx, r.watch)
    assert [f.key for f in result.findings] == [CHECKOUT_KEY]  # seen, then silenced by the watch
    assert await items(db) == [] and r.poster.started == []
    # once the silence is removed the same degradation is posted on the next tick
    await silences.remove(db, r.settings, OPERATOR, None, made.id, now=NOW + 60)
    r.clock.now = NOW + 300
    await run_degradation_scan(r.ctx, r.watch)
    assert [i.key for i in await items(db)] == [CHECKOUT_KEY] and len(r.poster.started) == 1


async def test_one_new_item_per_service_per_interval(settings: Settings, db: Database,
                                                     prom: RunningPrometheus) -> None:
    r = rig(settings, db, prom.url, SECOND, detect={"signals": ["latency_p99", "latency_p90"]},
            watch={"min_interval_s": 3600})
    result = await run_degradation_scan(r.ctx, r.watch)
    assert sorted(f.key for f in result.findings) == [watch_key(DRIFTING, "latency_p90"), CHECKOUT_KEY]
    (item,) = await items(db)  # the second degradation of checkout within the hour is rate-limited
    assert item.key == CHECKOUT_KEY and len(r.poster.started) == 1
    # the rate-limited one stays unposted on the next tick, while the first is held
    r.clock.now = NOW + 600
    await run_degradation_scan(r.ctx, r.watch)
    assert [i.key for i in await items(db)] == [CHECKOUT_KEY] and len(r.poster.started) == 1
    # a service with its own interval of 0 is not limited
    r2 = rig(settings, db, prom.url, SECOND, detect={"signals": ["latency_p99", "latency_p90"]},
             watch={"min_interval_s": 3600, "service_intervals": {DRIFTING: 0}})
    r2.clock.now = NOW + 900
    await run_degradation_scan(r2.ctx, r2.watch)
    assert sorted(i.key for i in await items(db)) == [watch_key(DRIFTING, "latency_p90"), CHECKOUT_KEY]


async def test_a_failed_query_closes_nothing_and_is_logged(settings: Settings, db: Database, prom: RunningPrometheus,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    r = rig(settings, db, prom.url, BROKEN)
    opened = await run_degradation_scan(r.ctx, r.watch)
    assert [f.key for f in opened.findings] == [CHECKOUT_KEY] and not opened.complete
    (item,) = await items(db)
    assert item.status == WatchStatus.OPEN  # a finding is taken even when another signal failed

    # at LATER latency_p99 is read and checkout has recovered, but error_rate failed: nothing is closed
    r.clock.now = LATER
    caplog.set_level(logging.WARNING, "bot.detect.scan")
    result = await run_degradation_scan(r.ctx, r.watch)
    assert result.findings == [] and result.series == 2
    (failed,) = result.failed
    assert failed.startswith("error_rate: ") and "range vector" in failed
    (still,) = await items(db)
    assert still.status == WatchStatus.OPEN and r.poster.replies == []
    assert "degradation scan could not read error_rate" in caplog.text and "no watch item is closed" in caplog.text


async def test_an_unreachable_prometheus_closes_nothing(settings: Settings, db: Database, prom: RunningPrometheus,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    r = rig(settings, db, prom.url, LATENCY)
    await run_degradation_scan(r.ctx, r.watch)
    down = rig(settings, db, f"http://127.0.0.1:{free_port()}", LATENCY)
    down.clock.now = LATER
    caplog.set_level(logging.WARNING, "bot.detect.scan")
    result = await run_degradation_scan(down.ctx, down.watch)
    assert not result.complete and result.failed[0].startswith("signals: ") and result.series == 0
    (item,) = await items(db)
    assert item.status == WatchStatus.OPEN
    assert "degradation scan could not read signals: " in caplog.text


# ---------------------------------------------------------------- the SLO check


async def test_a_slow_burn_is_a_watch_item_closed_when_it_stops(settings: Settings, anydb: Database,
                                                                 prom: RunningPrometheus) -> None:
    db = anydb
    r = rig(settings, db, prom.url, LATENCY, slos=[event_slo(BURNING)])
    (status,) = await run_slo_check(r.ctx, r.watch)
    assert status.state == SloState.TICKET
    assert status.burns[259200.0] == pytest.approx(2.0) and status.burns[21600.0] == pytest.approx(2.0)
    (item,) = await items(db)
    assert (item.kind, item.service, item.signal, item.status) == (
        WatchKind.SLO_BURN, BURNING, f"{BURNING}-availability", WatchStatus.OPEN)
    assert item.detail["value"] == pytest.approx(2.0) and item.detail["baseline"] == 1.0
    assert item.detail["alertname"] == SLO_WARNING_NAME
    (post,) = r.poster.started
    assert BURNING in post.fallback
    assert await incidents(db) == []  # a ticket is not a page

    r.clock.now = NOW + 600  # still burning: held
    await run_slo_check(r.ctx, r.watch)
    assert len(await items(db)) == 1 and len(r.poster.started) == 1 and r.poster.replies == []

    r.clock.now = LATER  # the 6 h window is down to 0.73x: the ticket pair no longer holds
    (status,) = await run_slo_check(r.ctx, r.watch)
    assert status.state == SloState.OK
    (closed,) = await items(db)
    assert closed.status == WatchStatus.CLOSED and closed.closed_at == LATER
    (ref, reply), = r.poster.replies
    assert ref.thread == "post-1" and "Recovered at" in reply.fallback
    assert await incidents(db) == []


async def test_a_slow_burn_that_turns_fast_escalates_instead_of_recovering(settings: Settings, db: Database,
                                                                         prom: RunningPrometheus) -> None:
    r = rig(settings, db, prom.url, LATENCY, slos=[event_slo(PAGED)])
    (status,) = await run_slo_check(r.ctx, r.watch)
    assert status.state == SloState.TICKET
    (item,) = await items(db)

    r.clock.now = LATER
    (status,) = await run_slo_check(r.ctx, r.watch)
    assert status.state == SloState.PAGE
    (incident,) = await incidents(db)
    assert await build_runner(r.ctx).run_until_idle() >= 1  # the page's investigation
    (after,) = await items(db)
    assert (after.id, after.status, after.incident_id) == (item.id, WatchStatus.ESCALATED, incident.id)
    assert all("Recovered at" not in m.fallback for _, m in r.poster.replies)


# ---------------------------------------------------------------- the scheduler


async def test_the_leader_schedules_the_checks_only_with_a_metrics_source(settings: Settings, db: Database) -> None:
    metrics = SourcesSettings(metrics=MetricsSourceSettings(url="http://127.0.0.1:9", catalog="otel"))

    async def jobs(s: Settings) -> set[str]:
        ctx = context_for(s, db)
        ctx.watch = WatchService(s.watch, db)
        sched = build_scheduler(ctx, build_runner(ctx))
        sched.start()
        try:
            return {n for n in ("degradation-scan", "slo-check") if sched.next_run(n) is not None}
        finally:
            await sched.stop()

    assert await jobs(settings.model_copy(update={"sources": metrics})) == {"degradation-scan", "slo-check"}
    assert await jobs(settings.model_copy(update={"sources": metrics,
                                                  "detect": DetectSettings(enabled=False)})) == {"slo-check"}
    assert await jobs(settings) == set()


# ---------------------------------------------------------------- escalation


async def test_an_alert_on_the_service_escalates_its_early_warning(settings: Settings, db: Database,
                                                                   prom: RunningPrometheus) -> None:
    """The composition: an alert through triage, its investigation job run by the app's runner, whose hook is
    ``ctx.watch.escalate`` (tests/test_watch_escalation.py covers the escalation itself in detail)."""
    r = rig(settings, db, prom.url, LATENCY)
    await run_degradation_scan(r.ctx, r.watch)
    (item,) = await items(db)

    assert r.ctx.triage is not None
    alert = make_alert(source="alertmanager", labels={"alertname": "CheckoutSlow", "service": DRIFTING,
                                                      "severity": "critical"}, starts_at=float(NOW - 600))
    await r.ctx.triage.ingest([alert])
    assert await build_runner(r.ctx).run_until_idle() >= 1

    (incident,) = await incidents(db)
    (escalated,) = await items(db)
    assert escalated.status == WatchStatus.ESCALATED and escalated.incident_id == incident.id
    async with db.session() as s:
        (inv,) = (await s.exec(select(Investigation).where(Investigation.incident_id == incident.id))).all()
    assert inv.status == "done"
    (ew,) = inv.report["early_warnings"]
    assert ew["id"] == f"watch-{item.id}" and ew["service"] == DRIFTING
    (ref, note), = r.poster.replies
    assert ref.thread == "post-1" and f"Escalated to incident {incident.id}" in note.fallback


async def test_the_slo_check_builds_no_sources_with_nothing_to_check(settings: Settings, db: Database) -> None:
    """No slos: and no page left firing: the minutely check costs one query of the store, no connection."""
    ctx = context_for(settings, db)

    def no_sources() -> Any:
        raise AssertionError("the check built the sources with nothing to check")

    ctx.sources_factory = no_sources
    assert await run_slo_check(ctx, WatchService(WatchSettings(), db)) == []
