"""From a series to the degradation it is in now, if any: when it started, against what baseline, and whether
it still holds.

A scheduled scan is stateless: each run replays the recent window through a fresh detector (a few hundred
points per series, well under a millisecond), so a restart or a new leader sees exactly what the last one saw.
The last finding in the signal's bad direction opens an episode. It holds while the series' recent median (of the detector's ``short`` points) stays
``hold_z`` spreads past the baseline the detector judged it against when it fired (that baseline is frozen:
the detector's own baseline learns the new level, and would call a lasting degradation normal). It starts where
the smoothed series last crossed one spread before the finding, so a drift is dated from its beginning, not
from the moment it became certain.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bot.detect.detector import DegradationDetector, DetectorConfig

HOLD_Z = 2.0  # spreads past the frozen baseline at which a degradation still holds
START_Z = 1.0  # spreads past it where it is dated from


@dataclass(frozen=True, slots=True)
class Episode:
    started_at: float
    detected_at: float
    baseline: float
    spread: float
    direction: int  # +1 the series went up, -1 down
    value: float  # the recent median
    holding: bool

    @property
    def change(self) -> float:
        """How far the recent median sits from the baseline, in spreads (signed by the direction)."""
        return (self.value - self.baseline) * self.direction / self.spread


def _medians(values: Sequence[float], width: int) -> list[float]:
    """The trailing median of ``width`` points at each point (fewer at the start): one spike in a noisy series
    does not move it, a level that has really changed does."""
    return [statistics.median(values[max(0, i - width + 1):i + 1]) for i in range(len(values))]


def current_episode(points: Sequence[tuple[float, float]], config: DetectorConfig, bad_direction: int,
                    hold_z: float = HOLD_Z) -> Episode | None:
    """The latest degradation of ``points`` (time-sorted) in ``bad_direction`` (+1 up is bad, -1 down, 0 either),
    holding or recovered; ``None`` when the detector found none. A move in the other direction is no finding
    and starts no quiet time, so a dip cannot hide the rise after it."""
    detector = DegradationDetector(replace(config, direction=bad_direction))  # a good move starts no quiet time
    values = [v for _, v in points]
    smooth = _medians(values, config.short)
    last: tuple[int, float, float, int] | None = None  # (index, baseline, spread, direction)
    for i, (t, v) in enumerate(points):
        reading = detector.update(t, v)
        if not reading.alarm or reading.baseline is None or reading.spread is None:
            continue
        # the side the detector saw (against the day before, on a daily cycle), not the flat median's
        direction = reading.direction or (1 if smooth[i] >= reading.baseline else -1)
        if bad_direction in (0, direction):
            last = (i, reading.baseline, reading.spread, direction)
    if last is None:
        return None
    index, baseline, spread, direction = last
    start = index
    while start > 0 and (smooth[start - 1] - baseline) * direction >= START_Z * spread:
        start -= 1
    recent = smooth[-1]
    holding = (recent - baseline) * direction >= hold_z * spread
    return Episode(started_at=points[start][0], detected_at=points[index][0], baseline=baseline, spread=spread,
                   direction=direction, value=recent, holding=holding)
