"""``onwatch slo rules``: the configured SLOs as Prometheus recording and alerting rules.

For teams that prefer to alert in Prometheus: the same multiwindow, multi-burn-rate policy onwatch applies,
written as a rule file (``promtool check rules`` accepts it). A signal SLI is resolved to its PromQL through
the metrics source's catalog, as an investigation would query it.
"""

from __future__ import annotations

import argparse
import sys

from bot.config import load_settings
from bot.errors import ConfigError
from bot.slo.model import SLO
from bot.slo.rules import rules
from integrations.catalog import Catalog

RULES_RATE_S = 300  # the rate() window of a catalog signal inside a rule: five minutes, as dashboards use


def _signal_query(slo: SLO, catalog: Catalog | None) -> str | None:
    if slo.is_event_ratio:
        return None
    if catalog is None:
        raise ConfigError([f"slos: {slo.name} measures the catalog signal {slo.signal}, but no sources.metrics "
                           "catalog is configured"])
    assert slo.signal is not None
    try:
        return catalog.render(slo.signal, [slo.service], rate_s=RULES_RATE_S)
    except KeyError:
        raise ConfigError([f"slos: {slo.name} names the signal {slo.signal}, which the catalog does not have"]) from None


def rules_main(args: argparse.Namespace) -> int:
    """Print one rule file with a group per SLO; exit 2 with the reason when the settings cannot say."""
    try:
        settings = load_settings(getattr(args, "config", None))
        if not settings.slos:
            print("onwatch slo rules: no slos: in the settings", file=sys.stderr)
            return 2
        m = settings.sources.metrics
        catalog = Catalog.load(m.catalog, m.signals) if m is not None else None
        files = [rules(slo, _signal_query(slo, catalog)) for slo in settings.slos]
    except ConfigError as exc:
        print(f"onwatch slo rules: {exc}", file=sys.stderr)
        return 2
    groups = [line for text in files for line in text.splitlines()[1:]]  # each file starts with "groups:"
    print("\n".join(["groups:", *groups]))
    return 0
