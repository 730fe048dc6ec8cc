"""The investigator behind ``onwatch investigate --case/--alert``: the model's steps on stderr, its reading printed.

It runs only when ``llm:`` is configured (``--config FILE``, ``$ONWATCH_CONFIG`` or ``ONWATCH_LLM__*``);
otherwise the outcome is ``off`` and the command prints exactly what it printed before.
"""

from __future__ import annotations

import sys

from bot.config import LlmSettings
from bot.investigate.llm.investigator import configured, investigate_report
from bot.investigate.llm.loop import LlmOutcome, LlmStatus, off
from bot.investigate.report import Report
from integrations.base import Sources


async def _stderr_step(text: str) -> None:
    print(f"  model: {text}", file=sys.stderr)


async def for_report(report: Report, sources: Sources, llm: LlmSettings) -> LlmOutcome:
    """The model's outcome on ``report`` over the sources the engine used (the caller closes them)."""
    if not configured(llm):
        return off()
    return await investigate_report(llm, report, sources, on_step=_stderr_step)


def render_text(outcome: LlmOutcome) -> str:
    """The model's reading under the engine's, as ``onwatch investigate`` prints it."""
    if outcome.status == LlmStatus.OFF:
        return ""
    lines = ["", "The model's reading (LLM investigator; the ranking above is the engine's):"]
    a = outcome.answer
    if outcome.status == LlmStatus.ACCEPTED and a is not None:
        lines.append(f"  {a.service} - {a.kind}: {a.mechanism} [{', '.join(a.evidence)}]")
        lines += [f"  - {c.text} [{', '.join(c.evidence)}]" for c in a.claims]
        by_id = {e.id: e for e in outcome.evidence}
        for eid in a.evidence:
            if eid in by_id:
                lines.append(f"     [{eid}] {by_id[eid].summary}")
        if a.next:
            lines.append("  Check next: " + "; ".join(a.next))
    else:
        lines.append(f"  {outcome.status.value}: {outcome.reason}")
    lines.append(f"  ({len(outcome.tool_calls)} tool calls, {outcome.prompt_tokens + outcome.completion_tokens} tokens,"
                 f" {outcome.seconds:.1f} s)")
    return "\n".join(lines)
