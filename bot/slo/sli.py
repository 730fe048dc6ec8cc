"""A signal SLI's PromQL: the catalog signal an SLO names, rendered for its service.

The rule file (``onwatch slo rules``) and onwatch's own evaluation resolve it here, so Prometheus' rules and
onwatch's check measure the same series.
"""

from __future__ import annotations

from bot.errors import ConfigError
from bot.slo.model import SLO
from integrations.catalog import Catalog

SIGNAL_RATE_S = 300  # the rate() window inside a catalog signal: five minutes, as dashboards use


def signal_query(slo: SLO, catalog: Catalog | None) -> str | None:
    """The PromQL of ``slo``'s signal (``None`` for an event-ratio SLO); ``ConfigError`` naming the SLO when the
    catalog is missing or does not know the signal."""
    if slo.signal is None:
        return None
    if catalog is None:
        raise ConfigError([f"slos: {slo.name} measures the catalog signal {slo.signal}, but no sources.metrics "
                           "catalog is configured"])
    try:
        return catalog.render(slo.signal, [slo.service], rate_s=SIGNAL_RATE_S)
    except KeyError:
        raise ConfigError([f"slos: {slo.name} names the signal {slo.signal}, which the catalog does not have"]) from None
