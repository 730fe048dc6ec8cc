"""``SliPort`` over Prometheus: an SLO's error-ratio queries as instant queries, its signal through the catalog.

Each query of ``bot.slo.evaluate`` aggregates to one series (``sum``, ``max``), so an answer is one value,
no series (no data) or NaN (``0 / 0``: nothing was served in the window, also no data). The client's typed
``SourceError``s become ``SliQueryFailed`` with the source's own message, so the domain never sees HTTP.
"""

from __future__ import annotations

import math

from bot.errors import ConfigError
from bot.slo.evaluate import SliQueryFailed
from bot.slo.model import SLO
from bot.slo.sli import signal_query
from integrations.base import MetricsSource, SourceError
from integrations.catalog import Catalog
from integrations.http import HttpSource, config_from_settings
from integrations.prometheus import PrometheusClient, PrometheusSource
from integrations.settings import MetricsSourceSettings


class PrometheusSli:
    """The SLI port over one Prometheus (or Thanos, Mimir, VictoriaMetrics) HTTP API."""

    def __init__(self, client: PrometheusClient, catalog: Catalog | None, url: str):
        self.client = client
        self.catalog = catalog
        self.url = url

    @classmethod
    def from_settings(cls, s: MetricsSourceSettings, catalog: Catalog | None = None) -> PrometheusSli:
        """The port for ``sources.metrics`` (what ``onwatch slo status`` reads), with its catalog unless one is
        given; ``ConfigError`` on a bad catalog or a missing credential."""
        catalog = catalog if catalog is not None else Catalog.load(s.catalog, s.signals)
        http = HttpSource("prometheus", config_from_settings(s, s.url, where="sources.metrics"))
        return cls(PrometheusClient(http), catalog, s.url)

    @classmethod
    def from_source(cls, source: MetricsSource | None) -> PrometheusSli | None:
        """The port over the application's metrics source, when it is a Prometheus (else ``None``)."""
        if not isinstance(source, PrometheusSource):
            return None
        return cls(source.client, source.catalog, source.base_url)

    async def aclose(self) -> None:
        await self.client.aclose()

    def signal_query(self, slo: SLO) -> str:
        try:
            query = signal_query(slo, self.catalog)
        except ConfigError as exc:
            raise SliQueryFailed("; ".join(exc.errors)) from None
        if query is None:
            raise SliQueryFailed(f"SLO {slo.name} measures no catalog signal")
        return query

    async def ratio(self, expr: str, at: float) -> float | None:
        try:
            rows = await self.client.query(expr, at=at)
        except SourceError as exc:
            where = "" if self.url in str(exc) else f" (at {self.url})"
            raise SliQueryFailed(f"{exc}{where}") from None
        values = [v for row in rows for _, v in row.points]
        if not values:
            return None
        if len(values) > 1:
            raise SliQueryFailed(f"{self.client.name}: {len(values)} series where one ratio belongs: {expr}")
        value = values[0]
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise SliQueryFailed(f"{self.client.name}: {value} is not a ratio: {expr}")
        return value
