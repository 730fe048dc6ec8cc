"""The Google SRE workbook's multiwindow, multi-burn-rate alerting policy, as pure functions.

Burn rate is how fast the error budget goes: the bad fraction over a window divided by the budget
``1 - objective``. At burn 1 the budget lasts exactly the period. The workbook's policy for a 30-day period:

====== =========== ============ ====== ========== =====================================
long   short       burn factor  fires  budget     why
====== =========== ============ ====== ========== =====================================
1 h    5 min       14.4         page   2 %        14.4 × 1 h / 720 h = 0.02
6 h    30 min      6            page   5 %        6 × 6 h / 720 h = 0.05
3 d    6 h         1            ticket 10 %       1 × 72 h / 720 h = 0.10
====== =========== ============ ====== ========== =====================================

An alert fires when both its long window (enough budget is really gone) and its short window (it is still
going now, so the alert resets soon after a fix) burn at or above the factor.

Other periods scale the windows proportionally: ``window = base_window × period / 30 d``. The factors stay,
so each alert keeps its meaning as the share of the budget spent: for a 7-day period the first page looks at
14 min against 70 s, and 14.4 × 14 min over 7 days is still 2 % of the budget. (Keeping 1 h windows on a
7-day period would instead page at 8.6 % spent, and a 90-day period at 0.67 %.)

A burn that reaches the factor fires (``>=``, with a relative tolerance of 1e-9): the factors are the points
where that share of budget is gone, and ``0.0144 / (1 - 0.999)`` is 14.39999… in floating point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from bot.slo.model import SLO

Severity = Literal["page", "ticket"]

BASE_PERIOD_S = 30 * 86400
# (long window s, short window s, burn factor, severity) for the 30-day base period, most urgent first.
_BASE: tuple[tuple[int, int, float, Severity], ...] = (
    (3600, 300, 14.4, "page"),
    (6 * 3600, 1800, 6.0, "page"),
    (3 * 86400, 6 * 3600, 1.0, "ticket"),
)
_RANK: dict[Severity, int] = {"page": 2, "ticket": 1}
_REL_TOL = 1e-9


@dataclass(frozen=True)
class Window:
    """One alert's pair of windows (seconds), its burn factor and what it opens."""

    long: float
    short: float
    factor: float
    severity: Severity


@dataclass(frozen=True)
class PairBurn:
    """What one window pair saw: ``None`` where the caller had no error ratio for that window."""

    window: Window
    long_burn: float | None
    short_burn: float | None
    fires: bool


@dataclass(frozen=True)
class Decision:
    """The alert that fires (``severity`` and its ``window``, or ``None``) and every pair's burns, to explain it."""

    severity: Severity | None
    window: Window | None
    pairs: tuple[PairBurn, ...]


def _check_objective(objective: float) -> None:
    if not 0.0 < objective < 1.0:
        raise ValueError(f"objective {objective!r} must lie strictly between 0 and 1")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise ValueError(f"{name} {value!r} must be a fraction between 0 and 1")


def burn_rate(bad_fraction: float, objective: float) -> float:
    """How many times faster than sustainable the budget goes: 1 spends it exactly over the period."""
    _check_objective(objective)
    _check_fraction("bad_fraction", bad_fraction)
    return bad_fraction / (1.0 - objective)


def budget_left(bad_fraction_over_period: float, objective: float) -> float:
    """The share of the period's budget still unspent; negative when it is overspent (by that share)."""
    return 1.0 - burn_rate(bad_fraction_over_period, objective)


def windows_for(period_s: float) -> list[Window]:
    """The workbook's three window pairs scaled to ``period_s`` (see the module docstring), most urgent first."""
    if not period_s > 0:
        raise ValueError(f"period {period_s!r} s must be positive")
    scale = period_s / BASE_PERIOD_S
    return [Window(long=long * scale, short=short * scale, factor=factor, severity=severity)
            for long, short, factor, severity in _BASE]


def _reaches(burn: float | None, factor: float) -> bool:
    return burn is not None and (burn >= factor or math.isclose(burn, factor, rel_tol=_REL_TOL))


def _ratio_for(ratios: Mapping[float, float], window_s: float) -> float | None:
    """The caller's ratio for ``window_s`` (keys matched with a tolerance: scaled windows are floats).

    NaN (``0 / 0`` when a window saw no traffic) counts as missing, as it does in Prometheus, where
    ``NaN >= x`` is false. Counters scraped a moment apart can put ``good`` a hair above ``total``, so a ratio
    just outside 0..1 is clamped rather than refused.
    """
    for key, ratio in ratios.items():
        if math.isclose(key, window_s, rel_tol=_REL_TOL):
            return None if math.isnan(ratio) else min(max(ratio, 0.0), 1.0)
    return None


def evaluate(error_ratio_by_window: Mapping[float, float], slo: SLO) -> Decision:
    """Which alert fires, given the error ratio (bad / total) over each window in seconds.

    The most severe pair whose long and short windows both reach its factor wins (among pages, the fastest).
    A window missing from the mapping cannot fire its pair: no data is not evidence of a burn.
    """
    pairs: list[PairBurn] = []
    for window in windows_for(slo.period_seconds):
        burns = [_ratio_for(error_ratio_by_window, w) for w in (window.long, window.short)]
        long_burn, short_burn = (None if r is None else burn_rate(r, slo.objective) for r in burns)
        fires = _reaches(long_burn, window.factor) and _reaches(short_burn, window.factor)
        pairs.append(PairBurn(window=window, long_burn=long_burn, short_burn=short_burn, fires=fires))
    firing = [p.window for p in pairs if p.fires]
    if not firing:
        return Decision(severity=None, window=None, pairs=tuple(pairs))
    top = max(firing, key=lambda w: _RANK[w.severity])  # max keeps the first (fastest) among equals
    return Decision(severity=top.severity, window=top, pairs=tuple(pairs))
