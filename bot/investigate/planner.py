"""The planner decides the next look once the first round of hypotheses is scored.

The default planner is deterministic: when the two best causes are within ``close_ratio`` of each
other it asks for a second look at both over a longer baseline (a service whose "anomaly" is within
its longer-run range is only noisy), and stops there. An LLM planner could implement the same
protocol; it would have to cite evidence ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.investigate.hypotheses import Hypothesis


@dataclass(frozen=True, slots=True)
class Look:
    kind: str  # "wide_baseline"
    services: tuple[str, ...]
    reason: str
    baseline_factor: float = 3.0


class Planner(Protocol):
    def next_look(self, ranked: Sequence[Hypothesis], done: Sequence[Look]) -> Look | None: ...


@dataclass(frozen=True, slots=True)
class DeterministicPlanner:
    close_ratio: float = 0.85
    max_looks: int = 1

    def next_look(self, ranked: Sequence[Hypothesis], done: Sequence[Look]) -> Look | None:
        if len(done) >= self.max_looks:
            return None
        best: list[Hypothesis] = []
        for h in ranked:
            if all(b.service != h.service for b in best):
                best.append(h)
            if len(best) == 2:
                break
        if len(best) < 2 or best[0].raw <= 0:
            return None
        ratio = best[1].raw / best[0].raw
        if ratio < self.close_ratio:
            return None
        svcs = tuple(sorted({best[0].service, best[1].service}))
        return Look("wide_baseline", svcs,
                    f"{best[0].service} and {best[1].service} are close ({ratio:.2f}): "
                    "checking both against a longer baseline")
