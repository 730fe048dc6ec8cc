"""The degradation detector and its episodes: quiet on healthy noise and daily cycles, quick on shifts and drifts."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.detect.detector import DegradationDetector, DetectorConfig, RollingMoments, RollingQuantiles
from bot.detect.episodes import current_episode

STEP = 300.0
DAY = 288  # points per day at a 5 min step
T0 = 1_700_000_000.0


def healthy(seed: int, days: int, *, cycle: float = 0.0, noise: float = 5.0) -> list[tuple[float, float]]:
    """Latency-like: a level of 100, an optional daily cycle, Gaussian noise."""
    r = random.Random(seed)
    return [(T0 + i * STEP, 100 + cycle * math.sin(2 * math.pi * i / DAY) + r.gauss(0, noise))
            for i in range(days * DAY)]


def alarms(points: list[tuple[float, float]], config: DetectorConfig | None = None) -> list[int]:
    d = DegradationDetector(config or DetectorConfig(warmup=DAY))
    return [i for i, (t, v) in enumerate(points) if d.update(t, v).alarm]


def test_healthy_noise_with_a_daily_cycle_rarely_fires_at_all() -> None:
    """The raw detector: at most one stray alarm across six series of three scored days each."""
    assert sum(len(alarms(healthy(seed, 4, cycle=30.0))) for seed in range(6)) <= 1


@pytest.mark.parametrize("seed", range(4))
def test_healthy_noise_never_holds_a_degradation_at_any_hourly_scan(seed: int) -> None:
    """What becomes an early warning: a degradation still holding when a scan looks. None, on any tick."""
    points = healthy(seed, 3, cycle=30.0)
    holding = []
    for end in range(DAY + 12, len(points) + 1, 12):
        ep = current_episode(points[:end], DetectorConfig(warmup=DAY), bad_direction=1)
        if ep is not None and ep.holding:
            holding.append(end)
    assert holding == []


def test_level_shift_is_found_within_a_few_points() -> None:
    points = healthy(1, 3)
    shift_at = 2 * DAY + 50
    points = [(t, v + (40 if i >= shift_at else 0)) for i, (t, v) in enumerate(points)]
    found = alarms(points)
    assert found and shift_at <= found[0] <= shift_at + 10


def test_slow_drift_is_found_long_before_it_doubles() -> None:
    """0.2 % of the level per point (5 min): the value would take ~8 hours to double; found in its first few."""
    points = healthy(2, 3)
    start = 2 * DAY
    points = [(t, v + max(0, i - start) * 0.2) for i, (t, v) in enumerate(points)]
    found = alarms(points)
    assert found and start < found[0] < start + 60  # within 5 hours, at about +12, a third of the way


def test_a_flattened_daily_cycle_is_seen_through_the_day_over_day_change() -> None:
    points = healthy(3, 4, cycle=30.0, noise=2.0)
    flat = range(3 * DAY + 60, 3 * DAY + 160)
    points = [(t, 100 + random.Random(i).gauss(0, 2.0) if i in flat else v) for i, (t, v) in enumerate(points)]
    found = alarms(points)
    assert found and found[0] in flat
    # without the seasonal residual the flat stretch sits on the median and goes unseen
    assert not [i for i in alarms(points, DetectorConfig(warmup=DAY, seasonal_skill=1e-9)) if i in flat]


def test_one_finding_per_episode_until_the_quiet_time_passes() -> None:
    points = healthy(4, 3)
    points = [(t, v + (60 if i >= 2 * DAY else 0)) for i, (t, v) in enumerate(points)]
    found = alarms(points, DetectorConfig(warmup=DAY, quiet_s=6 * 3600))
    assert found[0] >= 2 * DAY
    assert all(b - a >= 6 * 3600 / STEP for a, b in zip(found, found[1:], strict=False))


def test_points_that_are_not_finite_or_not_in_order_are_skipped() -> None:
    d = DegradationDetector(DetectorConfig(warmup=1))
    for i in range(30):
        d.update(T0 + i, 1.0 + (i % 3) * 0.01)
    for t, v in [(T0 + 40, math.nan), (T0 + 41, math.inf), (T0 + 5, 1e9), (math.nan, 1.0)]:
        r = d.update(t, v)
        assert (r.score, r.alarm, r.baseline) == (0.0, False, None)
    assert d.update(T0 + 42, 1.01).baseline == pytest.approx(1.01, abs=0.01)


@pytest.mark.parametrize("bad", [dict(warmup=0), dict(short=0), dict(history=5), dict(alarm_z=0),
                                 dict(saturate_z=-1), dict(quiet_s=-1), dict(seasonal_skill=0)])
def test_config_refuses_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DetectorConfig(**bad)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300), st.integers(10, 50))
def test_rolling_quantiles_and_moments_match_a_full_recount(values: list[float], size: int) -> None:
    q, m = RollingQuantiles(size), RollingMoments(size)
    for v in values:
        q.add(v)
        m.add(v)
    window = sorted(values[-size:])
    assert q.quantile(0.0) == window[0] and q.quantile(1.0) == window[-1]
    mean, std = m.mean_std()
    assert mean == pytest.approx(sum(window) / len(window), rel=1e-6, abs=1e-3)
    assert std == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in window) / len(window)), rel=1e-3, abs=1.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e9, 1e9) | st.sampled_from([math.nan, math.inf, -math.inf]), max_size=400))
def test_scores_stay_in_zero_one_whatever_comes_in(values: list[float]) -> None:
    d = DegradationDetector(DetectorConfig(warmup=5))
    for i, v in enumerate(values):
        r = d.update(T0 + i, v)
        assert 0.0 <= r.score < 1.0 and r.alarm == (r.score >= 0.5)


# ------------------------------------------------------------------ episodes


def test_a_drift_is_dated_from_its_beginning_and_holds_while_it_lasts() -> None:
    points = healthy(5, 3)
    start = 2 * DAY
    drifting = [(t, v + max(0, i - start) * 0.3) for i, (t, v) in enumerate(points)]
    ep = current_episode(drifting, DetectorConfig(warmup=DAY), bad_direction=1)
    assert ep is not None and ep.holding and ep.direction == 1
    assert T0 + (start - 5) * STEP <= ep.started_at < ep.detected_at
    assert ep.started_at <= T0 + (start + 40) * STEP  # dated near the start, not where it became certain
    assert ep.change > 2


def test_an_episode_that_came_back_no_longer_holds() -> None:
    points = healthy(6, 3)
    blip = range(2 * DAY, 2 * DAY + 40)
    back = [(t, v + (50 if i in blip else 0)) for i, (t, v) in enumerate(points)]
    ep = current_episode(back, DetectorConfig(warmup=DAY), bad_direction=1)
    assert ep is not None and not ep.holding


def test_only_the_bad_direction_counts() -> None:
    points = healthy(7, 3)
    dropped = [(t, v - (40 if i >= 2 * DAY + 100 else 0)) for i, (t, v) in enumerate(points)]
    assert current_episode(dropped, DetectorConfig(warmup=DAY), bad_direction=1) is None
    down = current_episode(dropped, DetectorConfig(warmup=DAY), bad_direction=-1)
    assert down is not None and down.direction == -1 and down.holding
    assert current_episode(healthy(8, 3), DetectorConfig(warmup=DAY), bad_direction=1) is None


def test_a_dip_in_the_good_direction_does_not_hide_the_rise_after_it() -> None:
    points = healthy(9, 3)
    dip, rise = range(2 * DAY, 2 * DAY + 8), 2 * DAY + 40  # the rise comes well within the 6 h quiet time
    moved = [(t, v - 40 if i in dip else v + 40 if i >= rise else v) for i, (t, v) in enumerate(points)]
    either = alarms(moved)
    assert either and either[0] in dip and not [i for i in either if rise <= i < rise + 20]
    rises = alarms(moved, DetectorConfig(warmup=DAY, direction=1))
    assert rises and rise <= rises[0] <= rise + 10
    ep = current_episode(moved, DetectorConfig(warmup=DAY), bad_direction=1)
    assert ep is not None and ep.holding and ep.direction == 1
