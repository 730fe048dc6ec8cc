"""A fake Tempo: ``/api/search`` (the TraceQL shape onwatch sends) and ``/api/traces/<id>`` (OTLP JSON with
base64 ids, as Tempo answers with ``Accept: application/json``)."""

from __future__ import annotations

import base64
import json
import re

from aiohttp import web

from tests.fakes import new_app
from tests.fakes.traces import FakeSpan, by_trace

SPANS: web.AppKey[list[FakeSpan]] = web.AppKey("spans", list)
_SVC = re.compile(r'resource\.service\.name (=~|=) ("(?:[^"\\]|\\.)*")')
_DUR = re.compile(r"duration >= ([0-9.]+)ms")


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _matches(span: FakeSpan, q: str) -> bool:
    m = _SVC.search(q)
    if m:
        value = json.loads(m.group(2))
        if (m.group(1) == "=" and span.service != value) or (m.group(1) == "=~" and not re.fullmatch(value, span.service)):
            return False
    d = _DUR.search(q)
    slow = d is not None and span.duration_ns >= float(d.group(1)) * 1e6
    return ("status = error" in q and span.error) or slow


async def search(request: web.Request) -> web.Response:
    q = request.query["q"]
    if not q.startswith("{"):
        return web.json_response({"error": "parse error"}, status=400)
    start, end, limit = int(request.query["start"]), int(request.query["end"]), int(request.query.get("limit", "20"))
    out = []
    for tid, spans in by_trace(request.app[SPANS]).items():
        root = min(spans, key=lambda s: s.start_ns)
        if not start <= root.start_ns / 1e9 <= end:
            continue
        matched = [s for s in spans if _matches(s, q)]
        if not matched:
            continue
        out.append({
            "traceID": tid.lstrip("0") or "0",  # Tempo drops leading zeros in search results
            "rootServiceName": root.service, "rootTraceName": root.operation,
            "startTimeUnixNano": str(root.start_ns), "durationMs": root.duration_ns // 10**6,
            "spanSets": [{"spans": [{"spanID": s.span_id, "startTimeUnixNano": str(s.start_ns),
                                     "durationNanos": str(s.duration_ns)} for s in matched[:3]],
                          "matched": len(matched)}],
        })
    return web.json_response({"traces": out[:limit], "metrics": {"inspectedTraces": len(out)}})


async def trace(request: web.Request) -> web.Response:
    tid = request.match_info["trace_id"].lower().rjust(32, "0")
    spans = by_trace(request.app[SPANS]).get(tid)
    if not spans:
        return web.Response(status=404, text="trace not found")
    batches = []
    for service in sorted({s.service for s in spans}):
        batches.append({
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "scopeSpans": [{"scope": {"name": "fake"}, "spans": [{
                "traceId": _b64(s.trace_id), "spanId": _b64(s.span_id),
                **({"parentSpanId": _b64(s.parent)} if s.parent else {}),
                "name": s.operation, "kind": "SPAN_KIND_SERVER",
                "startTimeUnixNano": str(s.start_ns), "endTimeUnixNano": str(s.start_ns + s.duration_ns),
                "status": {"code": "STATUS_CODE_ERROR"} if s.error else {},
            } for s in spans if s.service == service]}],
        })
    return web.json_response({"batches": batches})


def make_app(spans: list[FakeSpan]) -> web.Application:
    app = new_app()
    app[SPANS] = spans
    app.router.add_get("/api/search", search)
    app.router.add_get("/api/traces/{trace_id}", trace)
    return app
