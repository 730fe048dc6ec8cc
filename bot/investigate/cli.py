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

from bot.config import load_settings
from bot.errors import ConfigError
from bot.investigate.engine import investigate
from bot.investigate.llm import cli as llm_cli
from bot.investigate.report import Report, render_text
from bot.investigate.scope import ScopeError, anchored_scope, parse_at
from integrations.base import Sources
from integrations.registry import build_sources
from integrations.replay import BundleError, ReplayCase, replay_sources


async def run_case(case_dir: str | Path, at: float | None = None) -> Report:
    """Investigate one case folder with the replay source; the clock is the end of the case."""
    case = ReplayCase(case_dir)
    scope = anchored_scope(case.alert_payload, case.now, at=at, incident_id=case.id)
    sources = replay_sources(case)
    try:
        return await investigate(scope, sources)
    finally:
        await sources.aclose()


async def _run_live(alert_path: Path, config_path: Path, at: float | None = None) -> Report:
    settings = load_settings(config_path)
    text = await asyncio.to_thread(alert_path.read_text, encoding="utf-8")
    payload: Any = json.loads(text)
    sources: Sources = build_sources(settings.sources)
    scope = anchored_scope(payload, sources.clock(), at=at, topology=settings.triage.topology,
                           owners=settings.triage.owners)
    try:
        return await investigate(scope, sources)
    finally:
        await sources.aclose()


def main(args: argparse.Namespace) -> int:
    case = getattr(args, "case", None)
    alert = getattr(args, "alert", None)
    config = getattr(args, "config", None)
    try:
        at = parse_at(getattr(args, "at", None))
        if case:
            report = asyncio.run(run_case(case, at))
        elif alert and config:
            report = asyncio.run(_run_live(Path(alert), Path(config), at))
        else:
            print("onwatch investigate: give --case DIR, or --alert FILE with --config FILE", file=sys.stderr)
            return 2
        llm = asyncio.run(llm_cli.for_report(report, case=Path(case) if case else None,
                                             config=Path(config) if config else None))
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
