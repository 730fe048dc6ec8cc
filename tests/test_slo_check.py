"""The SLO check end to end on a real Prometheus (Debian's package, filled with ``promtool tsdb
create-blocks-from openmetrics``) and the real triage over the test database: a fast burn opens exactly one
incident and a repeated check deduplicates into it; a healthy SLO opens nothing; a slow burn warns and opens
nothing; the burn stopping resolves the alert, read back from the store by a fresh context (a restart);
``onwatch slo status`` prints the same states.

Four days of counters, one sample a minute, 600 requests a minute per service, exact fractions so every ratio
is computed by hand below: ``pay`` fails 2 % of requests in the hour before ``NOW`` (20x a 0.999 budget) and
0.01 % otherwise; ``shop`` 0.01 % throughout; ``cart`` 0.2 % (2x) from 3.5 days before ``NOW``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import col, select

from bot.app import context_for
from bot.cli import main as cli_main
from bot.config import Settings
from bot.context import AppContext
from bot.slo.check import SloWarning
from bot.slo.evaluate import SloState, evaluate_slo
from bot.slo.model import SLO
from bot.slo.prom import PrometheusSli
from bot.slo_check import check_slos
from bot.store.db import Database
from bot.store.models import Alert, Incident
from integrations.settings import MetricsSourceSettings
from tests.integrations_fixtures import RunningPrometheus, free_port, prometheus_with_openmetrics
from tests.prom_fixtures import REQUESTS, event_slo, gauge_rows, request_counter_rows, write_openmetrics

pytestmark = pytest.mark.prometheus

STEP = 60
T0 = 1_700_000_040  # a multiple of the step: samples sit on the minute
DAY, HOUR = 86_400, 3_600
NOW = T0 + 4 * DAY  # the check that sees pay's fast burn
LATER = NOW + 1_800  # half an hour after pay recovered
END = LATER + 600
PER_MIN = 600.0
BASE, FAST, SLOW = 0.0001, 0.02, 0.002
SLOW_FROM = NOW - int(3.5 * DAY)


def error_share(job: str, t: int) -> float:
    """The share of the minute ending at ``t`` that failed."""
    if job == "pay" and NOW - HOUR < t <= NOW:
        return FAST
    if job == "cart" and t > SLOW_FROM:
        return SLOW
    return BASE


def latency(t: int) -> float:
    return 0.9 if NOW - HOUR < t <= NOW else 0.1


def openmetrics(path: Path) -> Path:
    times = range(T0, END + 1, STEP)
    requests = [row for job in ("pay", "shop", "cart")
                for row in request_counter_rows(job, times, PER_MIN, partial(error_share, job))]
    search = gauge_rows("latency_seconds", {"job": "search"}, [(t, latency(t)) for t in times])
    return write_openmetrics(path, {REQUESTS: requests, "latency_seconds": search})


SEARCH = {"name": "search-latency", "service": "search", "objective": 0.99, "period": "30d",
          "signal": "search_latency", "threshold": 0.5, "good_when": "below"}
SIGNALS = {"search_latency": "max by (${by}) (latency_seconds{${sel}})"}
SLOS = [SLO.model_validate(event_slo(job)) for job in ("pay", "shop", "cart")]


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    work = tmp_path_factory.mktemp("slo")
    with prometheus_with_openmetrics(openmetrics(work / "slo.om"), work) as p:
        yield p


def metrics_settings(url: str, **over: Any) -> MetricsSourceSettings:
    return MetricsSourceSettings.model_validate({"url": url, "catalog": "otel", "signals": SIGNALS, **over})


@pytest.fixture
async def sli(prom: RunningPrometheus) -> AsyncIterator[PrometheusSli]:
    port = PrometheusSli.from_settings(metrics_settings(prom.url))
    yield port
    await port.aclose()


def slo_ctx(settings: Settings, db: Database) -> AppContext:
    """A context as the app builds it (``context_for``), over ``db``, with the SLOs configured."""
    return context_for(settings.model_copy(update={"slos": SLOS}), db)


class Receiver:
    """What the watch items will be: records the warnings and clears it is handed."""

    def __init__(self) -> None:
        self.warnings: list[SloWarning] = []
        self.cleared: list[str] = []

    async def warn(self, w: SloWarning) -> None:
        self.warnings.append(w)

    async def clear(self, name: str) -> None:
        self.cleared.append(name)


async def incidents(db: Database) -> list[Incident]:
    async with db.session() as s:
        return list((await s.execute(select(Incident))).scalars())


async def slo_alerts(db: Database) -> list[Alert]:
    async with db.session() as s:
        return list((await s.execute(select(Alert).where(col(Alert.source) == "slo"))).scalars())


# ---------------------------------------------------------------- the figures, by hand


async def test_window_ratios_match_the_hand_computed_figures(sli: PrometheusSli) -> None:
    pay, shop, cart = SLOS
    st = await evaluate_slo(pay, sli, NOW)
    # The last hour (and its 5 and 30 min) failed 2 %: burn 20. Six hours: 60 min at 2 % and 300 at 0.01 %,
    # (60·12 + 300·0.06) / (360·600) = 738 / 216000. Three days: (720 + 4260·0.06) / 2592000. The period
    # holds four days: (720 + 5700·0.06) / 3456000 = 1062 / 3456000, so 30.7 % of the budget is gone.
    assert st.ratios == pytest.approx({300.0: FAST, 1800.0: FAST, 3600.0: FAST, 21600.0: 738 / 216000,
                                       259200.0: 975.6 / 2592000, 2592000.0: 1062 / 3456000}, rel=1e-6)
    assert st.burns[3600.0] == pytest.approx(20.0) and st.burns[21600.0] == pytest.approx(3.41667, rel=1e-4)
    assert st.budget_left == pytest.approx(1 - 1062 / 3456000 / 0.001, rel=1e-6)
    assert st.state == SloState.PAGE and st.decision.window is not None
    assert (st.decision.window.long, st.decision.window.short) == (3600.0, 300.0)  # the 14.4x pair, not 6x
    assert not st.errors and not st.no_data

    st = await evaluate_slo(shop, sli, NOW)
    assert st.state == SloState.OK
    assert all(b == pytest.approx(0.1) for b in st.burns.values()) and st.budget_left == pytest.approx(0.9)

    st = await evaluate_slo(cart, sli, NOW)
    # 2x everywhere in the last 3 days; over the period half a day at 0.01 % then 3.5 days at 0.2 %:
    # (720·0.06 + 5040·1.2) / 3456000 = 6091.2 / 3456000, 176 % of the budget: overspent by 76 %.
    assert st.state == SloState.TICKET
    assert st.burns[259200.0] == pytest.approx(2.0) and st.burns[3600.0] == pytest.approx(2.0)
    assert st.budget_left == pytest.approx(1 - 6091.2 / 3456000 / 0.001, rel=1e-6)

    st = await evaluate_slo(pay, sli, LATER)
    # Half an hour on: the last hour is 30 min at 2 % and 30 at 0.01 %, burn 10.05 < 14.4; 5 min at 0.1x.
    assert st.burns[3600.0] == pytest.approx(10.05) and st.burns[300.0] == pytest.approx(0.1)
    assert st.state == SloState.OK


async def test_a_signal_slo_counts_the_time_on_the_wrong_side(sli: PrometheusSli) -> None:
    search = SLO.model_validate(SEARCH)
    st = await evaluate_slo(search, sli, NOW)
    # Latency sat above 0.5 s for the whole last hour: every sample of the 1 h and 5 min windows is bad,
    # 100x a 0.01 budget (the 1 h subquery may include the good sample at its very start: 60/61).
    assert st.ratios[300.0] == pytest.approx(1.0)
    assert st.ratios[3600.0] == pytest.approx(1.0, abs=1 / 61)
    assert st.state == SloState.PAGE
    # Half an hour on, the 5 and 30 min windows are healthy again: no page. The bad hour is still 1/6 of the
    # last 6 h (16.7x) and 60/4320 of the last 3 days (1.39x): the slow-burn ticket holds.
    st = await evaluate_slo(search, sli, LATER)
    # (The 30 min subquery's first point, at NOW, still sees the last bad sample: 1/31, 3.2x < 6x.)
    assert st.ratios[300.0] == 0.0 and st.ratios[1800.0] == pytest.approx(1 / 31)
    assert st.burns[259200.0] == pytest.approx(100 * 60 / 4320, rel=0.02)
    assert st.state == SloState.TICKET


async def test_no_data_is_not_a_burn_and_a_refused_query_is_named(sli: PrometheusSli) -> None:
    ghost = SLO.model_validate({**event_slo("pay"), "name": "ghost", "good": 'nothing_total{code="200"}',
                                "total": "nothing_total"})
    st = await evaluate_slo(ghost, sli, NOW)
    assert st.state == SloState.NO_DATA and not st.errors and st.budget_left is None
    assert len(st.no_data) == 6 and st.decision.severity is None
    # An aggregate where a selector belongs cannot take a range: Prometheus refuses every window's query.
    bad = SLO.model_validate({**event_slo("pay"), "name": "bad", "good": "sum(http_requests_total)"})
    st = await evaluate_slo(bad, sli, NOW)
    assert st.state == SloState.ERROR and len(st.errors) == 6
    assert all("ranges only allowed for vector selectors" in why and sli.url in why for why in st.errors.values())
    # A signal the catalog does not have is named too, not raised.
    unknown = SLO.model_validate({**SEARCH, "signal": "no_such_signal"})
    st = await evaluate_slo(unknown, sli, NOW)
    assert st.state == SloState.ERROR and "no_such_signal" in next(iter(st.errors.values()))


# ---------------------------------------------------------------- the check through triage


async def test_a_fast_burn_opens_one_incident_a_slow_one_warns_and_recovery_resolves(
        settings: Settings, anydb: Database, sli: PrometheusSli) -> None:
    db = anydb  # SQLite and PostgreSQL: what fired is read back from either store
    ctx, rx = slo_ctx(settings, db), Receiver()

    statuses = await check_slos(ctx, sli, now=NOW, warn=rx.warn, clear=rx.clear)
    assert [(s.slo.name, s.state) for s in statuses] == [
        ("pay-availability", SloState.PAGE), ("shop-availability", SloState.OK), ("cart-availability", SloState.TICKET)]
    (incident,) = await incidents(db)
    assert incident.source == "slo" and incident.services == ["pay"] and incident.severity == "critical"
    (alert,) = await slo_alerts(db)
    assert alert.status == "firing" and alert.incident_id == incident.id
    assert alert.fingerprint == "slo:SLOErrorBudgetBurn:pay-availability"
    assert alert.labels == {"alertname": "SLOErrorBudgetBurn", "slo": "pay-availability", "service": "pay",
                            "severity": "page", "long_window": "1h", "short_window": "5m"}
    assert alert.annotations["budget_left"] == "69%"
    assert alert.annotations["burn_rates"] == "5m: 20x, 30m: 20x, 1h: 20x, 6h: 3.4x, 3d: 0.38x"
    assert "20x over 1h and 20x over 5m" in alert.annotations["summary"]
    # The slow burn is a warning, not an incident; the others are cleared.
    (w,) = rx.warnings
    assert (w.slo, w.service, w.period) == ("cart-availability", "cart", "30d")
    assert w.burns == pytest.approx({"3d": 2.0, "6h": 2.0}) and w.at == NOW
    assert w.budget_left == pytest.approx(-0.7625, abs=1e-4) and "2x over 3d" in w.text
    assert rx.cleared == ["shop-availability"]  # a page is not cleared: its incident takes the warning over

    # The same check again: the same alert, a duplicate, and still one incident.
    await check_slos(ctx, sli, now=NOW, warn=rx.warn, clear=rx.clear)
    assert len(await incidents(db)) == 1
    (alert,) = await slo_alerts(db)
    assert alert.duplicates == 1 and alert.incident_id == incident.id

    # A fresh context (a restart, or another replica) finds the page in the store and resolves it once the
    # burn stops; the slow burn still warns.
    ctx2, rx2 = slo_ctx(settings, db), Receiver()
    statuses = await check_slos(ctx2, sli, now=LATER, warn=rx2.warn, clear=rx2.clear)
    assert statuses[0].state == SloState.OK
    (alert,) = await slo_alerts(db)
    assert alert.status == "resolved" and alert.ends_at == LATER
    (incident,) = await incidents(db)
    assert incident.status == "resolved"
    assert [w.slo for w in rx2.warnings] == ["cart-availability"]
    # Nothing firing is left: the next check ingests nothing more (the row is not even seen again).
    await check_slos(ctx2, sli, now=LATER, warn=rx2.warn, clear=rx2.clear)
    (again,) = await slo_alerts(db)
    assert (again.status, again.duplicates, again.last_seen) == ("resolved", alert.duplicates, alert.last_seen)


async def test_a_healthy_slo_opens_nothing(settings: Settings, db: Database, sli: PrometheusSli) -> None:
    ctx = context_for(settings.model_copy(update={"slos": [SLOS[1]]}), db)
    rx = Receiver()
    statuses = await check_slos(ctx, sli, now=NOW, warn=rx.warn, clear=rx.clear)
    assert [s.state for s in statuses] == [SloState.OK]
    assert await incidents(db) == [] and await slo_alerts(db) == []
    assert rx.warnings == [] and rx.cleared == ["shop-availability"]


async def test_a_failing_receiver_does_not_silence_the_others(settings: Settings, db: Database,
                                                               sli: PrometheusSli,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    rx = Receiver()

    async def broken(w: SloWarning) -> None:
        raise ConnectionError(f"watch items unavailable for {w.slo}")

    await check_slos(slo_ctx(settings, db), sli, now=NOW, warn=broken, clear=rx.clear)
    assert len(await incidents(db)) == 1 and rx.cleared == ["shop-availability"]
    assert "warn(cart-availability) failed" in caplog.text


async def test_an_unreadable_prometheus_keeps_the_page_and_the_warnings(
        settings: Settings, db: Database, sli: PrometheusSli, caplog: pytest.LogCaptureFixture) -> None:
    ctx, rx = slo_ctx(settings, db), Receiver()
    await check_slos(ctx, sli, now=NOW, warn=rx.warn, clear=rx.clear)
    down = PrometheusSli.from_settings(metrics_settings(f"http://127.0.0.1:{free_port()}", retries=0))
    try:
        statuses = await check_slos(ctx, down, now=LATER, warn=rx.warn, clear=rx.clear)
    finally:
        await down.aclose()
    # Unknown is not recovered: the page stays firing, nothing is warned or cleared, the reason is logged.
    assert {s.state for s in statuses} == {SloState.ERROR}
    (alert,) = await slo_alerts(db)
    assert alert.status == "firing" and len(await incidents(db)) == 1
    assert len(rx.warnings) == 1 and len(rx.cleared) == 1  # the first check's only
    assert "SLO pay-availability: could not read 5m, 30m, 1h, 6h, 3d, 30d: prometheus: cannot reach" in caplog.text


# ---------------------------------------------------------------- onwatch slo status


def _config(path: Path, url: str, slos: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"sources": {"metrics": {"url": url, "catalog": "otel", "signals": SIGNALS}},
                                    "slos": slos}))
    return path


def test_slo_status_prints_each_state(prom: RunningPrometheus, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path / "onwatch.yaml", prom.url, [event_slo(j) for j in ("pay", "shop", "cart")] + [SEARCH])
    assert cli_main(["slo", "status", "--config", str(cfg), "--at", str(NOW)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["SLO", "SERVICE", "OBJECTIVE", "PERIOD", "BUDGET", "LEFT", "PAGE", "14.4x", "PAGE",
                              "6x", "TICKET", "1x", "STATE"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert rows["pay-availability"].endswith("page") and "1h 20 / 5m 20" in rows["pay-availability"]
    assert " 69% " in rows["pay-availability"]
    assert rows["shop-availability"].endswith("ok") and " 90% " in rows["shop-availability"]
    assert rows["cart-availability"].endswith("ticket") and "3d 2 / 6h 2" in rows["cart-availability"]
    assert rows["search-latency"].endswith("page")

    assert cli_main(["slo", "status", "--config", str(cfg), "--at", str(LATER), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(d["name"], d["state"]) for d in doc] == [
        ("pay-availability", "ok"), ("shop-availability", "ok"), ("cart-availability", "ticket"),
        ("search-latency", "ticket")]
    pay = doc[0]
    assert [(p["long"], p["short"], p["factor"], p["severity"]) for p in pay["pairs"]] == [
        ("1h", "5m", 14.4, "page"), ("6h", "30m", 6.0, "page"), ("3d", "6h", 1.0, "ticket")]
    assert pay["pairs"][0]["long_burn"] == pytest.approx(10.05) and pay["errors"] == {} and pay["no_data"] == []

    # No data is its own state, not ok.
    ghost = {**event_slo("pay"), "name": "ghost", "good": 'nothing_total{code="200"}', "total": "nothing_total"}
    assert cli_main(["slo", "status", "--config", str(_config(tmp_path / "g.yaml", prom.url, [ghost])),
                     "--at", str(NOW)]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("no data")


async def test_an_slo_without_data_neither_warns_nor_clears(settings: Settings, db: Database,
                                                            sli: PrometheusSli) -> None:
    """No data is not health: the warning a slow burn raised stays until a check sees the SLO plainly ok."""
    ghost = {**event_slo("pay"), "name": "ghost", "good": 'nothing_total{code="200"}', "total": "nothing_total"}
    ctx = context_for(settings.model_copy(update={"slos": [SLO.model_validate(ghost)]}), db)
    rx = Receiver()
    (st,) = await check_slos(ctx, sli, now=NOW, warn=rx.warn, clear=rx.clear)
    assert st.state == SloState.NO_DATA and rx.warnings == [] and rx.cleared == []
