"""Limits of one LLM investigation: model calls, tokens, wall time, and how big a tool result may be.

The meter is checked before each model call; whatever runs out first ends the loop with the report
standing alone. A tool result may take at most a share of the model's context, so one query cannot
crowd out the report and the rest of the conversation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Budget:
    max_steps: int = 8  # model calls, the final answer included
    max_tokens: int = 60_000  # prompt + completion tokens over the whole investigation
    max_seconds: float = 120.0
    context_tokens: int = 32_768  # the model's context window
    tool_result_share: float = 0.25  # of the context, per tool result
    max_diff_file_chars: int = 6_000
    max_diff_chars: int = 24_000

    @property
    def max_result_chars(self) -> int:
        """About four characters a token."""
        return max(2_000, int(self.context_tokens * 4 * self.tool_result_share))


@dataclass
class Meter:
    budget: Budget
    started: float = field(default_factory=time.monotonic)
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining_seconds(self) -> float:
        return max(0.0, self.budget.max_seconds - self.elapsed)

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.steps += 1
        self.prompt_tokens += max(0, prompt_tokens)
        self.completion_tokens += max(0, completion_tokens)

    def exhausted(self) -> str:
        """Why no further model call may be made, or "" while one may."""
        b = self.budget
        if self.steps >= b.max_steps:
            return f"step budget exhausted ({self.steps} of {b.max_steps} model calls)"
        if self.tokens >= b.max_tokens:
            return f"token budget exhausted ({self.tokens} of {b.max_tokens} tokens)"
        if self.elapsed >= b.max_seconds:
            return f"time budget exhausted ({self.elapsed:.0f} of {b.max_seconds:g} s)"
        return ""

    @property
    def last_step(self) -> bool:
        """The next call is the last one allowed: the model gets no tools and must answer."""
        return self.steps + 1 >= self.budget.max_steps
