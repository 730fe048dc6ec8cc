"""One SLO as the settings will list it (``slos:``): what is measured, against which objective, over which period.

The SLI comes in one of two forms, and exactly one must be given: ``good``/``total`` PromQL series selectors
(an event ratio, the workbook's preferred form) or a catalog ``signal`` with a ``threshold`` and ``good_when``
(a time ratio: the share of time the signal sat on the wrong side of the threshold). Names and periods are
checked strictly here so a typo fails at load with the field named, not later inside a generated rule.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.durations import parse_duration

# Below a day the scaled 5 min window drops under a typical scrape interval and rate() sees no two samples.
MIN_PERIOD_S = 86400
# The names become Prometheus label values inside generated PromQL; this set needs no quoting or escaping.
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


class SLO(BaseModel):
    """One objective. ``period`` stays the text the operator wrote; ``period_seconds`` is what the maths uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    service: str = Field(pattern=_NAME)
    objective: float = Field(gt=0, lt=1, description="share of good events (or time), as 0.999")
    period: str = "30d"
    good: str | None = Field(default=None, min_length=1, description="PromQL selector of good events")
    total: str | None = Field(default=None, min_length=1, description="PromQL selector of all events")
    signal: str | None = Field(default=None, min_length=1, description="catalog signal name")
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    good_when: Literal["below", "above"] | None = None

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        seconds = parse_duration(value)
        if seconds < MIN_PERIOD_S:
            raise ValueError(f"{value!r} is shorter than 1d: the scaled 5 min window would fall below a scrape "
                             "interval")
        return value.strip()

    @model_validator(mode="after")
    def _one_sli(self) -> SLO:
        queries = (self.good, self.total)
        signal = (self.signal, self.threshold, self.good_when)
        has_queries = any(q is not None for q in queries)
        has_signal = any(s is not None for s in signal)
        if has_queries and has_signal:
            raise ValueError("give the SLI either as good/total queries or as signal/threshold/good_when, not both")
        if has_queries and not all(q is not None for q in queries):
            raise ValueError("good and total go together: an event ratio needs both queries")
        if has_signal and not all(s is not None for s in signal):
            raise ValueError("signal, threshold and good_when go together: a time ratio needs all three")
        if not has_queries and not has_signal:
            raise ValueError("no SLI: give good/total queries or signal/threshold/good_when")
        return self

    @property
    def period_seconds(self) -> int:
        return parse_duration(self.period)

    @property
    def error_budget(self) -> float:
        """The share of events (or time) allowed to be bad over the period."""
        return 1.0 - self.objective

    @property
    def is_event_ratio(self) -> bool:
        return self.good is not None
