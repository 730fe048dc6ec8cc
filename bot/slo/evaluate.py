"""One SLO's state now: its error ratio over every window the burn-rate policy reads, read through a port.

The queries are the recording rules' expressions (``bot.slo.rules.error_ratio_expr``), evaluated as instant
queries at ``at``: the windows of ``windows_for(period)`` and the whole period (how much budget is left).
What comes back is a ``SloStatus``: the ``Decision`` of ``bot.slo.burn.evaluate``, the burn of every window,
and which windows had no data or failed. A failed query is named in the status, never raised: one SLO whose
selector Prometheus refuses must not hide the others. No data (no series, or ``0 / 0`` when nothing was
served) is not a burn: its pair cannot fire.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bot.slo.burn import Decision, budget_left, burn_rate, evaluate, windows_for
from bot.slo.model import SLO
from bot.slo.rules import error_ratio_expr

_REL_TOL = 1e-9  # window seconds are floats (scaled windows): the same window may differ in the last bit


class SliQueryFailed(Exception):
    """One SLI query could not be answered (the source was unreachable, refused it, or answered nonsense).

    The message is written for a person and names the source."""


class SliPort(Protocol):
    """What evaluation needs from a metrics source (``bot.slo.prom.PrometheusSli`` over Prometheus)."""

    def signal_query(self, slo: SLO) -> str:
        """The PromQL of ``slo``'s catalog signal; ``SliQueryFailed`` when it cannot be resolved."""
        ...

    async def ratio(self, expr: str, at: float) -> float | None:
        """The single value of ``expr`` at ``at``; ``None`` when there is no data; ``SliQueryFailed``."""
        ...


class SloState(StrEnum):
    OK = "ok"
    TICKET = "ticket"  # a slow burn: an early warning
    PAGE = "page"  # a fast burn: an incident
    NO_DATA = "no data"  # no burn window had data: nothing to judge
    ERROR = "error"  # nothing fires, but a query failed: the state is unknown


@dataclass(frozen=True)
class WindowQuery:
    window_s: float
    expr: str


@dataclass(frozen=True)
class SloStatus:
    """What one check saw for one SLO at ``at``.

    ``ratios`` holds the error ratio (clamped to 0..1) of every window that answered, the period's included;
    ``no_data`` the windows that answered nothing; ``errors`` the windows whose query failed, with why."""

    slo: SLO
    at: float
    decision: Decision
    budget_left: float | None
    ratios: Mapping[float, float]
    no_data: tuple[float, ...]
    errors: Mapping[float, str]

    @property
    def burns(self) -> dict[float, float]:
        """Burn rate per window (seconds) that had data."""
        return {w: burn_rate(r, self.slo.objective) for w, r in self.ratios.items()}

    @property
    def state(self) -> SloState:
        if self.decision.severity == "page":
            return SloState.PAGE
        if self.decision.severity == "ticket":
            return SloState.TICKET
        if self.errors:
            return SloState.ERROR
        pair_windows = [w for p in self.decision.pairs for w in (p.window.long, p.window.short)]
        if not any(_same(w, seen) for w in pair_windows for seen in self.ratios):
            return SloState.NO_DATA
        return SloState.OK


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL_TOL)


def windows_read(slo: SLO) -> list[float]:
    """Every distinct window of the policy plus the whole period (seconds), shortest first."""
    out: list[float] = []
    for w in [*(w for pair in windows_for(slo.period_seconds) for w in (pair.long, pair.short)),
              float(slo.period_seconds)]:
        if not any(_same(w, seen) for seen in out):
            out.append(w)
    return sorted(out)


def window_queries(slo: SLO, signal_query: str | None = None) -> list[WindowQuery]:
    """One query per window of ``windows_read``."""
    return [WindowQuery(w, error_ratio_expr(slo, w, signal_query)) for w in windows_read(slo)]


def _clamp(ratio: float) -> float:
    # Counters scraped a moment apart can put good a hair above total (burn.py clamps the same way).
    return min(max(ratio, 0.0), 1.0)


def status_of(slo: SLO, at: float, answers: Mapping[float, float | None],
              errors: Mapping[float, str] | None = None) -> SloStatus:
    """The status from each window's answer (``None`` or NaN: no data); windows in ``errors`` failed."""
    errors = dict(errors or {})
    ratios = {w: _clamp(r) for w, r in answers.items() if r is not None and not math.isnan(r)}
    no_data = tuple(sorted(w for w in answers if w not in ratios and w not in errors))
    period = next((r for w, r in ratios.items() if _same(w, slo.period_seconds)), None)
    return SloStatus(slo=slo, at=at, decision=evaluate(ratios, slo),
                     budget_left=None if period is None else budget_left(period, slo.objective),
                     ratios=ratios, no_data=no_data, errors=errors)


async def _answer(port: SliPort, query: WindowQuery, at: float) -> float | None | SliQueryFailed:
    try:
        return await port.ratio(query.expr, at)
    except SliQueryFailed as exc:
        return exc


async def evaluate_slo(slo: SLO, port: SliPort, at: float) -> SloStatus:
    """Query every window of ``slo`` at ``at`` (concurrently) and judge the burn; failures land in the status."""
    signal: str | None = None
    if slo.signal is not None:
        try:
            signal = port.signal_query(slo)
        except SliQueryFailed as exc:
            return status_of(slo, at, {}, dict.fromkeys(windows_read(slo), str(exc)))
    queries = window_queries(slo, signal)
    got = await asyncio.gather(*(_answer(port, q, at) for q in queries))
    answers: dict[float, float | None] = {}
    errors: dict[float, str] = {}
    for q, value in zip(queries, got, strict=True):
        if isinstance(value, SliQueryFailed):
            errors[q.window_s] = str(value)
        else:
            answers[q.window_s] = value
    return status_of(slo, at, answers, errors)

