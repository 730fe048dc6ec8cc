"""Robust statistics for one series: a baseline band, an onset, a strength.

Why robust: baselines are short and noisy, sometimes hold part of an earlier incident, and some series
only record value changes. The median and the MAD (or IQR) of the baseline are not dragged by a few
wild points the way a mean and a standard deviation are. The spread has a floor so that a flat
baseline does not turn every wiggle into an "infinite" anomaly: relative to the level, wider when the
baseline holds few samples, and absolute per signal kind (a percentage point of CPU, one percent of
error rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAD_TO_SIGMA = 1.4826
IQR_TO_SIGMA = 1.0 / 1.349


def estimate_step(times_list: list[np.ndarray], default: float = 60.0) -> float:
    """The sampling step of a set of series: a low quantile of their typical sample gaps.

    Series that only record changes have long, irregular gaps; regular series give the true step,
    so the lower quantile of per-series median gaps is taken.
    """
    meds: list[float] = []
    for t in times_list:
        if len(t) >= 3:
            d = np.diff(t)
            d = d[d > 0]
            if len(d):
                meds.append(float(np.median(d)))
    if not meds:
        return default
    step = float(np.quantile(np.asarray(meds), 0.1))
    return max(step, 1e-3)


def make_grid(start: float, end: float, step: float, max_points: int = 4000) -> tuple[np.ndarray, float]:
    """A regular grid from ``start`` to ``end``; the step widens when the grid would be too long."""
    span = max(0.0, end - start)
    if span / step > max_points:
        step = span / max_points
    n = int(math.floor(span / step)) + 1
    return start + step * np.arange(n, dtype=np.float64), step


def grid_phase(times_list: list[np.ndarray], step: float) -> float:
    """Where the samples of a set of series sit within a step: the circular mean of their phases.

    Pods are scraped a few seconds apart and each scrape jitters (59, 61, 60 s gaps). A grid whose points
    sit among the samples, rather than on the earliest one, lets every sample be read at the grid point
    nearest to it (``read_at``), so jitter never drops one sample and reads the next one twice.
    """
    if step <= 0:
        return 0.0
    angles = [2 * math.pi * (float(t[i]) % step) / step for t in times_list for i in range(min(len(t), 50))]
    if not angles:
        return 0.0
    a = math.atan2(sum(math.sin(x) for x in angles), sum(math.cos(x) for x in angles))
    return (a / (2 * math.pi) * step) % step


def forward_fill(times: np.ndarray, values: np.ndarray, grid: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    """Read a series as a step function on ``grid``; NaN before its first sample.

    ``tolerance`` (at most half a step) lets a grid point take a sample stamped up to that much after it:
    a regular series scraped with jitter then lands one sample per grid point (the nearest), instead of
    losing a sample whenever two scrapes fall between the same two grid points.
    """
    idx = np.searchsorted(times, grid + tolerance, side="right") - 1
    out = np.where(idx >= 0, values[np.clip(idx, 0, len(values) - 1)], np.nan)
    return out.astype(np.float64)


@dataclass(frozen=True, slots=True)
class Baseline:
    median: float
    spread: float
    n: int


def baseline(values: np.ndarray, rel_floor: float, abs_floor: float, full_scale: float = 0.0) -> Baseline | None:
    """The band of a baseline. ``full_scale`` > 0 marks a share of that scale (a success percentage):
    its relative floor is taken on the complement (the failing share), where its noise lives."""
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return None
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * MAD_TO_SIGMA
    q75, q25 = np.quantile(v, [0.75, 0.25]) if len(v) >= 4 else (med, med)
    iqr = float(q75 - q25) * IQR_TO_SIGMA
    # few samples: the level itself is uncertain, widen the relative floor
    rel = max(rel_floor, 0.25 / math.sqrt(len(v)))
    level = abs(full_scale - med) if full_scale > 0 else abs(med)
    spread = max(mad, iqr, rel * level, abs_floor, 1e-12)
    return Baseline(med, spread, len(v))


@dataclass(frozen=True, slots=True)
class Shift:
    """How one series moved from its baseline into the incident window."""

    before: float  # baseline median
    after: float  # median level after the onset (or over the window when there is no onset)
    z: float  # robust strength in the bad direction (>= 0), median over the anomalous stretch
    peak: float  # a high quantile of z over the incident window
    onset: float | None  # first time the series left its band persistently
    preexisting: bool  # already outside the band at the end of the baseline
    n_before: int
    n_after: int


def shift(
    grid: np.ndarray,
    values: np.ndarray,
    base_mask: np.ndarray,
    inc_mask: np.ndarray,
    direction: int,
    rel_floor: float,
    abs_floor: float,
    step: float,
    threshold: float = 3.0,
    persist_s: float = 60.0,
    hold_s: float = 240.0,
    full_scale: float = 0.0,
) -> Shift | None:
    """Compare the incident stretch of one forward-filled series to its baseline."""
    b = baseline(values[base_mask], rel_floor, abs_floor, full_scale)
    inc_vals = values[inc_mask]
    inc_t = grid[inc_mask]
    ok = np.isfinite(inc_vals)
    if b is None or not ok.any():
        return None
    inc_vals, inc_t = inc_vals[ok], inc_t[ok]
    raw = (inc_vals - b.median) / b.spread
    z = raw if direction > 0 else (-raw if direction < 0 else np.abs(raw))
    above = z >= threshold
    # persistence: a share of the points in [t, t + persist) must be above the threshold
    width = max(1, int(round(persist_s / step)))
    csum = np.concatenate(([0], np.cumsum(above.astype(np.int64))))
    n = len(z)
    ends = np.minimum(np.arange(n) + width, n)
    counts = csum[ends] - csum[np.arange(n)]
    frac = counts / (ends - np.arange(n))
    persistent = above & (frac >= 0.6)
    onset: float | None = None
    if persistent.any():
        i0 = int(np.argmax(persistent))
        onset = float(inc_t[i0])
        stretch = (inc_t >= onset) & (inc_t <= onset + max(hold_s, persist_s))
        zz = z[stretch]
        strength = float(np.median(zz))
        after = float(np.median(inc_vals[stretch]))
    else:
        strength = float(np.median(z))
        after = float(np.median(inc_vals))
    peak = float(np.quantile(z, 0.9))
    # was it already outside its band when the baseline ended?
    base_vals = values[base_mask]
    tail = base_vals[np.isfinite(base_vals)][-width:]
    pre = False
    if len(tail) and b.n > width:
        traw = (tail - b.median) / b.spread
        tz = traw if direction > 0 else (-traw if direction < 0 else np.abs(traw))
        pre = bool(np.mean(tz >= threshold) >= 0.6)
    return Shift(
        before=b.median,
        after=after,
        z=max(0.0, strength),
        peak=max(0.0, peak),
        onset=onset,
        preexisting=pre,
        n_before=b.n,
        n_after=int(len(inc_vals)),
    )


def strength_score(z: float, full: float = 100.0) -> float:
    """Map a robust z to [0, ~1.2] on a log scale: 3 is barely, 10 clearly, 100 overwhelmingly anomalous."""
    if z <= 0:
        return 0.0
    return min(1.2, math.log1p(z) / math.log1p(full))


def shift_matrix(
    grid: np.ndarray,
    values: np.ndarray,
    base_mask: np.ndarray,
    inc_mask: np.ndarray,
    direction: np.ndarray,
    rel_floor: np.ndarray,
    abs_floor: np.ndarray,
    step: float,
    threshold: float = 3.0,
    persist_s: float = 60.0,
    hold_s: float = 240.0,
    full_scale: np.ndarray | None = None,
) -> list[Shift | None]:
    """``shift`` for many series at once: ``values`` is (series x grid), NaN where a series has no value.

    The same statistics as ``shift``, computed along the rows with numpy so a case with a thousand
    series takes milliseconds, not a second.
    """
    import warnings

    n_series = values.shape[0]
    if n_series == 0:
        return []
    base = values[:, base_mask]
    inc = values[:, inc_mask]
    inc_t = grid[inc_mask]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        n_base = np.sum(np.isfinite(base), axis=1)
        med = np.nanmedian(base, axis=1)
        mad = np.nanmedian(np.abs(base - med[:, None]), axis=1) * MAD_TO_SIGMA
        q75, q25 = np.nanquantile(base, [0.75, 0.25], axis=1)
    iqr = np.where(n_base >= 4, (q75 - q25) * IQR_TO_SIGMA, 0.0)
    rel = np.maximum(rel_floor, 0.25 / np.sqrt(np.maximum(n_base, 1)))
    level = np.nan_to_num(med)
    if full_scale is not None:
        level = np.where(full_scale > 0, full_scale - level, level)
    spread = np.nanmax(np.stack([np.nan_to_num(mad), np.nan_to_num(iqr), rel * np.abs(level),
                                 abs_floor, np.full(n_series, 1e-12)]), axis=0)
    raw = (inc - med[:, None]) / spread[:, None]
    d = direction[:, None]
    z = np.where(d > 0, raw, np.where(d < 0, -raw, np.abs(raw)))
    finite = np.isfinite(z)
    above = finite & (z >= threshold)
    width = max(1, int(round(persist_s / step)))
    n = z.shape[1]
    csum = np.concatenate((np.zeros((n_series, 1), dtype=np.int64), np.cumsum(above, axis=1)), axis=1)
    fsum = np.concatenate((np.zeros((n_series, 1), dtype=np.int64), np.cumsum(finite, axis=1)), axis=1)
    idx = np.arange(n)
    ends = np.minimum(idx + width, n)
    counts = csum[:, ends] - csum[:, idx]
    denom = np.maximum(fsum[:, ends] - fsum[:, idx], 1)
    persistent = above & (counts / denom >= 0.6)
    has_onset = persistent.any(axis=1)
    i0 = np.argmax(persistent, axis=1)
    onset_t = inc_t[i0] if n else np.zeros(n_series)
    hold = max(hold_s, persist_s)
    stretch = (inc_t[None, :] >= onset_t[:, None]) & (inc_t[None, :] <= onset_t[:, None] + hold) & finite
    use = np.where(has_onset[:, None], stretch, finite)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        strength = np.nanmedian(np.where(use, z, np.nan), axis=1)
        after = np.nanmedian(np.where(use, inc, np.nan), axis=1)
        peak = np.nanquantile(np.where(finite, z, np.nan), 0.9, axis=1)
    # already outside the band at the end of the baseline?
    out: list[Shift | None] = []
    for i in range(n_series):
        if n_base[i] == 0 or not finite[i].any():
            out.append(None)
            continue
        bv = base[i][np.isfinite(base[i])]
        tail = bv[-width:]
        pre = False
        if len(tail) and n_base[i] > width:
            traw = (tail - med[i]) / spread[i]
            tz = traw if direction[i] > 0 else (-traw if direction[i] < 0 else np.abs(traw))
            pre = bool(np.mean(tz >= threshold) >= 0.6)
        out.append(Shift(
            before=float(med[i]), after=float(after[i]), z=max(0.0, float(strength[i])),
            peak=max(0.0, float(peak[i])), onset=float(onset_t[i]) if has_onset[i] else None,
            preexisting=pre, n_before=int(n_base[i]), n_after=int(finite[i].sum()),
        ))
    return out
