"""The ``watch:`` settings: whether early warnings are taken at all, how often one service may get a new one,
and how far around a warning's start its changes are looked up.

A leaf (pydantic only, like ``bot.slo.model``): ``bot.config`` imports it for its ``watch:`` section, so it must
not import ``bot.config`` back. Unknown keys are refused, as in every other section.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt


class WatchSettings(BaseModel):
    """Watch items (docs/proactive.md, "Watch items"): early warnings from proactive checks."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="take findings from the proactive checks and post them")
    min_interval_s: int = Field(
        default=3600, ge=0,
        description="at most one NEW watch item per service in this many seconds (counted in the database, so it "
                    "holds across restarts and replicas); 0: no limit")
    service_intervals: dict[str, NonNegativeInt] = Field(
        default_factory=dict,
        description="min_interval_s for named services (a chatty service can be given a longer one)")
    changes_before_s: int = Field(default=3600, ge=0,
                                  description="changes this long before a warning's start are shown with it")
    changes_after_s: int = Field(default=900, ge=0,
                                 description="and changes up to this long after its start (never past now)")
    source_timeout_s: float = Field(default=10.0, gt=0, le=120,
                                    description="each change source answers within this, or is named as missing")
    max_points: int = Field(default=720, ge=2, le=5000,
                            description="chart points kept with an item (a longer series is thinned evenly)")

    def interval_for(self, service: str) -> int:
        """The rate limit of ``service``: its own interval if configured, else ``min_interval_s``."""
        return self.service_intervals.get(service, self.min_interval_s)
