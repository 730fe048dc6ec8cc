"""Tempo: slow and failed traces for a service and window (TraceQL search), and a trace by id.

Search finds trace ids; each trace is then read whole (``/api/traces/<id>``, OTLP JSON) so the engine sees
every span with its service, operation, duration, status and parent, not only the spans that matched.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

from integrations.base import SourceBadResponse, SourceError, Span, TimeWindow, keep_whole_traces
from integrations.catalog import promql_string
from integrations.http import expect
from integrations.trace_http import HttpTraceSource, status_from_http

_HEX = re.compile(r"^[0-9a-fA-F]+$")


def hex_id(raw: Any, width: int) -> str:
    """Tempo carries ids in hex (search) or base64 (OTLP JSON traces); always answer lowercase, full-width hex."""
    s = str(raw or "")
    if not s:
        return ""
    if _HEX.match(s) and len(s) <= width:
        return s.lower().rjust(width, "0")  # Tempo search drops leading zeros
    try:
        decoded = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return s.lower()
    return decoded.hex().rjust(width, "0") if decoded else ""


def _attr(attrs: Any, key: str) -> Any:
    for a in attrs or []:
        if a.get("key") == key:
            v = a.get("value") or {}
            for kind in ("stringValue", "intValue", "boolValue", "doubleValue"):
                if kind in v:
                    return v[kind]
    return None


def _otlp_status(span: dict[str, Any]) -> str:
    code = (span.get("status") or {}).get("code")
    if code in (2, "STATUS_CODE_ERROR", "ERROR"):
        return "error"
    if code in (1, "STATUS_CODE_OK", "OK"):
        return "ok"
    # status UNSET: some instrumentations leave it so and record only the HTTP answer (as Jaeger reads it)
    attrs = span.get("attributes")
    return status_from_http(_attr(attrs, "http.response.status_code") or _attr(attrs, "http.status_code"))


def otlp_spans(doc: Any, source: str) -> list[Span]:
    """Spans of an OTLP JSON trace (Tempo v1 ``batches`` or v2 ``trace.resourceSpans``)."""
    if isinstance(doc, dict) and isinstance(doc.get("trace"), dict):
        doc = doc["trace"]
    expect(source, isinstance(doc, dict), "trace is not an object")
    batches = doc.get("batches", doc.get("resourceSpans"))
    expect(source, isinstance(batches, list), "trace has no batches/resourceSpans")
    out: list[Span] = []
    try:
        for b in batches:
            service = str(_attr((b.get("resource") or {}).get("attributes"), "service.name") or "")
            for scope in b.get("scopeSpans") or b.get("instrumentationLibrarySpans") or []:
                for sp in scope.get("spans") or []:
                    start = int(sp["startTimeUnixNano"])
                    end = int(sp.get("endTimeUnixNano") or start)
                    out.append(Span(
                        trace_id=hex_id(sp["traceId"], 32),
                        span_id=hex_id(sp["spanId"], 16),
                        parent_span_id=hex_id(sp.get("parentSpanId"), 16),
                        service=service,
                        operation=str(sp.get("name", "")),
                        start_time=start / 1e9,
                        duration_ms=max(0, end - start) / 1e6,
                        status=_otlp_status(sp),  # type: ignore[arg-type]
                    ))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SourceBadResponse(source, f"malformed OTLP span: {exc!r}") from None
    return out


async def gather_traces(fetch: Any, trace_ids: Sequence[str], source: str) -> list[Span]:
    """Read traces in parallel (the HTTP client bounds concurrency); a few lost traces do not sink the call."""
    results: dict[str, list[Span] | SourceError] = {}

    async def one(tid: str) -> None:
        try:
            results[tid] = await fetch(tid)
        except SourceError as exc:
            results[tid] = exc

    async with asyncio.TaskGroup() as tg:
        for tid in trace_ids:
            tg.create_task(one(tid))
    errors = [r for r in results.values() if isinstance(r, SourceError)]
    if trace_ids and len(errors) == len(trace_ids):
        raise errors[0]
    spans = [s for r in results.values() if not isinstance(r, SourceError) for s in r]
    spans.sort(key=lambda s: (s.start_time, s.trace_id, s.span_id))
    return spans


class TempoSource(HttpTraceSource):
    """``TraceSource`` over Tempo's HTTP API."""

    kind = "tempo"

    def traceql(self, services: Sequence[str] | None) -> str:
        """Failed or slow spans of the services: ``{ resource.service.name =~ "a|b" && (status = error || ...) }``."""
        cond = f"(status = error || duration >= {self.slow_ms:g}ms)"
        if services:
            names = sorted(set(services))
            svc = (f"resource.service.name = {promql_string(names[0])}" if len(names) == 1 else
                   f"resource.service.name =~ {promql_string('|'.join(re.escape(n) for n in names))}")
            cond = f"{svc} && {cond}"
        return "{ " + cond + " }"

    async def search(self, query: str, window: TimeWindow, limit: int) -> list[str]:
        """Trace ids matching a TraceQL query in the window."""
        params = {"q": query, "start": str(int(window.start)), "end": str(int(window.end) + 1),
                  "limit": str(limit), "spss": "3"}
        doc = await self.http.get_json("/api/search", params)
        expect(self.name, isinstance(doc, dict) and isinstance(doc.get("traces", []), list), "no traces list")
        ids: list[str] = []
        for t in doc.get("traces") or []:
            expect(self.name, isinstance(t, dict) and "traceID" in t, "search hit without traceID")
            ids.append(hex_id(t["traceID"], 32))
        return ids[:limit]

    async def spans(self, window: TimeWindow, services: Sequence[str] | None = None,
                    limit: int = 5000) -> list[Span]:
        ids = await self.search(self.traceql(services), window, self.max_traces)
        spans = await gather_traces(self.trace, ids, self.name)
        spans = [s for s in spans if window.start <= s.start_time <= window.end]
        return keep_whole_traces(spans, limit)

    async def trace(self, trace_id: str) -> list[Span]:
        doc = await self.http.get_json(f"/api/traces/{trace_id}", headers={"Accept": "application/json"})
        return otlp_spans(doc, self.name)

    def link(self, trace_id: str) -> str:
        if self.grafana is not None:
            return self.grafana.trace(trace_id)
        return f"{self.base_url}/api/traces/{trace_id}"
