"""Prometheus HTTP API (also Thanos, Mimir, VictoriaMetrics): instant and range queries, series and label
discovery, and the ``MetricsSource`` that turns a catalog signal into one query grouped by service.

The step of a range query is chosen so that no series returns more than ``max_points`` points; the rate
window follows the step so a coarse step never samples holes between rate windows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from integrations.base import (
    ProfileInventory,
    Series,
    SignalInventory,
    SourceBadResponse,
    SourceRejected,
    TimeWindow,
)
from integrations.catalog import Catalog, promql_string
from integrations.grafana import GrafanaLinks
from integrations.http import HttpSource, expect

# Names Prometheus writes about itself: never offered as signals.
_INTERNAL = re.compile(r"^(up|scrape_.*|prometheus_.*|go_.*|process_.*|promhttp_.*|net_conntrack_.*)$")


@dataclass(frozen=True, slots=True)
class PromSeries:
    labels: dict[str, str]
    points: list[tuple[float, float]]


def choose_step(window: TimeWindow, max_points: int, min_step_s: float) -> float:
    """The smallest whole-second step >= ``min_step_s`` giving at most ``max_points`` points in ``window``."""
    need = window.seconds / max(1, max_points - 1)
    step = max(min_step_s, need)
    if step >= 1:
        step = float(math.ceil(step))
    while window.seconds / step + 1 > max_points:
        step += 1
    return step


def _value(raw: Any) -> float:
    return float(raw)  # Prometheus sends "NaN", "+Inf", "-Inf" as strings, which float() reads


def _fmt_time(t: float) -> str:
    return f"{t:.3f}".rstrip("0").rstrip(".")


class PrometheusClient:
    """The raw HTTP API. Every method raises a ``SourceError`` subclass on failure."""

    def __init__(self, http: HttpSource, *, query_timeout_s: float | None = None):
        self.http = http
        self.name = http.name
        self.query_timeout_s = query_timeout_s or http.cfg.timeout_s

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _api(self, path: str, params: dict[str, Any] | list[tuple[str, Any]]) -> Any:
        # POST form keeps long PromQL out of URL length limits; every flavour of the API accepts it.
        if isinstance(params, dict):
            doc = await self.http.post_form_json(path, params)
        else:
            doc = await self.http.get_json(path, params)
        expect(self.name, isinstance(doc, dict) and "status" in doc, "no status field")
        if doc["status"] != "success":
            raise SourceRejected(self.name, f"{doc.get('errorType', 'error')}: {doc.get('error', '(no message)')}")
        return doc.get("data")

    def _timeout(self) -> str:
        return f"{max(1, int(self.query_timeout_s))}s"

    async def query(self, expr: str, at: float | None = None) -> list[PromSeries]:
        """Instant query: one point per series (vector or scalar results)."""
        params: dict[str, Any] = {"query": expr, "timeout": self._timeout()}
        if at is not None:
            params["time"] = _fmt_time(at)
        data = await self._api("/api/v1/query", params)
        expect(self.name, isinstance(data, dict) and "resultType" in data, "query data has no resultType")
        kind, result = data["resultType"], data.get("result")
        try:
            if kind == "vector":
                return [PromSeries(dict(r["metric"]), [(float(r["value"][0]), _value(r["value"][1]))]) for r in result]
            if kind == "scalar":
                return [PromSeries({}, [(float(result[0]), _value(result[1]))])]
            if kind == "matrix":
                return [_matrix_series(r) for r in result]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise _bad(self.name, f"{kind} result", exc) from None
        raise _bad(self.name, "query result", ValueError(f"resultType {kind!r}"))

    async def query_range(self, expr: str, start: float, end: float, step: float) -> list[PromSeries]:
        params = {"query": expr, "start": _fmt_time(start), "end": _fmt_time(end), "step": _fmt_time(step),
                  "timeout": self._timeout()}
        data = await self._api("/api/v1/query_range", params)
        expect(self.name, isinstance(data, dict) and data.get("resultType") == "matrix", "range result is not a matrix")
        try:
            return [_matrix_series(r) for r in data.get("result") or []]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise _bad(self.name, "matrix result", exc) from None

    async def series(self, matchers: Sequence[str], window: TimeWindow | None = None) -> list[dict[str, str]]:
        params: list[tuple[str, Any]] = [("match[]", m) for m in matchers]
        if window is not None:
            params += [("start", _fmt_time(window.start)), ("end", _fmt_time(window.end))]
        data = await self._api("/api/v1/series", params)
        expect(self.name, isinstance(data, list), "series data is not a list")
        return [dict(d) for d in data]

    async def labels(self, window: TimeWindow | None = None, matchers: Sequence[str] = ()) -> list[str]:
        params = _discovery_params(window, matchers)
        data = await self._api("/api/v1/labels", params)
        expect(self.name, isinstance(data, list), "labels data is not a list")
        return [str(x) for x in data]

    async def label_values(self, label: str, window: TimeWindow | None = None, matchers: Sequence[str] = ()) -> list[str]:
        params = _discovery_params(window, matchers)
        data = await self._api(f"/api/v1/label/{label}/values", params)
        expect(self.name, isinstance(data, list), "label values data is not a list")
        return [str(x) for x in data]


def _discovery_params(window: TimeWindow | None, matchers: Sequence[str]) -> list[tuple[str, Any]]:
    params: list[tuple[str, Any]] = [("match[]", m) for m in matchers]
    if window is not None:
        params += [("start", _fmt_time(window.start)), ("end", _fmt_time(window.end))]
    return params


def _matrix_series(r: dict[str, Any]) -> PromSeries:
    return PromSeries(dict(r["metric"]), [(float(t), _value(v)) for t, v in r["values"]])


def _bad(name: str, what: str, exc: Exception) -> Exception:
    return SourceBadResponse(name, f"malformed {what}: {type(exc).__name__}: {exc}")


class PrometheusSource:
    """``MetricsSource`` over Prometheus: one range query per signal, grouped by the catalog's service label."""

    def __init__(
        self,
        client: PrometheusClient,
        catalog: Catalog,
        *,
        base_url: str,
        max_points: int = 600,
        min_step_s: float = 15.0,
        rate_window_s: int = 120,
        service_label: str | None = None,
        grafana: GrafanaLinks | None = None,
        name: str = "prometheus",
    ):
        self.name = name
        self.client = client
        self.catalog = catalog
        self.base_url = base_url.rstrip("/")
        self.max_points = max_points
        self.min_step_s = min_step_s
        self.rate_window_s = rate_window_s
        self.service_label = service_label  # a settings override for every signal; None: each signal's own
        self.grafana = grafana

    async def aclose(self) -> None:
        await self.client.aclose()

    def plan(self, signal: str, window: TimeWindow, services: Sequence[str] | None = None) -> tuple[str, float]:
        """(PromQL, step) for one signal over one window."""
        step = choose_step(window, self.max_points, self.min_step_s)
        rate = max(self.rate_window_s, int(math.ceil(2 * step)))
        try:
            expr = self.catalog.render(signal, services, rate_s=rate, by=self.label_for(signal))
        except KeyError as exc:
            raise SourceRejected(self.name, str(exc.args[0])) from None
        return expr, step

    def label_for(self, signal: str) -> str:
        """The label naming the service in ``signal``'s results: the override, else the signal's profile's."""
        return self.service_label or self.catalog.label_for(signal)

    async def signal(self, signal: str, window: TimeWindow, services: Sequence[str] | None = None) -> list[Series]:
        expr, step = self.plan(signal, window, services)
        # Align the grid on multiples of the step so repeated queries over sliding windows line up.
        start = math.ceil(window.start / step) * step
        if start > window.end:
            return []
        raw = await self.client.query_range(expr, start, window.end, step)
        label = self.label_for(signal)
        out: list[Series] = []
        for s in raw:
            pts = [(t, v) for t, v in s.points if math.isfinite(v)]
            if pts:  # a series without the label comes back with service "": the investigation counts and drops it
                out.append(Series(s.labels.get(label, ""), signal, pts, query=expr))
        out.sort(key=lambda s: s.service)
        return out

    async def pending_since(self, labels: Mapping[str, str], at: float) -> float | None:
        """When the alerting rule behind an alert with ``labels`` became active: ``ALERTS_FOR_STATE`` at ``at``.

        Prometheus keeps that series for every active alert, its value the time the rule's condition first
        held (before its ``for:`` had passed). The alert as Alertmanager sends it may carry external labels
        the series lacks, so the series whose own labels all match the alert's are the alert's."""
        name = labels.get("alertname", "")
        if not name:
            return None
        rows = await self.client.query(f"ALERTS_FOR_STATE{{alertname={promql_string(name)}}}", at=at)
        times = [v for r in rows if all(labels.get(k) == val for k, val in r.labels.items() if k != "__name__")
                 for _, v in r.points if math.isfinite(v) and 0 < v <= at]
        return min(times) if times else None

    async def available_signals(self) -> list[str]:
        """Catalog signals whose metrics exist in the TSDB, or every metric name for a fallback catalog."""
        return list((await self.inventory()).signals)

    async def inventory(self) -> SignalInventory:
        """One listing of the metric names, read against every profile of the catalog."""
        names = set(await self.client.label_values("__name__"))
        return inventory_of(self.catalog, names, self.service_label)

    def link(self, signal: str, window: TimeWindow) -> str:
        expr, step = self.plan(signal, window)
        if self.grafana is not None:
            return self.grafana.metrics(expr, window)
        params = {
            "g0.expr": expr,
            "g0.tab": "0",
            "g0.range_input": f"{max(1, int(window.seconds))}s",
            "g0.end_input": _iso(window.end),
            "g0.step_input": _fmt_time(step),
        }
        return f"{self.base_url}/graph?{urlencode(params)}"


def metrics_of(query: str) -> set[str]:
    """The metric names a PromQL template selects (``name{...}``)."""
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", query))


def inventory_of(catalog: Catalog, names: set[str], service_label: str | None = None) -> SignalInventory:
    """Which signals of ``catalog`` the metric ``names`` can answer, profile by profile.

    A signal exists when every metric its template selects exists; a fallback profile turns each
    metric name into a signal.
    """
    own = sorted(n for n in names if not _INTERNAL.match(n))
    exists = {sig for sig, spec in catalog.signals.items() if (m := metrics_of(spec.query)) and m <= names}
    found = set(exists)
    if catalog.fallback is not None:
        found |= {n for n in own if catalog.knows(n)}
    profiles = []
    for p in catalog.profiles:
        if p.fallback:
            hits = tuple(n for n in own if catalog.knows(n))
            profiles.append(ProfileInventory(p.name, service_label or p.service_label, hits, hits, fallback=True))
        else:
            profiles.append(ProfileInventory(p.name, service_label or p.service_label, p.signals,
                                             tuple(s for s in p.signals if s in exists)))
    labels = {sig: service_label or catalog.label_for(sig) for sig in found}
    return SignalInventory(tuple(sorted(found)), catalog.name, tuple(profiles), tuple(own), labels)


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
