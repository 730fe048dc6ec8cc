"""Code-level faults, starved callers, irregular scrapes and log levels: the engine rules of issue 14.

Each test builds the smallest telemetry that shows one fact of how metrics, logs and traces relate, and
checks the engine reads it that way.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bot.investigate.catalog import classify
from bot.investigate.cli import run_case
from bot.investigate.findings import Finding, MetricFrame, caller_wait_findings
from bot.investigate.hypotheses import Hypothesis
from bot.investigate.origins import compare_origins, log_origins, span_origins
from bot.investigate.scoring import Graph, prefer_explanations, score
from bot.investigate.stats import grid_phase
from bot.investigate.templates import covered_seconds, is_errorish, mine_shifts
from integrations.base import ChangeEvent, Edge, LogLine, Span, TimeWindow
from tests.investigate_fixtures import ALERT, INJECT, T0, add_on, chain, make_case, up_on

# ------------------------------------------------------------------ irregular scrapes


def test_a_jittered_scrape_keeps_every_sample() -> None:
    """Scrapes 59-61 s apart: each sample lands on its own grid point; none is dropped or read twice."""
    times = np.array([0.0, 59.0, 121.0, 180.0, 239.0, 301.0]) + 1_000_012
    values = np.array([100.0, 100.0, 80.0, 80.0, 100.0, 100.0])
    other = np.arange(0.0, 360.0, 60.0) + 1_000_010  # another pod, scraped two seconds earlier
    step = 60.0
    phase = grid_phase([times, other], step)
    start = phase + np.ceil((times[0] - 0.5 * step - phase) / step) * step
    grid = start + step * np.arange(6)
    frame = MetricFrame(step, grid[2], TimeWindow(grid[0], grid[2]), grid)
    assert list(frame.read(times, values)) == list(values)
    assert list(frame.read(other, np.arange(6.0))) == list(np.arange(6.0))


def test_the_grid_sits_among_the_samples() -> None:
    # phases of 58 and 2 s around a 60 s step average to 0 (the circle), not to 30
    assert min(grid_phase([np.array([58.0, 118.0]), np.array([62.0, 122.0])], 60.0) % 60, 60 - grid_phase(
        [np.array([58.0, 118.0]), np.array([62.0, 122.0])], 60.0) % 60) < 1e-6


# ------------------------------------------------------------------ log levels


def test_the_records_own_level_decides() -> None:
    assert not is_errorish("INFO", "cannot find cache entry for order 9e4c-c594-11ee, loading it")
    assert not is_errorish("INFO", "ErrorHandlerConfig loaded")
    assert is_errorish("ERROR", "order saved")
    assert is_errorish("warning", "slow query")  # levels are normalised
    # without a level the words decide, as whole words: ids with 5xx-looking digits are not server errors
    assert not is_errorish("", "request 3f2a-c594-11ee done")
    assert is_errorish("", "upstream returned 503")
    assert is_errorish("", "connection refused")
    # exception classes as runtimes print them count without a level
    assert is_errorish("", "java.lang.IllegalStateException: No instances available for seat")
    assert is_errorish("", "raise ValueError(bad order id)")
    assert not is_errorish("", "loaded ErrorHandlerConfig and ExceptionMapperRegistry")


def test_info_lines_that_look_like_errors_are_not_error_templates() -> None:
    before = [LogLine(float(i), "svc", "INFO", f"served order {i}") for i in range(60)]
    after = [LogLine(100.0 + i, "svc", "INFO", f"cannot find cache entry c594-{i:04d}, loading it") for i in range(30)]
    shifts = mine_shifts(before, after)
    assert shifts and not any(s.errorish for s in shifts)


def test_covered_time_ignores_the_silence_between_kept_minutes() -> None:
    # two kept minutes 20 minutes apart cover about two minutes, not twenty-one
    ts = [float(t) for t in range(0, 60)] + [float(t) for t in range(1260, 1320)]
    assert 110 <= covered_seconds(ts) <= 180


# ------------------------------------------------------------------ error origins


def _chain_trace(tid: str, t: float, fail: str | None, status: bool = True) -> list[Span]:
    """gateway -> orders -> payment; ``fail`` is where the request breaks (its callers fail with it)."""
    names = ["gateway", "orders", "payment"]
    failing = set(names[: names.index(fail) + 1]) if fail else set()
    spans = []
    parent = ""
    for i, svc in enumerate(names):
        st = ("error" if svc in failing else "ok") if status else ""
        spans.append(Span(tid, f"{tid}-{i}", parent, svc, f"{svc} op", t + i * 0.01, 30.0 - 10 * i, st))  # type: ignore[arg-type]
        parent = f"{tid}-{i}"
    return spans


def test_the_error_origin_is_the_failing_span_whose_children_succeeded() -> None:
    spans = _chain_trace("a", 0.0, "payment") + _chain_trace("b", 1.0, "orders") + _chain_trace("c", 2.0, None)
    got = {(o.trace_id, o.service) for o in span_origins(spans)}
    assert got == {("a", "payment"), ("b", "orders")}


def test_error_logs_tied_by_trace_id_start_in_the_deepest_failing_service() -> None:
    spans = _chain_trace("a", 0.0, None, status=False) + _chain_trace("b", 1.0, None, status=False)
    logs = [LogLine(0.05, "gateway", "ERROR", "request failed: 500 from orders", "a"),
            LogLine(0.04, "orders", "ERROR", "NullPointerException in OrderService.total", "a"),
            LogLine(1.05, "gateway", "ERROR", "request failed", "b"),
            LogLine(1.02, "payment", "INFO", "cannot find card, using default", "b")]
    got = {(o.trace_id, o.service) for o in log_origins(logs, spans)}
    assert got == {("a", "orders"), ("b", "gateway")}
    # a line without a trace id, or a trace whose spans are missing, tells nothing about the order
    assert log_origins([LogLine(0.0, "orders", "ERROR", "x", "")], spans) == []
    assert log_origins([LogLine(0.0, "orders", "ERROR", "x", "zz")], spans) == []


def test_origins_are_compared_as_rates_over_covered_time() -> None:
    from bot.investigate.origins import Origin

    before = [Origin(f"b{i}", "orders", "", float(i), "traces") for i in range(2)]
    after = [Origin(f"a{i}", "orders", "POST /pay", 100.0 + i, "traces") for i in range(20)]
    (sh,) = compare_origins(before, after, before_s=60.0, after_s=60.0)
    assert sh.service == "orders" and sh.z > 5 and sh.operation == "POST /pay"
    assert sh.onset is None  # failures before too: the first one after the cut need not be the start
    # as many as before is no rise
    assert compare_origins(after, after, 60.0, 60.0) == []


def _write_traces(case: Path, spans: list[Span]) -> None:
    with (case / "traces.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["trace_id", "span_id", "parent_span_id", "service", "operation", "start_time", "duration_ms",
                    "status"])
        for s in sorted(spans, key=lambda s: (s.start_time, s.span_id)):
            w.writerow([s.trace_id, s.span_id, s.parent_span_id, s.service, s.operation, f"{s.start_time:.3f}",
                        s.duration_ms, s.status])


async def test_an_exception_deep_in_the_chain_is_named_where_it_starts(tmp_path: Path) -> None:
    """Errors propagate up: the callers' error rates rise, the failing service exports nothing. The traces
    say where each failing request broke, and that service is the cause, as a code error."""
    effect = chain(add_on("frontend", "error_rate", 0.3), add_on("orders", "error_rate", 0.4))
    case = make_case(tmp_path, effect)
    spans: list[Span] = []
    for i, t in enumerate(np.arange(T0, T0 + 1800, 5.0)):
        spans += _chain_trace(f"t{i}", float(t), "payment" if t >= INJECT else None)
    _write_traces(case, spans)
    report = await run_case(case)
    assert report.causes[0].service == "payment", report.causes[:3]
    assert report.causes[0].kind == "code_error"
    cited = {e.id: e for e in report.evidence}
    assert any(cited[i].signal == "error_origin" for i in report.causes[0].evidence)


def _f(svc: str, sig: str, z: float, onset: float, via: tuple[str, ...] = ()) -> Finding:
    return Finding(svc, sig, classify(sig), "metrics", z, onset, False, 1.0, 2.0, "", "", via=via)


def test_a_starved_callers_longer_wait_is_not_laid_on_its_callees() -> None:
    """The symptom service itself runs out of CPU: every call it makes takes longer from its side. That is
    its own fault, not evidence against the services it calls."""
    findings = [_f("frontend", "cpu", 40.0, 1000.0), _f("frontend", "client_latency_p90", 20.0, 1060.0)]
    assert caller_wait_findings(findings, {"orders": {"frontend"}}, {"frontend": {"orders"}}) == []
    # the same wait from a caller with CPU to spare does point at its callee
    fed = [_f("frontend", "client_latency_p90", 20.0, 1060.0)]
    (cw,) = caller_wait_findings(fed, {"orders": {"frontend"}}, {"frontend": {"orders"}})
    assert cw.service == "orders" and cw.via == ("frontend",)


async def test_the_symptom_service_starving_on_cpu_is_the_cause(tmp_path: Path) -> None:
    effect = chain(up_on("frontend", "cpu", 4.0), up_on("frontend", "latency_p90", 6.0),
                   up_on("frontend", "client_latency_p90", 6.0))
    case = make_case(tmp_path, effect, extra_series=[(s, "client_latency_p90") for s in ("frontend", "orders")])
    report = await run_case(case)
    assert report.causes[0].service == "frontend" and report.causes[0].kind == "cpu_saturation"
    assert "orders" not in report.ranked_services[:1]


def test_a_callee_does_not_explain_a_caller_with_the_callers_own_wait() -> None:
    """A callee whose only sign is that this very caller waits longer on it cannot explain the caller away."""
    t = float(ALERT)
    caller = _f("orders", "latency_p90", 30.0, t)
    wait = _f("payment", "callers_wait", 30.0, t, via=("orders",))
    h = Hypothesis("orders", "dependency_failure", support=[caller])
    graph = Graph([Edge("orders", "payment")])
    score([h], [caller, wait], graph, ["orders"], t, 60.0)
    assert "explained" not in " ".join(h.notes) and h.factors["topology"] >= 1.0
    # the same move seen by another caller does explain it
    h2 = Hypothesis("orders", "dependency_failure", support=[caller])
    wait2 = _f("payment", "callers_wait", 30.0, t, via=("billing",))
    score([h2], [caller, wait2], graph, ["orders"], t, 60.0)
    assert h2.factors["topology"] < 1.0


def test_a_release_before_the_services_own_errors_is_their_cause_and_cpu_is_not() -> None:
    """Errors that start in a service's code are what a release ships: the deploy just before them takes
    their place. A CPU rise cannot throw exceptions, so it does not."""
    t = float(ALERT)
    origin = Finding("payments", "error_origin", "origin", "traces", 9.0, t, False, 0.0, 1.0, "", "")
    code = Hypothesis("payments", "code_error", support=[origin], raw=3.0)
    deploy = Hypothesis("payments", "deploy", change=ChangeEvent("payments", t - 100), raw=2.9)
    cpu = Hypothesis("payments", "cpu_saturation", support=[_f("payments", "cpu", 9.0, t - 60)], raw=2.0)
    prefer_explanations([code, deploy, cpu], 60.0)
    assert deploy.raw > code.raw and "explains the service's own code error" in deploy.notes
    assert cpu.raw == 2.0
    # a release after the errors began explains nothing
    late = Hypothesis("payments", "deploy", change=ChangeEvent("payments", t + 300), raw=2.9)
    prefer_explanations([Hypothesis("payments", "code_error", support=[origin], raw=3.0), late], 60.0)
    assert late.raw == 2.9


def test_a_cause_that_explains_a_services_symptoms_carries_their_strength_and_evidence() -> None:
    """A node or resource move that precedes the service's own slowness takes its score; the service's strongest
    anomaly is still that slowness, so the 'strongest anomaly is weak' check and the cited evidence see it."""
    t = float(ALERT)
    gap = _f("search", "trace_call_gap", 200.0, t)
    node = _f("search", "node_network_receive_bytes", 20.0, t - 60)
    slow = Hypothesis("search", "dependency_failure", support=[gap], raw=1.3, factors={"strength": 1.2})
    host = Hypothesis("search", "node_problem", support=[node], raw=0.4, factors={"strength": 0.25})
    prefer_explanations([slow, host], 60.0)
    assert host.raw > slow.raw and host.factors["strength"] == 1.2
    assert host.support == [node, gap]


async def test_an_alert_at_the_start_of_the_data_has_no_baseline_and_says_so(tmp_path: Path) -> None:
    """The incident window starts before the first sample: nothing to compare with, a plain abstention."""
    case = make_case(tmp_path, up_on("orders", "cpu", 4.0))
    alert = json.loads((case / "alert.json").read_text())
    alert["alerts"][0]["startsAt"] = datetime.fromtimestamp(T0 + 30, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    (case / "alert.json").write_text(json.dumps(alert))
    report = await run_case(case)
    assert report.abstained and report.causes == []
    assert any(m.startswith("metrics: no samples before the incident window") for m in report.missing)


async def test_without_a_call_graph_two_services_slowing_together_are_not_told_apart(tmp_path: Path) -> None:
    """No topology, no traces: payment and the orders service in front of it slow down from the same sample;
    either may be waiting on the other, so the engine abstains and says why. A saturated resource is the
    service's own, so a CPU-starved service is still named without a graph."""
    slow = chain(up_on("payment", "latency_p90", 8.0), up_on("orders", "latency_p90", 2.0))
    report = await run_case(make_case(tmp_path / "slow", slow, edges=None))
    assert report.abstained and report.causes[0].service in ("payment", "orders")
    assert "no call graph" in report.reason and "cannot tell which one the other waits on" in report.reason
    # with the graph, the callee is named
    graphed = await run_case(make_case(tmp_path / "graphed", slow))
    assert not graphed.abstained and graphed.causes[0].service == "payment"
    hog = chain(up_on("payment", "cpu", 4.0), up_on("payment", "latency_p90", 8.0), up_on("orders", "latency_p90", 5.0))
    starved = await run_case(make_case(tmp_path / "hog", hog, edges=None))
    assert not starved.abstained and starved.causes[0].service == "payment"
