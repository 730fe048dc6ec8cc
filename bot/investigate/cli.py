"""``onwatch investigate``: one investigation on a case bundle (replay) or on live sources.

Both paths anchor the window the same way (``bot.investigate.scope.window_end``): on the alert's start plus
the lookahead, or on ``--at TIME``, never past the source's clock (the case's end, or the wall clock).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bot.config import LlmSettings, Settings, load_settings
from bot.errors import ConfigError
from bot.investigate.engine import investigate
from bot.investigate.llm import cli as llm_cli
from bot.investigate.llm.loop import LlmOutcome, off
from bot.investigate.report import Report, render_text
from bot.investigate.scope import Scope, ScopeError, anchored_scope, parse_at
from integrations.base import Sources
from integrations.registry import build_sources
from integrations.replay import BundleError, ReplayCase, replay_sources


async def _with_sources(scope: Scope, sources: Sources, llm: LlmSettings | None) -> tuple[Report, LlmOutcome]:
    """The engine's report, then (when ``llm`` is configured) the model's reading over the same sources."""
    try:
        report = await investigate(scope, sources)
        outcome = await llm_cli.for_report(report, sources, llm) if llm is not None else off()
        return report, outcome
    finally:
        await sources.aclose()


async def investigate_case(case_dir: str | Path, at: float | None = None,
                           llm: LlmSettings | None = None) -> tuple[Report, LlmOutcome]:
    """Investigate one case folder with the replay source (the clock is the end of the case), and with the
    model too when ``llm`` is configured."""
    case = ReplayCase(case_dir)
    scope = anchored_scope(case.alert_payload, case.now, at=at, incident_id=case.id)
    return await _with_sources(scope, replay_sources(case), llm)


async def run_case(case_dir: str | Path, at: float | None = None) -> Report:
    """The engine's report on one case folder."""
    report, _ = await investigate_case(case_dir, at)
    return report


async def _run_live(alert_path: Path, settings: Settings, at: float | None = None) -> tuple[Report, LlmOutcome]:
    text = await asyncio.to_thread(alert_path.read_text, encoding="utf-8")
    payload: Any = json.loads(text)
    sources: Sources = build_sources(settings.sources)
    scope = anchored_scope(payload, sources.clock(), at=at, topology=settings.triage.topology,
                           owners=settings.triage.owners)
    return await _with_sources(scope, sources, settings.llm)


def main(args: argparse.Namespace) -> int:
    case = getattr(args, "case", None)
    alert = getattr(args, "alert", None)
    config = getattr(args, "config", None)
    try:
        at = parse_at(getattr(args, "at", None))
        if not case and not (alert and config):
            print("onwatch investigate: give --case DIR, or --alert FILE with --config FILE", file=sys.stderr)
            return 2
        settings = load_settings(config)
        if case:
            report, llm = asyncio.run(investigate_case(case, at, settings.llm))
        else:
            report, llm = asyncio.run(_run_live(Path(str(alert)), settings, at))
    except (BundleError, ScopeError, ConfigError) as exc:
        print(f"onwatch investigate: {exc}", file=sys.stderr)
        return 2
    except (OSError, json.JSONDecodeError) as exc:
        print(f"onwatch investigate: cannot read input: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps({**report.to_dict(), "llm": llm.to_dict()}, indent=2, sort_keys=False))
    else:
        print(render_text(report) + llm_cli.render_text(llm))
    return 0
