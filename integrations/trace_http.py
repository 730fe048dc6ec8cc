"""What the HTTP trace sources (Tempo, Jaeger) share: their client, limits, Grafana links and lifecycle."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from integrations.grafana import GrafanaLinks
from integrations.http import HttpSource, config_from_settings
from integrations.settings import TraceSourceSettings


def status_from_http(code: Any) -> str:
    """A span's status from the HTTP answer it recorded: "error" for 5xx, "ok" otherwise, "" when none or unreadable.
    For spans whose tracer left the status unset (Jaeger tags, OTLP status UNSET)."""
    try:
        return "" if code is None else ("error" if int(code) >= 500 else "ok")
    except (TypeError, ValueError):
        return ""


class HttpTraceSource:
    kind: ClassVar[str]

    def __init__(self, http: HttpSource, *, base_url: str, max_traces: int = 200, slow_ms: float = 1000.0,
                 grafana: GrafanaLinks | None = None, name: str | None = None):
        self.name = name or self.kind
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.max_traces = max_traces
        self.slow_ms = slow_ms
        self.grafana = grafana

    @classmethod
    def from_settings(cls, s: TraceSourceSettings, *, grafana: GrafanaLinks | None = None) -> Self:
        http = HttpSource(cls.kind, config_from_settings(s, s.url, where="sources.traces"))
        return cls(http, base_url=s.url, max_traces=s.max_traces, slow_ms=s.slow_ms, grafana=grafana)

    async def aclose(self) -> None:
        await self.http.aclose()
