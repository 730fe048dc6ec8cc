"""Jaeger query API (``/api/services``, ``/api/traces``): slow and failed traces for a service and window,
and a trace by id. Jaeger needs a service per search, so without one every known service is searched."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from integrations.base import SourceBadResponse, Span, TimeWindow, keep_whole_traces
from integrations.http import expect, run_all
from integrations.trace_http import HttpTraceSource, status_from_http

MAX_SERVICES = 50


def _tag(tags: Any, key: str) -> Any:
    for t in tags or []:
        if t.get("key") == key:
            return t.get("value")
    return None


def _status(tags: Any) -> str:
    err = _tag(tags, "error")
    if err is True or str(err).lower() == "true":
        return "error"
    code = str(_tag(tags, "otel.status_code") or "").upper()
    if code == "ERROR":
        return "error"
    if code == "OK":
        return "ok"
    return status_from_http(_tag(tags, "http.status_code") or _tag(tags, "http.response.status_code"))


def jaeger_spans(trace: Any, source: str) -> list[Span]:
    """Spans of one Jaeger JSON trace (``{"traceID", "spans", "processes"}``)."""
    out: list[Span] = []
    try:
        processes = trace.get("processes") or {}
        for sp in trace["spans"]:
            proc = processes.get(sp.get("processID"), {}) or sp.get("process") or {}
            parent = next((r["spanID"] for r in sp.get("references") or [] if r.get("refType") == "CHILD_OF"), "")
            out.append(Span(
                trace_id=str(sp["traceID"]).lower(),
                span_id=str(sp["spanID"]).lower(),
                parent_span_id=str(parent).lower(),
                service=str(proc.get("serviceName", "")),
                operation=str(sp.get("operationName", "")),
                start_time=int(sp["startTime"]) / 1e6,
                duration_ms=int(sp["duration"]) / 1e3,
                status=_status(sp.get("tags")),  # type: ignore[arg-type]
            ))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SourceBadResponse(source, f"malformed Jaeger span: {exc!r}") from None
    return out


class JaegerSource(HttpTraceSource):
    """``TraceSource`` over the Jaeger query service."""

    kind = "jaeger"

    async def services(self) -> list[str]:
        doc = await self.http.get_json("/api/services")
        expect(self.name, isinstance(doc, dict) and isinstance(doc.get("data") or [], list), "no services list")
        return sorted(str(s) for s in doc.get("data") or [])

    async def _search(self, service: str, window: TimeWindow, limit: int, *, failed: bool) -> list[dict[str, Any]]:
        params = {"service": service, "start": str(int(window.start * 1e6)), "end": str(int(window.end * 1e6)),
                  "limit": str(limit)}
        if failed:
            params["tags"] = json.dumps({"error": "true"})
        else:
            params["minDuration"] = f"{self.slow_ms:g}ms"
        doc = await self.http.get_json("/api/traces", params)
        expect(self.name, isinstance(doc, dict) and isinstance(doc.get("data") or [], list), "no traces list")
        data: list[dict[str, Any]] = doc.get("data") or []
        return data

    async def spans(self, window: TimeWindow, services: Sequence[str] | None = None,
                    limit: int = 5000) -> list[Span]:
        names = sorted(set(services)) if services else (await self.services())[:MAX_SERVICES]
        per_query = max(1, self.max_traces // max(1, 2 * len(names)))
        found = await run_all([self._search(n, window, per_query, failed=f) for n in names for f in (True, False)])
        seen: set[str] = set()
        spans: list[Span] = []
        for traces in found:
            for trace in traces:
                tid = str(trace.get("traceID", "")).lower()
                if tid in seen:
                    continue
                seen.add(tid)
                spans += jaeger_spans(trace, self.name)
        spans = [s for s in spans if window.start <= s.start_time <= window.end]
        spans.sort(key=lambda s: (s.start_time, s.trace_id, s.span_id))
        return keep_whole_traces(spans, limit)

    async def trace(self, trace_id: str) -> list[Span]:
        doc = await self.http.get_json(f"/api/traces/{trace_id}")
        expect(self.name, isinstance(doc, dict) and isinstance(doc.get("data"), list), "no trace data")
        out: list[Span] = []
        for trace in doc["data"]:
            out += jaeger_spans(trace, self.name)
        return sorted(out, key=lambda s: (s.start_time, s.span_id))

    def link(self, trace_id: str) -> str:
        if self.grafana is not None:
            return self.grafana.trace(trace_id)
        return f"{self.base_url}/trace/{trace_id}"
