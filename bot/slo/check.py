"""What an SLO check says besides pages: the slow-burn warning and how burns and budgets are written.

A ticket decision (the workbook's 1x pair: at this rate the budget runs out before the period ends) is an
early warning, not an incident: the scheduled check (``bot.slo_check.check_slos``) hands a ``SloWarning`` to an
injected ``warn`` on every check while the slow burn holds, and the SLO's name to ``clear`` on every check where
it does not. This module depends on nothing but the SLO domain, so whoever receives warnings can import it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from bot.slo.burn import PairBurn
from bot.slo.evaluate import SloStatus
from bot.slo.rules import prom_duration


@dataclass(frozen=True)
class SloWarning:
    """A slow burn of ``slo``'s budget at ``at``: ``burns`` by window (as ``3d``), the windows that had data."""

    slo: str
    service: str
    objective: float
    period: str
    burns: Mapping[str, float]
    budget_left: float | None
    at: float
    text: str

    @property
    def key(self) -> str:
        """The warning's stable identity across checks (a watch item's key): one per SLO."""
        return key_of(self.slo)

    @property
    def title(self) -> str:
        return f"SLO {self.slo} of {self.service} burns its {self.period} error budget too fast"

    @property
    def labels(self) -> dict[str, str]:
        """What a silence can match besides the service."""
        return {"slo": self.slo, "period": self.period, "objective": f"{self.objective:g}"}


def key_of(slo_name: str) -> str:
    return f"slo:{slo_name}"


# What the check hands warnings and recoveries to; whatever they return is ignored.
Warn = Callable[[SloWarning], Awaitable[object]]
Clear = Callable[[str], Awaitable[object]]


def fmt_burn(burn: float) -> str:
    """Two significant figures below 10 (``3.4``, ``0.12``), whole from 10 (``14``, ``250``): re-checks that see
    about the same burn send the same annotations, which triage counts as a duplicate instead of an update."""
    return f"{burn:.0f}" if burn >= 9.95 else f"{burn:.2g}"


def fmt_budget(left: float | None) -> str:
    return "unknown" if left is None else f"{round(left * 100)}%"


def pair_text(pair: PairBurn) -> str:
    parts = [f"{fmt_burn(b)}x over {prom_duration(w)}" if b is not None else f"no data over {prom_duration(w)}"
             for w, b in ((pair.window.long, pair.long_burn), (pair.window.short, pair.short_burn))]
    return " and ".join(parts)


def warning_of(status: SloStatus) -> SloWarning:
    slo, window = status.slo, status.decision.window
    assert window is not None and status.decision.severity == "ticket"
    pair = next(p for p in status.decision.pairs if p.window == window)
    burns = {prom_duration(w): b for w, b in ((window.long, pair.long_burn), (window.short, pair.short_burn))
             if b is not None}
    text = (f"SLO {slo.name} of {slo.service} burns its {slo.period} error budget at {pair_text(pair)}: at this "
            f"rate it runs out before the period ends ({fmt_budget(status.budget_left)} left)")
    return SloWarning(slo=slo.name, service=slo.service, objective=slo.objective, period=slo.period, burns=burns,
                      budget_left=status.budget_left, at=status.at, text=text)
