"""``onwatch slo rules`` and ``onwatch slo status``.

``rules``: for teams that prefer to alert in Prometheus, the same multiwindow, multi-burn-rate policy onwatch
applies, written as a rule file (``promtool check rules`` accepts it). A signal SLI is resolved to its PromQL
through the metrics source's catalog, as an investigation would query it.

``status``: each SLO as onwatch's own check sees it now (``bot.slo.evaluate``): budget left, the burn of
every window pair and the state, read from ``sources.metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.investigate.scope import ScopeError, parse_at
from bot.messages.format import terminal_line
from bot.slo.check import fmt_budget, fmt_burn
from bot.slo.evaluate import SloStatus, evaluate_slo
from bot.slo.model import SLO
from bot.slo.prom import PrometheusSli
from bot.slo.rules import prom_duration, rules
from bot.slo.sli import signal_query
from integrations.catalog import Catalog


def _reasons(exc: ConfigError) -> str:
    return "; ".join(exc.errors)


def _settings_with_slos(args: argparse.Namespace) -> Settings:
    """The settings, or ``ConfigError`` when they hold no SLO to work on."""
    settings = load_settings(getattr(args, "config", None))
    if not settings.slos:
        raise ConfigError(["no slos: in the settings"])
    return settings


def rules_main(args: argparse.Namespace) -> int:
    """Print one rule file with a group per SLO; exit 2 with the reason when the settings cannot say."""
    try:
        settings = _settings_with_slos(args)
        m = settings.sources.metrics
        catalog = Catalog.load(m.catalog, m.signals) if m is not None else None
        files = [rules(slo, signal_query(slo, catalog)) for slo in settings.slos]
    except ConfigError as exc:
        print(f"onwatch slo rules: {_reasons(exc)}", file=sys.stderr)
        return 2
    groups = [line for text in files for line in text.splitlines()[1:]]  # each file starts with "groups:"
    print("\n".join(["groups:", *groups]))
    return 0


async def _statuses(sli: PrometheusSli, slos: list[SLO], at: float) -> list[SloStatus]:
    try:
        return list(await asyncio.gather(*(evaluate_slo(s, sli, at) for s in slos)))
    finally:
        await sli.aclose()


def _pair_cell(long_s: float, short_s: float, long_burn: float | None, short_burn: float | None) -> str:
    def one(w: float, b: float | None) -> str:
        return f"{prom_duration(w)} {'-' if b is None else fmt_burn(b)}"
    return f"{one(long_s, long_burn)} / {one(short_s, short_burn)}"


def status_json(st: SloStatus) -> dict[str, Any]:
    slo = st.slo
    return {
        "name": slo.name, "service": slo.service, "objective": slo.objective, "period": slo.period,
        "state": str(st.state), "budget_left": st.budget_left, "at": st.at,
        "pairs": [{"long": prom_duration(p.window.long), "short": prom_duration(p.window.short),
                   "factor": p.window.factor, "severity": p.window.severity, "long_burn": p.long_burn,
                   "short_burn": p.short_burn, "fires": p.fires} for p in st.decision.pairs],
        "no_data": [prom_duration(w) for w in st.no_data],
        "errors": {prom_duration(w): why for w, why in st.errors.items()},
    }


def status_table(statuses: list[SloStatus]) -> str:
    """One row per SLO; each pair's cell is ``long burn / short burn`` (``-``: no data), headed by its factor."""
    factors = [f"{p.window.severity.upper()} {p.window.factor:g}x" for p in statuses[0].decision.pairs]
    head = ["SLO", "SERVICE", "OBJECTIVE", "PERIOD", "BUDGET LEFT", *factors, "STATE"]
    rows = [[st.slo.name, st.slo.service, f"{st.slo.objective:g}", st.slo.period, fmt_budget(st.budget_left),
             *(_pair_cell(p.window.long, p.window.short, p.long_burn, p.short_burn) for p in st.decision.pairs),
             str(st.state)] for st in statuses]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    for st in statuses:
        lines += [f"{st.slo.name}: {prom_duration(w)}: {terminal_line(why)}" for w, why in st.errors.items()]
    return "\n".join(lines)


def status_main(args: argparse.Namespace) -> int:
    """Print each SLO's budget, burns and state; exit 2 when there is nothing to read or Prometheus cannot be."""
    try:
        settings = _settings_with_slos(args)
        m = settings.sources.metrics
        if m is None:
            raise ConfigError(["no sources.metrics in the settings: the SLIs are read from Prometheus"])
        catalog = Catalog.load(m.catalog, m.signals)
        for slo in settings.slos:  # a signal the catalog lacks is a settings error, said before any query
            signal_query(slo, catalog)
        sli = PrometheusSli.from_settings(m, catalog)
    except ConfigError as exc:
        print(f"onwatch slo status: {_reasons(exc)}", file=sys.stderr)
        return 2
    try:
        at = parse_at(getattr(args, "at", None))
    except ScopeError as exc:
        print(f"onwatch slo status: {exc}", file=sys.stderr)
        return 2
    at = time.time() if at is None else at
    statuses = asyncio.run(_statuses(sli, list(settings.slos), at))
    if all(st.errors and not st.ratios and not st.no_data for st in statuses):
        first = next(iter(statuses[0].errors.values()))
        print(f"onwatch slo status: cannot read the SLIs from {sli.url}: {terminal_line(first)}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps([status_json(st) for st in statuses], indent=2))
    else:
        print(status_table(statuses))
    return 0
