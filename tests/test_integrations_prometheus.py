"""Prometheus source: unit checks, and a real Prometheus loaded from a case bundle through
``onwatch replay export-openmetrics`` + promtool giving the same series as the replay source."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.base import Series, SourceRejected, TimeWindow
from integrations.catalog import Catalog, profile_names, service_matcher
from integrations.http import HttpConfig, HttpSource
from integrations.prometheus import PrometheusClient, PrometheusSource, choose_step
from integrations.replay import ReplayCase, replay_sources
from tests.conftest import datasets_dir
from tests.integrations_fixtures import RunningPrometheus, prometheus_with_case

CASE = "sockshop/cases/sockshop-001"


@given(
    seconds=st.floats(min_value=0, max_value=30 * 86400, allow_nan=False),
    max_points=st.integers(min_value=10, max_value=11000),
    min_step=st.floats(min_value=0.5, max_value=300),
)
def test_step_never_exceeds_max_points(seconds: float, max_points: int, min_step: float) -> None:
    w = TimeWindow(1000.0, 1000.0 + seconds)
    step = choose_step(w, max_points, min_step)
    assert step >= min_step
    assert math.floor(w.seconds / step) + 1 <= max_points


def test_profiles_load_and_render() -> None:
    assert {"kubernetes", "otel", "replay"} <= set(profile_names())
    k8s = Catalog.load("kubernetes")
    for sig in ("cpu", "memory", "restarts", "oom_kills", "disk_read", "disk_write", "network_rx", "network_tx"):
        q = k8s.render(sig, ["carts", "orders"], rate_s=120)
        assert "${" not in q and "container" in q
    otel = Catalog.load("otel")
    for sig in ("latency_p50", "latency_p90", "latency_p99", "error_rate", "request_rate"):
        assert "by (job" in otel.render(sig)
    both = Catalog.load("kubernetes,otel", {"cpu": "sum by (${by}) (my_cpu{${sel}})"})
    assert both.knows("latency_p99") and both.knows("restarts")
    assert both.render("cpu", ["a"]) == 'sum by (job) (my_cpu{job="a",})'
    replay = Catalog.load("replay")
    assert replay.render("latency_p99", ["front-end"]) == 'latency_p99{service="front-end",}'
    assert replay.render("cpu") == "cpu{}"


def test_catalog_rejects_unknown_placeholder_and_missing_profile(tmp_path: Path) -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown placeholder"):
        Catalog.load("replay", {"cpu": "cpu{${service}}"})
    with pytest.raises(ConfigError, match="neither a profile"):
        Catalog.load("no-such-profile")
    bad = tmp_path / "c.yaml"
    bad.write_text("name: x\nsignals:\n  Bad-Name: {query: 'x'}\n")
    with pytest.raises(ConfigError, match="snake_case"):
        Catalog.load(str(bad))


def test_service_matcher_escapes_regex_and_quotes() -> None:
    assert service_matcher("service", ["PetSearch_AWS::ECS::Fargate"]) == 'service="PetSearch_AWS::ECS::Fargate",'
    m = service_matcher("service", ["a.b", 'q"x'])
    assert m == 'service=~"a\\\\.b|q\\"x",'


# ---------------------------------------------------------------- real Prometheus


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningPrometheus, Path]]:
    case_dir = datasets_dir() / CASE
    if not case_dir.is_dir():
        pytest.skip(f"case {CASE} not in the datasets")
    with prometheus_with_case(case_dir, tmp_path_factory.mktemp("prom")) as prom:
        yield prom, case_dir


def _source(url: str, catalog: str = "replay", max_points: int = 2000) -> PrometheusSource:
    http = HttpSource("prometheus", HttpConfig(base_url=url, timeout_s=10, retries=1))
    return PrometheusSource(PrometheusClient(http), Catalog.load(catalog), base_url=url,
                            max_points=max_points, min_step_s=1, rate_window_s=60)


def _value_at(series: Series, t: float) -> float | None:
    """The step function's value at ``t``: the last point at or before it."""
    best = None
    for pt, v in series.points:
        if pt <= t:
            best = v
        else:
            break
    return best


async def _compare(prom: PrometheusSource, window: TimeWindow, case_dir: Path,
                   services: list[str] | None = None) -> int:
    replay = replay_sources(ReplayCase(case_dir))
    assert replay.metrics is not None
    compared = 0
    for signal in await replay.metrics.available_signals():
        got = {s.service: s for s in await prom.signal(signal, window, services)}
        want = {s.service: s for s in await replay.metrics.signal(signal, window, services)}
        assert set(got) == set(want), signal
        for svc, ps in got.items():
            rs = want[svc]
            assert ps.signal == signal and ps.query.startswith(signal)
            first = rs.points[0][0]
            step = ps.points[1][0] - ps.points[0][0] if len(ps.points) > 1 else 1
            grid = [t for t in (ps.points[0][0] + i * step for i in range(len(ps.points) + 5)) if t <= window.end]
            times = [t for t, _ in ps.points]
            assert times == [t for t in grid if t >= first], (signal, svc)
            for t, v in ps.points:
                expected = _value_at(rs, t)
                assert expected is not None and v == pytest.approx(expected, rel=1e-12, abs=0), (signal, svc, t)
                compared += 1
    await replay.aclose()
    return compared


@pytest.mark.prometheus
@pytest.mark.datasets
async def test_real_prometheus_matches_replay_fine_step(loaded: tuple[RunningPrometheus, Path]) -> None:
    prom, case_dir = loaded
    start, end = ReplayCase(case_dir).time_range
    window = TimeWindow(start + 30, start + 330)
    src = _source(prom.url)
    try:
        compared = await _compare(src, window, case_dir)
        assert compared > 5000  # 38 series x 301 one-second steps in this case
    finally:
        await src.aclose()


@pytest.mark.prometheus
@pytest.mark.datasets
async def test_real_prometheus_matches_replay_coarse_step_and_filter(loaded: tuple[RunningPrometheus, Path]) -> None:
    prom, case_dir = loaded
    start, end = ReplayCase(case_dir).time_range
    window = TimeWindow(start, end)
    src = _source(prom.url, max_points=40)
    try:
        expr, step = src.plan("cpu", window)
        assert step == math.ceil((end - start) / 39) and expr == "cpu{}"
        series = await src.signal("cpu", window)
        assert series and all(len(s.points) <= 40 for s in series)
        assert await _compare(src, window, case_dir, ["carts", "front-end", "orders-db"]) > 0
        got = await src.signal("latency_p99", window, ["carts", "front-end"])
        assert [s.service for s in got] == ["carts"]  # front-end has no latency series in this case
    finally:
        await src.aclose()


@pytest.mark.prometheus
@pytest.mark.datasets
async def test_real_prometheus_discovery_and_errors(loaded: tuple[RunningPrometheus, Path]) -> None:
    prom, case_dir = loaded
    case = ReplayCase(case_dir)
    src = _source(prom.url)
    client = src.client
    try:
        assert await src.available_signals() == case.signals()
        assert "service" in await client.labels()
        assert sorted(await client.label_values("service")) == case.services()
        start, end = case.time_range
        ser = await client.series(['cpu{service="carts"}'], TimeWindow(start, end))
        assert ser == [{"__name__": "cpu", "service": "carts"}]
        inst = await client.query('count(count by (service) ({__name__=~".+"}))', at=end)
        assert inst[0].points[0][1] == len(case.services())
        with pytest.raises(SourceRejected, match="parse error"):
            await client.query("sum(", at=end)
        with pytest.raises(SourceRejected, match="not in the"):
            await _source(prom.url, catalog="kubernetes").signal("nonexistent_signal", TimeWindow(start, end))
    finally:
        await src.aclose()


@pytest.mark.prometheus
@pytest.mark.datasets
async def test_every_shipped_template_is_valid_promql(loaded: tuple[RunningPrometheus, Path]) -> None:
    """Each profile's PromQL parses in a real Prometheus, with and without a service filter."""
    prom, case_dir = loaded
    src = _source(prom.url)
    try:
        end = ReplayCase(case_dir).time_range[1]
        for profile in profile_names():
            cat = Catalog.load(profile)
            for signal in cat.signals:
                for services in (None, ["carts"], ["carts", "a.b-c"]):
                    await src.client.query(cat.render(signal, services, rate_s=120), at=end)
    finally:
        await src.aclose()
