"""Loki: error-line counts per service over time and a capped sample of lines (LogQL ``query_range``)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from integrations.base import LogLine, Series, SourceBadResponse, SourceRejected, TimeWindow
from integrations.catalog import promql_string
from integrations.grafana import GrafanaLinks
from integrations.http import HttpSource, config_from_settings, expect
from integrations.prometheus import choose_step
from integrations.settings import LogSourceSettings

_LEVEL_LABELS = ("level", "detected_level", "severity", "severity_text", "lvl")
_LEVEL_IN_LINE = re.compile(r"""(?:\b(?:level|lvl|severity)["']?\s*[=:]\s*["']?([A-Za-z]+))|^\W*([A-Z]{4,8})\b""")
_TRACE_IN_LINE = re.compile(r"""\b(?:trace_?id|traceID)["']?\s*[=:]\s*["']?([0-9a-fA-F]{16,32})""")
_LEVELS = {"debug": "DEBUG", "trace": "DEBUG", "info": "INFO", "notice": "INFO", "warn": "WARN", "warning": "WARN",
           "error": "ERROR", "err": "ERROR", "critical": "FATAL", "crit": "FATAL", "fatal": "FATAL",
           "panic": "FATAL", "emergency": "FATAL", "alert": "FATAL"}


def _level(labels: dict[str, str], line: str) -> str:
    for key in _LEVEL_LABELS:
        if key in labels:
            return _LEVELS.get(labels[key].lower(), "")
    m = _LEVEL_IN_LINE.search(line[:300])
    if m:
        return _LEVELS.get((m.group(1) or m.group(2) or "").lower(), "")
    return ""


class LokiSource:
    """``LogSource`` over Loki's HTTP API."""

    def __init__(self, http: HttpSource, *, base_url: str, service_label: str = "service", selector: str = "",
                 error_filter: str = "(?i)(error|fatal|panic|exception)", max_lines: int = 2000,
                 max_points: int = 300, grafana: GrafanaLinks | None = None, name: str = "loki"):
        self.name = name
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.service_label = service_label
        self.selector = selector.strip().strip("{}").strip().rstrip(",")
        self.error_filter = error_filter
        self.max_lines = max_lines
        self.max_points = max_points
        self.grafana = grafana

    @classmethod
    def from_settings(cls, s: LogSourceSettings, *, grafana: GrafanaLinks | None = None) -> LokiSource:
        http = HttpSource("loki", config_from_settings(s, s.url, where="sources.logs"))
        return cls(http, base_url=s.url, service_label=s.service_label, selector=s.selector,
                   error_filter=s.error_filter, max_lines=s.max_lines, max_points=s.max_points, grafana=grafana)

    async def aclose(self) -> None:
        await self.http.aclose()

    # ---------------------------------------------------------------- LogQL

    def stream_selector(self, services: Sequence[str] | None) -> str:
        label = self.service_label
        if not services:
            matcher = f'{label}=~".+"'
        elif len(services) == 1:
            matcher = f"{label}={promql_string(services[0])}"
        else:
            matcher = f"{label}=~{promql_string('|'.join(re.escape(s) for s in sorted(set(services))))}"
        return "{" + ", ".join(x for x in (matcher, self.selector) if x) + "}"

    def error_query(self, services: Sequence[str] | None, step_s: float | None = None) -> str:
        stream = f"{self.stream_selector(services)} |~ {promql_string(self.error_filter)}"
        if step_s is None:
            return stream
        return f"sum by ({self.service_label}) (count_over_time({stream} [{int(step_s)}s]))"

    async def _query_range(self, query: str, window: TimeWindow, **extra: Any) -> dict[str, Any]:
        params = {"query": query, "start": str(int(window.start * 1e9)), "end": str(int(window.end * 1e9)), **extra}
        doc = await self.http.get_json("/loki/api/v1/query_range", params)
        expect(self.name, isinstance(doc, dict) and isinstance(doc.get("data"), dict), "no data object")
        if doc.get("status") not in (None, "success"):
            raise SourceRejected(self.name, str(doc.get("error", doc.get("status"))))
        data: dict[str, Any] = doc["data"]
        return data

    # ---------------------------------------------------------------- LogSource

    async def error_counts(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[Series]:
        step = max(1.0, choose_step(window, self.max_points, 1.0))
        query = self.error_query(services, step)
        start = math.floor(window.start / step) * step + step  # each point counts the step that ends at it
        if start > window.end:
            return []
        data = await self._query_range(query, TimeWindow(start, window.end), step=f"{int(step)}s")
        expect(self.name, data.get("resultType") == "matrix", f"resultType {data.get('resultType')!r}, not matrix")
        grid = [start + i * step for i in range(int((window.end - start) // step) + 1)]
        out: list[Series] = []
        try:
            for r in data.get("result") or []:
                got = {float(t): float(v) for t, v in r["values"]}
                svc = r["metric"].get(self.service_label, "")
                # Loki leaves out steps with no matching line: those are zero errors, not unknown.
                out.append(Series(svc, "log_errors", [(t, got.get(t, 0.0)) for t in grid], query=query))
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceBadResponse(self.name, f"malformed matrix: {exc!r}") from None
        return sorted(out, key=lambda s: s.service)

    async def lines(self, window: TimeWindow, services: Sequence[str] | None = None,
                    limit: int = 1000) -> list[LogLine]:
        """Up to ``limit`` lines, the newest first chosen: error lines, then any lines to fill the rest."""
        limit = max(1, min(limit, self.max_lines))
        found = await self._lines(self.error_query(services), window, limit)
        if len(found) < limit:
            seen = {(ln.time, ln.service, ln.message) for ln in found}
            more = await self._lines(self.stream_selector(services), window, limit)
            found += [ln for ln in more if (ln.time, ln.service, ln.message) not in seen][: limit - len(found)]
        return sorted(found, key=lambda ln: (ln.time, ln.service))

    async def _lines(self, query: str, window: TimeWindow, limit: int) -> list[LogLine]:
        data = await self._query_range(query, window, limit=str(limit), direction="backward")
        expect(self.name, data.get("resultType") == "streams", f"resultType {data.get('resultType')!r}, not streams")
        out: list[LogLine] = []
        try:
            for stream in data.get("result") or []:
                labels = {str(k): str(v) for k, v in stream["stream"].items()}
                svc = labels.get(self.service_label, "")
                for ts, line in stream["values"]:
                    text = str(line).replace("\n", " ")
                    m = _TRACE_IN_LINE.search(text)
                    out.append(LogLine(int(ts) / 1e9, svc, _level(labels, text), text, m.group(1) if m else ""))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SourceBadResponse(self.name, f"malformed streams: {exc!r}") from None
        out.sort(key=lambda ln: ln.time, reverse=True)
        return out[:limit]

    def link(self, service: str, window: TimeWindow) -> str:
        query = self.stream_selector([service])
        if self.grafana is not None:
            return self.grafana.logs(query, window)
        params = {"query": query, "start": str(int(window.start * 1e9)), "end": str(int(window.end * 1e9))}
        return f"{self.base_url}/loki/api/v1/query_range?{urlencode(params)}"
