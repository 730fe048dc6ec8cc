"""A streaming detector of level shifts, drifts and spikes in one metric series, robust to noise and daily cycles.

Built from robust statistics rather than a learned model, so it needs no training, runs in tens of
microseconds a point, and says in numbers why it fired. Each point, in stream order (no look-ahead):

1. **Surprise of the value.** The baseline is the median of the last ``history`` points and its scale the
   interquartile range (both ignore the outliers they are meant to find). When the series has a daily cycle
   (the value a day earlier predicts it better than the median does: the median absolute day-over-day change
   is below ``seasonal_skill`` of the spread), the day-over-day change is a second residual and the larger
   one counts, so a flattened or shifted cycle is seen while a normal one is not. The residual, in scales,
   saturates at ``saturate_z``: past that, more distance is no more evidence.
2. **Anomaly likelihood** (as in Numenta's HTM detector, Ahmad et al. 2017): the mean surprise of the last
   ``short`` points is compared with the mean and spread of that same mean over the history. A noisy series
   is always a little surprising, so only a surprise well above its OWN usual level counts: this is what
   keeps a noisy but healthy series quiet, and what makes one threshold fit series of any scale.
3. **One finding per episode.** A likelihood at ``alarm_z`` standard deviations raises a finding; for
   ``quiet_s`` after it the detector stays silent while its baseline learns the new level. Each reading says
   which side the recent residuals lean to; with ``direction`` set, a move the other way is no finding and
   starts no quiet time (a latency dip must not hide the rise after it).

The score it returns is ``z / (z + alarm_z)`` in [0, 1): 0.5 is the alarm (with ``direction`` set, only in that
direction; the score itself does not depend on it).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass

DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Tuning, with defaults that are properties of monitoring data rather than of one benchmark."""

    warmup: int = 288  # points seen before any score (a day at a 5 min step)
    history: int | None = None  # points in the baseline; defaults to ``warmup``
    short: int = 10  # points whose mean surprise is "now"
    saturate_z: float = 6.0
    alarm_z: float = 4.0
    quiet_s: float = 6 * 3600.0
    season_s: float = DAY_S
    seasonal_skill: float = 0.5
    season_tolerance_s: float = 900.0  # how far from exactly a day earlier a point may sit to count as it
    direction: int = 0  # +1: only a rise is a finding, -1: only a fall, 0: either (a move the other way stays quiet)

    def __post_init__(self) -> None:
        if self.warmup < 1 or self.short < 1 or (self.history is not None and self.history < 10):
            raise ValueError("warmup and short must be at least 1, history at least 10 points")
        if not (self.saturate_z > 0 and self.alarm_z > 0 and self.quiet_s >= 0 and 0 < self.seasonal_skill <= 1):
            raise ValueError("saturate_z and alarm_z must be positive, quiet_s non-negative, seasonal_skill in (0, 1]")
        if self.direction not in (-1, 0, 1):
            raise ValueError("direction must be +1 (rises), -1 (falls) or 0 (either)")


@dataclass(frozen=True, slots=True)
class Reading:
    """What one point did: its score, whether it raised a finding, and the baseline it was judged against."""

    score: float
    alarm: bool
    baseline: float | None  # the median it was judged against (None before there is a past)
    spread: float | None  # the baseline's robust standard deviation
    likelihood_z: float
    direction: int = 0  # +1 the recent points sit above what the past predicts, -1 below (the residuals that counted)


class RollingQuantiles:
    """The last ``size`` values, kept sorted for quantiles (insertion and removal are C-level list moves)."""

    def __init__(self, size: int):
        self.size = size
        self._order: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._sorted)

    def add(self, value: float) -> None:
        self._order.append(value)
        insort(self._sorted, value)
        if len(self._order) > self.size:
            del self._sorted[bisect_left(self._sorted, self._order.popleft())]

    def quantile(self, p: float) -> float:
        s = self._sorted
        k = (len(s) - 1) * p
        i = int(k)
        j = min(i + 1, len(s) - 1)
        return s[i] + (s[j] - s[i]) * (k - i)


class RollingMoments:
    """Mean and standard deviation of the last ``size`` values, updated in O(1)."""

    def __init__(self, size: int):
        self._values: deque[float] = deque()
        self.size = size
        self._sum = 0.0
        self._sq = 0.0

    def __len__(self) -> int:
        return len(self._values)

    def add(self, value: float) -> None:
        self._values.append(value)
        self._sum += value
        self._sq += value * value
        if len(self._values) > self.size:
            old = self._values.popleft()
            self._sum -= old
            self._sq -= old * old

    def mean_std(self) -> tuple[float, float]:
        n = len(self._values)
        mean = self._sum / n
        return mean, math.sqrt(max(self._sq / n - mean * mean, 0.0))


MIN_POINTS = 10  # a baseline of fewer points says nothing
MIN_SPREAD = 1e-3  # the likelihood's spread never drops below this (a perfectly flat past is not infinitely sure)


def _floor(level: float) -> float:
    """The smallest scale a residual is measured in: a flat series still has rounding noise."""
    return 1e-9 + 1e-3 * abs(level)


class DegradationDetector:
    """Feed points in time order with ``update``; see the module docstring for what it computes."""

    def __init__(self, config: DetectorConfig | None = None):
        self.config = c = config or DetectorConfig()
        size = c.history or max(c.warmup, MIN_POINTS)
        self._values = RollingQuantiles(size)
        self._day_changes = RollingQuantiles(size)
        self._surprise: deque[float] = deque(maxlen=c.short)
        self._signed: deque[float] = deque(maxlen=c.short)
        self._likelihood = RollingMoments(size)
        self._times: deque[float] = deque()
        self._by_time: deque[float] = deque()
        self._seen = 0
        self._quiet_until = -math.inf
        self._last_t = -math.inf

    def _day_before(self, t: float) -> float | None:
        """The value about one season before ``t``, if one was seen within the tolerance."""
        target = t - self.config.season_s
        while self._times and self._times[0] < target - self.config.season_tolerance_s:
            self._times.popleft()
            self._by_time.popleft()
        if self._times and abs(self._times[0] - target) <= self.config.season_tolerance_s:
            return self._by_time[0]
        return None

    def _residual(self, t: float, value: float) -> tuple[float, float | None, float | None]:
        """The value's signed distance from what the past predicts, in scales (0 before there is a past), with
        the baseline and its spread."""
        if len(self._values) < MIN_POINTS:
            return 0.0, None, None
        c = self.config
        level = self._values.quantile(0.5)
        spread = max((self._values.quantile(0.75) - self._values.quantile(0.25)) / 1.349, _floor(level))
        residual = (value - level) / spread
        before = self._day_before(t)
        if before is not None:
            change = abs(value - before)
            if len(self._day_changes) >= MIN_POINTS:
                day_scale = max(self._day_changes.quantile(0.5) * 1.4826, _floor(level))
                if day_scale < c.seasonal_skill * spread and change / day_scale > abs(residual):
                    residual = (value - before) / day_scale
            self._day_changes.add(change)
        return residual, level, spread

    def update(self, t: float, value: float) -> Reading:
        """Score one point (``t`` in seconds). A point that is not finite, or not after the last one, is
        skipped: it scores 0 and teaches nothing."""
        if not math.isfinite(value) or not math.isfinite(t) or t <= self._last_t:
            return Reading(0.0, False, None, None, 0.0)
        c = self.config
        self._last_t = t
        self._seen += 1
        signed, baseline, spread = self._residual(t, value)
        residual = abs(signed)
        self._values.add(value)
        self._times.append(t)
        self._by_time.append(value)
        self._surprise.append(min(residual / c.saturate_z, 1.0))
        self._signed.append(math.copysign(min(residual / c.saturate_z, 1.0), signed))
        lean = sum(self._signed)
        direction = 1 if lean > 0 else -1 if lean < 0 else 0
        now = sum(self._surprise) / len(self._surprise)
        z = 0.0
        if len(self._likelihood) >= 2 * MIN_POINTS:
            mean, std = self._likelihood.mean_std()
            z = max((now - mean) / max(std, MIN_SPREAD), 0.0)
        self._likelihood.add(now)
        if self._seen <= c.warmup or t < self._quiet_until:
            return Reading(0.0, False, baseline, spread, z, direction)
        alarm = z >= c.alarm_z and c.direction in (0, direction)
        if alarm:
            self._quiet_until = t + c.quiet_s
        return Reading(z / (z + c.alarm_z), alarm, baseline, spread, z, direction)
