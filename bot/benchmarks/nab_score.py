"""The Numenta Anomaly Benchmark's scoring rules (Lavin & Ahmad 2015; Ahmad et al. 2017), as pure functions.

Written from the paper and NAB's documented behaviour, so ``onwatch bench nab`` can print the score NAB's own
scorer gives the results folder it writes:

- The first 15 % of each file (at most 750 rows) is probationary: a detector learns there and nothing in it
  counts, neither a detection nor a window's rows.
- A detection is a row whose anomaly score reaches the threshold. Inside a labelled window only the EARLIEST
  detection counts, weighted by a scaled sigmoid of its place in the window: ``A_TP`` at the window's left edge,
  about 0 at its right edge. A window with no detection costs ``A_FN``.
- A detection outside every window costs ``A_FP`` times the same sigmoid of its distance past the previous
  window's right edge, in window widths (nearly nothing right after a window, the full ``A_FP`` from three
  widths on, and in full before the first window).
- One threshold serves the whole corpus: the one with the best total raw score.
- The corpus score is normalised so the null detector (a constant score) gets 0 and the perfect one (each
  window's first row, nothing else) gets 100: ``100 * (raw - null) / (perfect - null)`` with ``perfect`` the
  number of windows times ``A_TP``.

The standard profile weighs a true positive 1.0, a missed window 1.0 and a false positive 0.11.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

PROBATION_SHARE = 0.15
PROBATION_CAP_ROWS = 5000  # NAB caps the probationary period at 15 % of 5,000 rows


@dataclass(frozen=True, slots=True)
class Profile:
    """NAB's cost matrix: what a true positive earns, and a missed window or a false positive costs."""

    name: str
    tp: float
    fp: float
    fn: float


STANDARD = Profile("standard", tp=1.0, fp=0.11, fn=1.0)


@dataclass(frozen=True, slots=True)
class Row:
    """One scorable row: the detector's score, what a detection here is worth, and its window (None: outside)."""

    score: float
    worth: float
    window: tuple[str, int] | None


@dataclass(frozen=True, slots=True)
class Sweep:
    """The corpus' raw score at one threshold, with its counts."""

    threshold: float
    raw: float
    detected_windows: int
    false_positives: int


def probation_rows(n_rows: int) -> float:
    """Rows at the start of a file that are never scored."""
    return min(math.floor(PROBATION_SHARE * n_rows), PROBATION_SHARE * PROBATION_CAP_ROWS)


def scaled_sigmoid(position: float) -> float:
    """+0.987 at a window's left edge (-1), 0 at its right edge (0), -0.987 one width past it, -1 from three on."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def window_rows(n_rows: int, windows: Sequence[tuple[int, int]]) -> list[int | None]:
    """For each row, the index of the window holding it (windows as inclusive row ranges), else None."""
    where: list[int | None] = [None] * n_rows
    for k, (left, right) in enumerate(sorted(windows)):
        if not 0 <= left <= right < n_rows:
            raise ValueError(f"window rows {left}..{right} lie outside the file's {n_rows} rows")
        for i in range(left, right + 1):
            where[i] = k
    return where


def score_rows(name: str, scores: Sequence[float], windows: Sequence[tuple[int, int]],
               profile: Profile = STANDARD) -> list[Row]:
    """One file's scorable rows: probationary rows dropped, every other row priced as a detection there."""
    ordered = sorted(windows)
    where = window_rows(len(scores), ordered)
    max_tp = scaled_sigmoid(-1.0)
    skip = probation_rows(len(scores))
    rows: list[Row] = []
    prev_right: int | None = None
    prev_width = 0.0
    for i, score in enumerate(scores):
        k = where[i]
        if k is not None:
            left, right = ordered[k]
            width = float(right - left + 1)
            worth = scaled_sigmoid(-(right - i + 1) / width) * profile.tp / max_tp
            if i == right:
                prev_right, prev_width = right, width
        else:
            past = 3.0 if prev_right is None else abs(prev_right - i) / max(prev_width - 1.0, 1.0)
            worth = scaled_sigmoid(past) * profile.fp
        if i >= skip:
            rows.append(Row(score=score, worth=worth, window=None if k is None else (name, ordered[k][0])))
    return rows


def sweep(rows: Sequence[Row], profile: Profile = STANDARD) -> list[Sweep]:
    """The raw score at every distinct threshold, highest first (a threshold counts rows scoring at or above it).

    The first entry (threshold 1.1) detects nothing: every window that has scorable rows costs ``A_FN``."""
    ranked = sorted(rows, key=lambda r: r.score, reverse=True)
    windows = {r.window for r in ranked if r.window is not None}
    best: dict[tuple[str, int], float] = {w: -profile.fn for w in windows}
    detected: set[tuple[str, int]] = set()
    fp_sum, fp_count = 0.0, 0
    window_sum = -profile.fn * len(windows)
    out: list[Sweep] = []
    threshold = 1.1
    for row in ranked:
        if row.score != threshold:
            out.append(Sweep(threshold, fp_sum + window_sum, len(detected), fp_count))
            threshold = row.score
        if row.window is None:
            fp_sum += row.worth
            fp_count += 1
        else:
            detected.add(row.window)
            if row.worth > best[row.window]:
                window_sum += row.worth - best[row.window]
                best[row.window] = row.worth
    out.append(Sweep(threshold, fp_sum + window_sum, len(detected), fp_count))
    return out


def best_threshold(rows: Sequence[Row], profile: Profile = STANDARD) -> Sweep:
    """The threshold with the best corpus raw score (the highest such threshold on a tie)."""
    return max(sweep(rows, profile), key=lambda s: s.raw)


def raw_at(rows: Sequence[Row], threshold: float, profile: Profile = STANDARD) -> float:
    """A file's (or corpus') raw score with detections at ``score >= threshold``."""
    best: dict[tuple[str, int], float] = {}
    fp = 0.0
    for row in rows:
        if row.window is not None:
            best.setdefault(row.window, -profile.fn)
            if row.score >= threshold:
                best[row.window] = max(best[row.window], row.worth)
        elif row.score >= threshold:
            fp += row.worth
    return fp + sum(best.values())


def normalised(raw: float, null: float, n_windows: int, profile: Profile = STANDARD) -> float:
    """NAB's final score: the null detector at 0, the perfect detector (``n_windows * A_TP``) at 100."""
    perfect = n_windows * profile.tp
    if perfect == null:
        raise ValueError("the corpus has no window to score")
    return 100.0 * (raw - null) / (perfect - null)
