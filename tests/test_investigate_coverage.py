"""Context checks before ranking: per-profile service labels, the metric inventory, coverage in the report,
the abstention when coverage cannot support a ranking, no empty service ever ranked, and one time-anchoring
rule for replay and live."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.investigate.coverage import measure, refusal
from bot.investigate.engine import investigate
from bot.investigate.look import Gathered, add_series
from bot.investigate.scope import LOOKAHEAD_S, ScopeError, anchored_scope, build_scope, parse_at, window_end
from integrations.base import ChangeEvent, LogLine, Series, Sources, TimeWindow
from integrations.catalog import Catalog
from integrations.http import HttpConfig, HttpSource
from integrations.prometheus import PrometheusClient, PrometheusSource, inventory_of
from integrations.replay import ReplayCase
from tests.investigate_fixtures import ALERT, INJECT, add_on, chain, make_case, up_on

SYMPTOM = add_on("frontend", "latency_p90", 0.2, INJECT + 30)
CADVISOR = {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
            "kube_pod_container_status_restarts_total", "up", "scrape_duration_seconds"}


# ---------------------------------------------------------------- the catalog side


def test_each_profile_keeps_its_own_service_label() -> None:
    both = Catalog.load("kubernetes,otel")
    assert both.label_for("cpu") == "container" and both.label_for("restarts") == "container"
    assert both.label_for("latency_p99") == "job" and both.label_for("request_rate") == "job"
    assert "by (container)" in both.render("cpu") and "by (job" in both.render("latency_p99")
    assert 'container="carts"' in both.render("cpu", ["carts"]) and 'job="carts"' in both.render("error_rate", ["carts"])
    reverse = Catalog.load("otel,kubernetes")
    assert reverse.label_for("cpu") == "container" and reverse.label_for("latency_p99") == "job"
    assert [(p.name, p.service_label) for p in both.profiles] == [("kubernetes", "container"), ("otel", "job")]
    # a settings override of one signal takes the last profile's label; a settings service_label wins for all
    over = Catalog.load("kubernetes,otel", {"queue_depth": "sum by (${by}) (q{${sel}})"})
    assert over.label_for("queue_depth") == "job" and over.profiles[-1].name == "sources.metrics.signals"
    http = HttpSource("prometheus", HttpConfig(base_url="http://127.0.0.1:9", timeout_s=1, retries=0))
    forced = PrometheusSource(PrometheusClient(http), both, base_url="http://x", service_label="app")
    plain = PrometheusSource(PrometheusClient(http), both, base_url="http://x")
    window = TimeWindow(0, 600)
    assert forced.label_for("cpu") == "app" and "by (app, le)" in forced.plan("latency_p99", window)[0]
    assert plain.label_for("cpu") == "container" and plain.label_for("latency_avg") == "job"
    assert "by (container)" in plain.plan("cpu", window)[0]


def test_inventory_counts_signals_per_profile_and_quotes_the_names() -> None:
    inv = inventory_of(Catalog.load("otel"), CADVISOR)
    assert inv.signals == () and inv.names == tuple(sorted(CADVISOR - {"up", "scrape_duration_seconds"}))
    (otel,) = inv.profiles
    assert otel.profile == "otel" and otel.found == () and len(otel.signals) == 9 and otel.service_label == "job"
    both = inventory_of(Catalog.load("kubernetes,otel"), CADVISOR)
    k8s, otel = both.profiles
    assert k8s.found == ("cpu", "memory", "restarts") and len(k8s.signals) == 14 and otel.found == ()
    assert both.labels == {"cpu": "container", "memory": "container", "restarts": "container"}
    replay = inventory_of(Catalog.load("replay"), {"cpu", "latency_p99", "up"})
    assert replay.signals == ("cpu", "latency_p99") and replay.profiles[0].fallback


# ---------------------------------------------------------------- coverage and refusal


def _gathered(window: TimeWindow) -> Gathered:
    return Gathered(window=window)


def test_coverage_names_the_catalog_and_refuses_when_nothing_is_named() -> None:
    window = TimeWindow(0, 3600)
    g = _gathered(window)
    g.inventory = inventory_of(Catalog.load("otel"), CADVISOR)
    windows = {"baseline": TimeWindow(2000, 2900), "incident": TimeWindow(2900, 3600)}
    cov = measure(g, Sources(metrics=object()), windows)  # type: ignore[arg-type]
    (line,) = [m for m in cov.missing if m.startswith("metrics:")]
    assert line.startswith("metrics: 0 of 9 catalog signals found for profile otel; these exist: "
                           "container_cpu_usage_seconds_total, container_memory_working_set_bytes")
    assert line.endswith("set sources.metrics.catalog")
    why = refusal(cov)
    assert "nothing to rank" in why and "profile otel" in why
    assert cov.to_dict()["profiles"][0] == {"profile": "otel", "service_label": "job", "signals": 9, "found": [],
                                            "fallback": False}


def test_unnamed_series_are_dropped_and_counted() -> None:
    window = TimeWindow(0, 600)
    g = _gathered(window)
    g.inventory = inventory_of(Catalog.load("kubernetes"), CADVISOR)
    pts = [(float(t), 1.0) for t in range(0, 600, 15)]
    add_series(g, Series("", "cpu", pts))
    add_series(g, Series("  ", "memory", pts))
    assert g.series == {} and g.unnamed == {"metrics": 2}
    cov = measure(g, Sources(metrics=object()), {"incident": TimeWindow(300, 600)})  # type: ignore[arg-type]
    assert any("carry no service label `container`: cpu, memory" in m for m in cov.missing)
    assert refusal(cov)
    add_series(g, Series("carts", "cpu", pts))
    cov = measure(g, Sources(metrics=object()), {"incident": TimeWindow(300, 600)})  # type: ignore[arg-type]
    assert refusal(cov) == "" and cov.source("metrics").services == ("carts",)  # type: ignore[union-attr]


def test_a_window_with_no_samples_refuses_and_says_where_the_data_ends() -> None:
    g = _gathered(TimeWindow(0, 10_000))
    add_series(g, Series("carts", "cpu", [(float(t), 1.0) for t in range(0, 1000, 15)]))
    cov = measure(g, Sources(metrics=object()),  # type: ignore[arg-type]
                  {"baseline": TimeWindow(500, 900), "incident": TimeWindow(9000, 10_000)})
    assert "incident window" in refusal(cov)
    assert any("no samples in the incident window" in m and "the newest is at 1970-01-01T00:16:30Z" in m
               for m in cov.missing)


# ---------------------------------------------------------------- no report ever ranks an empty service


class _Metrics:
    """An in-memory metrics source (the engine's interface, no network): the series given."""

    name = "memory-metrics"

    def __init__(self, series: list[Series]):
        self._series = series

    async def available_signals(self) -> list[str]:
        return sorted({s.signal for s in self._series})

    async def signal(self, signal: str, window: TimeWindow, services: Sequence[str] | None = None) -> list[Series]:
        return [Series(s.service, s.signal, [(t, v) for t, v in s.points if window.start <= t <= window.end])
                for s in self._series if s.signal == signal]

    def link(self, signal: str, window: TimeWindow) -> str:
        return ""


class _Logs:
    name = "memory-logs"

    def __init__(self, lines: list[LogLine]):
        self._lines = lines

    async def error_counts(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[Series]:
        return []

    async def lines(self, window: TimeWindow, services: Sequence[str] | None = None, limit: int = 1000) -> list[LogLine]:
        return [ln for ln in self._lines if window.start <= ln.time <= window.end][:limit]

    def link(self, service: str, window: TimeWindow) -> str:
        return ""


class _Changes:
    name = "memory-changes"

    def __init__(self, events: list[ChangeEvent]):
        self._events = events

    async def changes(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[ChangeEvent]:
        return list(self._events)


NAMES = st.sampled_from(["", " ", "\t", "api", "db", "cache"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    series=st.lists(st.tuples(NAMES, st.sampled_from(["cpu", "latency_p90", "error_rate", "memory"]),
                              st.floats(min_value=0.2, max_value=12.0)), min_size=1, max_size=10),
    log_services=st.lists(NAMES, max_size=4),
    change_service=NAMES,
    seed=st.integers(0, 1000),
)
def test_no_report_ever_ranks_an_empty_service(series: list[tuple[str, str, float]], log_services: list[str],
                                               change_service: str, seed: int) -> None:
    onset, step = 10_000.0, 15.0
    t = np.arange(onset - 4000, onset + 600, step)
    rng = np.random.default_rng(seed)
    made = []
    for svc, sig, factor in series:
        v = 10 + rng.normal(0, 0.3, len(t))
        v = np.where(t >= onset - 60, v * factor, v)
        made.append(Series(svc, sig, list(zip(t.tolist(), v.tolist(), strict=True))))
    lines = [LogLine(onset + 5 * i, svc, "error", f"ERROR upstream failed {i}") for i, svc in enumerate(log_services)]
    sources = Sources(metrics=_Metrics(made), logs=_Logs(lines),
                      changes=[_Changes([ChangeEvent(change_service, onset - 120, "deploy", "v2", "v1")])],
                      now=onset + 600)
    scope = build_scope(["api", ""], onset, onset + 600)
    report = asyncio.run(investigate(scope, sources))
    assert all(s.strip() for s in report.ranked_services)
    assert all(c.service.strip() for c in report.causes)
    assert all(e.service.strip() for e in report.evidence if e.kind != "change" or e.service)
    if not any(svc.strip() for svc, _, _ in series) and not any(s.strip() for s in log_services):
        assert report.abstained and "nothing to rank" in report.reason
    data = report.to_dict()
    assert "coverage" in data and data["coverage"]["windows"]["incident"][1] == onset + 600


# ---------------------------------------------------------------- time anchoring: one rule


def test_window_end_rule() -> None:
    assert window_end(1000.0, clock=1e9) == 1000.0 + LOOKAHEAD_S  # an old alert: not the wall clock
    assert window_end(1000.0, clock=1200.0) == 1200.0  # never past the clock (a case's end, the wall clock)
    assert window_end(1000.0, clock=1e9, at=1500.0) == 1500.0
    assert window_end(1000.0, clock=1100.0, at=1500.0) == 1100.0
    assert parse_at(None) is None and parse_at("1700000000") == 1_700_000_000.0
    assert parse_at("2023-11-14T22:13:20Z") == 1_700_000_000.0
    for bad in ("yesterday", "nan", "inf", "2023-11-14 22:13"):
        with pytest.raises(ScopeError, match="--at"):
            parse_at(bad)


def test_replay_and_an_alert_file_share_the_anchor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--case` and `--alert --config` (replay settings) end the window at the same moment, and `--at` moves it."""
    from bot.cli import main

    case = make_case(tmp_path, chain(up_on("payment", "cpu", 4.5), SYMPTOM))
    rc = ReplayCase(case)
    scope = anchored_scope(rc.alert_payload, rc.now)
    assert scope.onset == ALERT and scope.now == min(ALERT + LOOKAHEAD_S, rc.now)
    cfg = tmp_path / "onwatch.yaml"
    cfg.write_text(f"sources:\n  replay: {{path: {case}}}\n")
    outs = []
    for argv in (["investigate", "--case", str(case), "--json"],
                 ["investigate", "--alert", str(case / "alert.json"), "--config", str(cfg), "--json"]):
        assert main(argv) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0]["scope"]["now"] == outs[1]["scope"]["now"] == scope.now
    assert outs[0]["ranked_services"][0] == outs[1]["ranked_services"][0] == "payment"
    assert main(["investigate", "--case", str(case), "--json", "--at", str(ALERT + 120)]) == 0
    assert json.loads(capsys.readouterr().out)["scope"]["now"] == ALERT + 120
    assert main(["investigate", "--case", str(case), "--at", "soon"]) == 2
    assert "--at 'soon'" in capsys.readouterr().err
