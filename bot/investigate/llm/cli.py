"""The investigator behind ``onwatch investigate --case/--alert``: settings, sources, steps on stderr.

It runs only when ``llm:`` is configured (``--config FILE``, ``$ONWATCH_CONFIG`` or ``ONWATCH_LLM__*``);
otherwise the outcome is ``off`` and the command prints exactly what it printed before.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bot.config import LlmSettings, load_settings
from bot.investigate.llm.investigator import configured, investigate_report
from bot.investigate.llm.loop import LlmOutcome, LlmStatus, off
from bot.investigate.report import Report
from integrations.registry import build_sources
from integrations.replay import replay_sources


async def _stderr_step(text: str) -> None:
    print(f"  model: {text}", file=sys.stderr)


async def for_report(report: Report, *, case: Path | None, config: Path | None,
                     llm: LlmSettings | None = None) -> LlmOutcome:
    """The model's outcome on ``report``: over the case bundle with ``case``, else the configured sources."""
    settings = load_settings(config) if llm is None else None
    cfg = llm if settings is None else settings.llm
    if not configured(cfg):
        return off()
    sources = replay_sources(case) if case is not None else build_sources((settings or load_settings(config)).sources)
    try:
        return await investigate_report(cfg, report, sources, on_step=_stderr_step)
    finally:
        await sources.aclose()


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
