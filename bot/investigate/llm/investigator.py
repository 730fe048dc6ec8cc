"""The investigator from settings: the endpoint, budgets and redaction of ``llm:``, over given sources.

Callers (the investigation service, ``onwatch investigate``, the RCA bench) hand it the finished report
and the sources the engine read; they get an ``LlmOutcome`` back and never an exception from the model
side: an endpoint that is down is an ``error`` outcome, and the report stands alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.config import LlmSettings
from bot.investigate.llm.budgets import Budget
from bot.investigate.llm.loop import CallRecord, Investigator, LlmOutcome, off
from bot.investigate.llm.redact import Redactor
from bot.investigate.llm.tools import Toolbox
from bot.investigate.report import Report
from integrations.base import Sources
from integrations.llm import OpenAICompatible


def configured(cfg: LlmSettings | None) -> bool:
    return cfg is not None and cfg.enabled and bool(cfg.base_url)


def budget_of(cfg: LlmSettings) -> Budget:
    return Budget(max_steps=cfg.max_steps, max_tokens=cfg.max_tokens, max_seconds=cfg.max_seconds,
                  context_tokens=cfg.context_tokens, tool_result_share=cfg.tool_result_share,
                  max_diff_file_chars=cfg.max_diff_file_chars, max_diff_chars=cfg.max_diff_chars)


async def investigate_report(cfg: LlmSettings | None, report: Report, sources: Sources, *,
                             on_call: Callable[[CallRecord], Awaitable[None]] | None = None,
                             on_step: Callable[[str], Awaitable[None]] | None = None) -> LlmOutcome:
    """Run the loop once on ``report`` with the configured model; ``off`` when none is configured."""
    if cfg is None or not configured(cfg):
        return off()
    assert cfg.base_url is not None
    budget = budget_of(cfg)
    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else None
    model = OpenAICompatible(cfg.base_url, key, cfg.model, min(cfg.timeout_s, cfg.max_seconds))
    toolbox = Toolbox(sources, report.scope, max_result_chars=budget.max_result_chars,
                      max_diff_file_chars=budget.max_diff_file_chars, max_diff_chars=budget.max_diff_chars)
    try:
        return await Investigator(model, toolbox, budget, Redactor(enabled=cfg.redact),
                                  on_call=on_call, on_step=on_step).run(report)
    finally:
        await model.aclose()
