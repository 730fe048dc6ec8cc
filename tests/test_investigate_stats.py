"""Robust statistics: the vectorised shift agrees with the per-series reference; bands and onsets."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.investigate.stats import baseline, estimate_step, forward_fill, shift, shift_matrix, strength_score


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), jump=st.floats(0, 50), direction=st.sampled_from([-1, 0, 1]))
def test_matrix_matches_reference(seed: int, jump: float, direction: int) -> None:
    rng = np.random.default_rng(seed)
    grid = np.arange(0, 600, 5, dtype=float)
    vals = rng.normal(10, 1, (3, len(grid)))
    vals[:, 80:] += jump
    vals[1, :10] = np.nan  # a series that starts late
    base, inc = grid <= 300, grid > 300
    got = shift_matrix(grid, vals, base, inc, np.full(3, float(direction)), np.full(3, 0.05), np.full(3, 0.1), 5.0)
    for i in range(3):
        ref = shift(grid, vals[i], base, inc, direction, 0.05, 0.1, 5.0)
        gi = got[i]
        assert ref is not None and gi is not None
        assert gi.onset == ref.onset and gi.preexisting == ref.preexisting
        assert np.isclose(gi.z, ref.z) and np.isclose(gi.before, ref.before)


def test_onset_and_strength() -> None:
    grid = np.arange(0, 1200, 10, dtype=float)
    v = np.where(grid >= 700, 50.0, 10.0) + np.sin(grid)
    sh = shift(grid, v, grid <= 600, grid > 600, 1, 0.05, 1.0, 10.0)
    assert sh is not None and sh.onset == 700 and sh.z > 10 and not sh.preexisting
    # a single spike is not a persistent departure
    spike = np.full_like(grid, 10.0)
    spike[80] = 100
    sh2 = shift(grid, spike, grid <= 600, grid > 600, 1, 0.05, 1.0, 10.0)
    assert sh2 is not None and sh2.onset is None


def test_floors_and_helpers() -> None:
    flat = baseline(np.full(50, 100.0), rel_floor=0.05, abs_floor=0.0)
    assert flat is not None and flat.spread == 5.0
    few = baseline(np.array([100.0]), rel_floor=0.05, abs_floor=0.0)
    assert few is not None and few.spread == 25.0
    assert baseline(np.array([np.nan]), 0.05, 0.0) is None
    assert estimate_step([np.arange(0, 600, 60.0)] * 9 + [np.array([0.0, 7, 100, 400])]) == 60.0
    assert list(forward_fill(np.array([10.0, 20]), np.array([1.0, 2]), np.array([5.0, 10, 15, 25]))[1:]) == [1, 1, 2]
    assert strength_score(0) == 0 and strength_score(3) < strength_score(10) < strength_score(100) <= 1.2


def test_an_opaque_endpoint_does_not_outrank_the_service_behind_it() -> None:
    from bot.investigate.catalog import classify
    from bot.investigate.findings import Finding
    from bot.investigate.hypotheses import Hypothesis
    from bot.investigate.scoring import Graph, discount_echoes
    from integrations.base import Edge

    def lat(svc: str, z: float) -> Finding:
        return Finding(svc, "latency_avg", classify("latency_avg"), "metrics", z, 100.0, False, 0.1, 1.0, "", "")

    graph = Graph([Edge("site", "lb_remote"), Edge("site", "search"), Edge("search", "db")])
    fs = [lat("lb_remote", 40.0), lat("search", 30.0)]
    echo, real = Hypothesis("lb_remote", "dependency_failure", [fs[0]], raw=1.0), \
        Hypothesis("search", "dependency_failure", [fs[1]], raw=0.8)
    discount_echoes([echo, real], fs, graph, 300.0)
    assert echo.raw < real.raw and echo.echo_of == ("search",)
    # the same endpoint with telemetry of its own is a service in its own right
    echo2 = Hypothesis("lb_remote", "dependency_failure", [fs[0]], raw=1.0)
    discount_echoes([echo2, real], fs, graph, 300.0, instrumented={"lb_remote"})
    assert echo2.raw == 1.0 and echo2.echo_of == ()

    # like with like: the endpoint's p99 soared (its own stalls ride on the tail) while the service behind it
    # moved only in its mean; the endpoint's mean moved as the service's did, so it is the same move
    def sig(svc: str, signal: str, z: float) -> Finding:
        return Finding(svc, signal, classify(signal), "metrics", z, 100.0, False, 0.1, 1.0, "", "")

    tail = [sig("lb_remote", "latency_p99", 300.0), sig("lb_remote", "latency_avg", 14.0), sig("search", "latency_avg", 9.0)]
    echo3 = Hypothesis("lb_remote", "dependency_failure", tail[:2], raw=1.1)
    real3 = Hypothesis("search", "dependency_failure", [tail[2]], raw=0.35)
    discount_echoes([echo3, real3], tail, graph, 300.0)
    assert echo3.raw < real3.raw and echo3.echo_of == ("search",)
    # a mean that did not move with it leaves the endpoint standing
    alone = [tail[0], sig("search", "latency_p50", 3.2)]
    echo4 = Hypothesis("lb_remote", "dependency_failure", alone[:1], raw=1.1)
    discount_echoes([echo4, Hypothesis("search", "dependency_failure", alone[1:], raw=0.2)], alone, graph, 300.0)
    assert echo4.raw == 1.1


def _calls(*gaps: float, t0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(len(gaps), dtype=float) + t0, np.asarray(gaps, dtype=float)


def _healthy_edges(n: int = 6) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    return {(f"x{i}", f"y{i}"): _calls(3.0 + 0.2 * i, 3.1, 3.3, 2.9) for i in range(n)}


def test_a_rarely_called_edge_still_shows_a_network_delay() -> None:
    from bot.investigate.spans import compare_gaps

    before = {("a", "b"): _calls(3.0, 3.2, 3.1)}
    after = {("a", "b"): _calls(1500.0, 1490.0, 1510.0, 1480.0, t0=100)}
    (gap,) = compare_gaps(before, after)
    assert (gap.caller, gap.callee) == ("a", "b") and gap.z > 100 and not gap.preexisting
    # one call after is not enough to say anything
    assert compare_gaps(before, {("a", "b"): _calls(1500.0, t0=100)}) == []


def test_a_delay_that_began_just_before_the_cut_is_read_against_the_system() -> None:
    """The edge's few baseline calls already hold the delay: the system's typical call cost is the
    reference, the onset is where the slow run began, and it is not pre-existing (seen healthy first)."""
    from bot.investigate.spans import compare_gaps

    before = _healthy_edges() | {("a", "b"): _calls(3.0, 1005.0, 1008.0, 2001.0)}
    after = _healthy_edges() | {("a", "b"): _calls(1002.0, 1010.0, 1998.0, 1004.0, t0=100)}
    gaps = {(g.caller, g.callee): g for g in compare_gaps(before, after)}
    ab = gaps[("a", "b")]
    assert ab.z > 100 and ab.onset == 1.0 and not ab.preexisting
    assert all(g.z < 3 for k, g in gaps.items() if k != ("a", "b"))
    # slow from its very first call: pre-existing (an earlier incident), still flagged as slow
    before2 = _healthy_edges() | {("a", "b"): _calls(1005.0, 1008.0, 2001.0)}
    (ab2,) = [g for g in compare_gaps(before2, after) if g.caller == "a"]
    assert ab2.z > 100 and ab2.preexisting
    # ... but only when the traces reach far enough back to say so: slow from the first call of traces kept
    # a minute before the cut is a delay whose start we did not see, as likely the incident's as older
    early = {("a", "b"): (np.array([-100.0, -90.0, -80.0]), np.array([1005.0, 1008.0, 2001.0]))}
    assert [g.preexisting for g in compare_gaps(_healthy_edges() | early, after, cut=100.0) if g.caller == "a"] == [True]
    late = {("a", "b"): (np.array([45.0, 70.0, 90.0]), np.array([1005.0, 1008.0, 2001.0]))}
    (ab3,) = [g for g in compare_gaps(_healthy_edges() | late, after, cut=100.0) if g.caller == "a"]
    assert ab3.z > 100 and not ab3.preexisting
    # an edge never seen before is read against what calls cost across the system
    (new,) = [g for g in compare_gaps(_healthy_edges(), _healthy_edges() | {("c", "d"): _calls(900.0, 950.0)})
              if g.caller == "c"]
    assert new.z > 50


def test_a_client_span_is_the_calls_cost_not_the_callers_own_time() -> None:
    """A network delay in front of a callee shows on the edge, not as the caller's own time."""
    from bot.investigate.spans import edge_calls, service_spans
    from integrations.base import Span

    def trace(i: int, net_ms: float) -> list[Span]:
        t = f"t{i}"
        return [
            Span(t, "s1", "", "caller", "GET /x", float(i), 20.0 + net_ms + 5.0),
            Span(t, "c1", "s1", "caller", "HTTP GET", float(i), net_ms + 5.0),
            Span(t, "s2", "c1", "callee", "GET /y", float(i), 5.0),
        ]

    spans = [s for i in range(5) for s in trace(i, 1000.0)]
    own = service_spans(spans)
    assert float(np.median(own["caller"].self_ms)) == 20.0 and float(np.median(own["callee"].self_ms)) == 5.0
    (times, gaps) = edge_calls(spans)[("caller", "callee")]
    assert list(gaps) == [1000.0] * 5 and list(times) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_success_share_over_few_requests_is_weighed_as_failure_counts() -> None:
    from bot.investigate.catalog import classify
    from bot.investigate.findings import failure_count_z

    avail = classify("availability")
    assert avail.full_scale == 100.0
    # one baseline sample at 100 %: the band is on the failing share, so 100 -> 88 % is a clear move
    b = baseline(np.array([100.0]), avail.rel_floor, avail.abs_floor, avail.full_scale)
    assert b is not None and b.spread == 1.0
    # ... but 0 % of a single request is one failure, not a collapse
    assert failure_count_z(100.0, 0.0, 100.0, requests=1.0) == 1.0
    assert failure_count_z(100.0, 88.0, 100.0, requests=150.0) > 10
    # a baseline that already failed some requests predicts some failures after
    assert failure_count_z(99.0, 98.0, 100.0, requests=600.0) < failure_count_z(100.0, 98.0, 100.0, requests=600.0)


def test_a_small_failure_rate_over_many_requests_is_a_move() -> None:
    from bot.investigate.findings import metric_findings, metric_frame, share_floor
    from bot.investigate.look import Gathered
    from bot.investigate.scope import Scope
    from integrations.base import TimeWindow

    # the floor of a share is one failed request among those served, never more than the fixed floor
    assert share_floor(1.0, 100.0, 1000.0) == 0.1
    assert share_floor(1.0, 100.0, 20.0) == 1.0 and share_floor(1.0, 100.0, None) == 1.0

    def avail_drop(requests_per_s: float, after: float, signal: str = "availability", ok: float = 100.0) -> float:
        t = np.arange(0.0, 3000.0, 300.0)
        g = Gathered(window=TimeWindow(0.0, 3000.0))
        g.series[("svc", signal)] = (t, np.where(t < 1800.0, ok, after))
        g.series[("svc", "request_rate")] = (t, np.full(len(t), requests_per_s))
        scope = Scope(symptoms=("svc",), onset=1860.0, now=3000.0, baseline=TimeWindow(0.0, 1500.0),
                      incident=TimeWindow(1860.0, 3000.0))
        frame = metric_frame(g, scope)
        assert frame is not None
        (f,) = [f for f in metric_findings(g, scope, frame) if f.signal == signal]
        return f.z

    # 2 % of 900 requests per period: eighteen failures where there were none is a move...
    assert avail_drop(3.0, 98.0) >= 3.0
    # ...while the same drop over a few requests per period is one failure, not an incident
    assert avail_drop(0.01, 98.0) < 3.0
    # an error rate as a fraction is the same count read from the failing side
    assert avail_drop(3.0, 0.02, "error_rate", ok=0.0) >= 3.0
    assert avail_drop(0.01, 0.02, "error_rate", ok=0.0) < 3.0


def test_warnings_weigh_less_than_errors() -> None:
    from bot.investigate.catalog import classify

    assert classify("log_warnings").family == classify("log_errors").family == "logs"
    assert classify("log_warnings").weight < classify("log_errors").weight


def test_a_latency_quantile_over_few_requests_is_weighed_by_its_sampling_error() -> None:
    from bot.investigate.findings import quantile_sampling_z

    # a median of 3 requests from a service whose p50 was 0.35 s and p99 2.3 s lands near the old p99 by chance
    assert quantile_sampling_z(0.35, 2.3, dist_width=2.3 - 0.35, requests=3.0) < 3.0
    # the same move over a thousand requests is far outside what sampling explains
    assert quantile_sampling_z(0.35, 2.3, dist_width=2.3 - 0.35, requests=1000.0) > 30.0
    # with nothing to judge the sampling by, it does not cap anything
    assert quantile_sampling_z(0.35, 2.3, dist_width=0.0, requests=3.0) == float("inf")
