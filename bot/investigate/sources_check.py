"""``onwatch sources check --config FILE``: the coverage an investigation would see, before the first incident.

It gathers from the configured sources exactly as an investigation does, over the last ``--window`` seconds
(or up to ``--at``), and prints which catalog signals exist per profile, which services carry a name, how
many samples fall in the window, and what to fix. Exit 0 when the coverage can support a ranking, 1 when it
cannot, 2 on bad settings or arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.config import load_settings
from bot.errors import ConfigError
from bot.investigate.coverage import Coverage, measure, refusal
from bot.investigate.look import Limits, gather
from bot.investigate.scope import ScopeError, parse_at
from integrations.base import TimeWindow
from integrations.registry import build_sources

SHOWN_SERVICES = 12


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def check(config: Path, window_s: float, at: float | None = None) -> dict[str, Any]:
    """The coverage of the configured sources over ``window_s`` seconds ending at ``at`` or the clock."""
    settings = load_settings(config)
    sources = build_sources(settings.sources)
    try:
        end = min(at, sources.clock()) if at is not None else sources.clock()
        window = TimeWindow(end - window_s, end)
        g = await gather(sources, window, Limits(timeout_s=30.0, concurrency=4))
    finally:
        await sources.aclose()
    cov = measure(g, sources, {"window": window})
    why = refusal(cov)
    return {"ready": not why, "reason": why, "failures": sorted(set(g.missing)), "coverage": cov.to_dict(),
            "_coverage": cov}


def render(result: dict[str, Any]) -> str:
    cov: Coverage = result["_coverage"]
    w = cov.windows["window"]
    out = [f"Sources checked from {_iso(w.start)} to {_iso(w.end)}"]
    for s in cov.sources:
        if not s.configured:
            out.append(f"{s.source}: not configured")
            continue
        state = "answered" if s.answered else "did not answer"
        head = f"{s.source}: {state}"
        if s.source == "metrics" and cov.catalog:
            head += f"; catalog {cov.catalog}, {cov.metric_names} metric names in the store"
        out.append(head)
        if s.source == "metrics":
            for p in cov.profiles:
                if p.fallback:
                    out.append(f"  profile {p.profile} (service label {p.service_label}): every metric name is a "
                               f"signal; {len(p.found)} found")
                else:
                    found = f": {', '.join(p.found)}" if p.found else ""
                    out.append(f"  profile {p.profile} (service label {p.service_label}): "
                               f"{len(p.found)} of {p.signals} signals found{found}")
        if s.source in ("metrics", "logs", "traces"):
            names = ", ".join(s.services[:SHOWN_SERVICES]) + (", …" if len(s.services) > SHOWN_SERVICES else "")
            out.append(f"  {len(s.services)} named services{': ' + names if names else ''}; "
                       f"{s.samples.get('window', 0)} samples in the window"
                       + (f"; {s.unnamed} without a service name (left out)" if s.unnamed else ""))
        else:
            out.append("  " + ", ".join(f"{v} {k}" for k, v in s.samples.items() if k != "window"))
    failures = [f for f in result["failures"] if not f.endswith("source configured")]  # shown above
    problems = failures + [m for m in cov.missing if m not in failures]
    if problems:
        out.append("")
        out.append("To fix:")
        out += [f"  - {p}" for p in problems]
    out.append("")
    out.append("Ready: investigations can rank causes on these sources." if result["ready"]
               else f"Not ready: {result['reason']}")
    return "\n".join(out)


def main(args: argparse.Namespace) -> int:
    config = getattr(args, "config", None)
    if not config:
        print("onwatch sources check: give --config FILE", file=sys.stderr)
        return 2
    try:
        at = parse_at(getattr(args, "at", None))
        window_s = float(getattr(args, "window", 3600.0))
        if not window_s > 0:
            raise ScopeError("--window must be a positive number of seconds")
        result = asyncio.run(check(Path(config), window_s, at))
    except (ConfigError, ScopeError) as exc:
        print(f"onwatch sources check: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2))
    else:
        print(render(result))
    return 0 if result["ready"] else 1
