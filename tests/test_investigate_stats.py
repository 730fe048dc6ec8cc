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
        assert ref is not None and got[i] is not None
        assert got[i].onset == ref.onset and got[i].preexisting == ref.preexisting
        assert np.isclose(got[i].z, ref.z) and np.isclose(got[i].before, ref.before)


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


def test_a_rarely_called_edge_still_shows_a_network_delay() -> None:
    import numpy as np

    from bot.investigate.spans import compare_gaps

    before = {("a", "b"): np.array([3.0, 3.2, 3.1])}
    after = {("a", "b"): np.array([1500.0, 1490.0, 1510.0, 1480.0])}
    (gap,) = compare_gaps(before, after)
    assert gap[:2] == ("a", "b") and gap[4] > 100
    assert compare_gaps({("a", "b"): np.array([3.0, 3.1])}, after) == []
