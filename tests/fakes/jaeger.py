"""A fake Jaeger query service: ``/api/services``, ``/api/traces`` (search) and ``/api/traces/<id>``."""

from __future__ import annotations

import json

from aiohttp import web

from tests.fakes import new_app
from tests.fakes.traces import FakeSpan, by_trace

SPANS: web.AppKey[list[FakeSpan]] = web.AppKey("spans", list)


def _trace_json(tid: str, spans: list[FakeSpan]) -> dict[str, object]:
    services = sorted({s.service for s in spans})
    pid = {svc: f"p{i + 1}" for i, svc in enumerate(services)}
    return {
        "traceID": tid,
        "spans": [{
            "traceID": s.trace_id, "spanID": s.span_id, "operationName": s.operation,
            "references": [{"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": s.parent}] if s.parent else [],
            "startTime": s.start_ns // 1000, "duration": s.duration_ns // 1000,
            "tags": [{"key": "error", "type": "bool", "value": True}] if s.error else
                    [{"key": "span.kind", "type": "string", "value": "server"}],
            "logs": [], "processID": pid[s.service], "warnings": None,
        } for s in spans],
        "processes": {p: {"serviceName": svc, "tags": []} for svc, p in pid.items()},
        "warnings": None,
    }


async def services(request: web.Request) -> web.Response:
    names = sorted({s.service for s in request.app[SPANS]})
    return web.json_response({"data": names, "total": len(names), "limit": 0, "offset": 0, "errors": None})


async def traces(request: web.Request) -> web.Response:
    q = request.query
    if "service" not in q:
        return web.json_response({"data": None, "errors": [{"code": 400, "msg": "parameter 'service' is required"}]},
                                 status=400)
    start, end, limit = int(q["start"]), int(q["end"]), int(q.get("limit", "20"))
    min_us = float(q["minDuration"].removesuffix("ms")) * 1000 if "minDuration" in q else None
    want_error = json.loads(q["tags"]).get("error") == "true" if "tags" in q else False
    out = []
    for tid, spans in by_trace(request.app[SPANS]).items():
        hits = [s for s in spans if s.service == q["service"] and start <= s.start_ns // 1000 <= end
                and (min_us is None or s.duration_ns / 1000 >= min_us) and (not want_error or s.error)]
        if hits:
            out.append(_trace_json(tid, spans))
    return web.json_response({"data": out[:limit], "total": 0, "limit": 0, "offset": 0, "errors": None})


async def trace(request: web.Request) -> web.Response:
    tid = request.match_info["trace_id"].lower()
    spans = by_trace(request.app[SPANS]).get(tid)
    if not spans:
        return web.json_response({"data": None, "errors": [{"code": 404, "msg": "trace not found"}]}, status=404)
    return web.json_response({"data": [_trace_json(tid, spans)], "errors": None})


def make_app(spans: list[FakeSpan]) -> web.Application:
    app = new_app()
    app[SPANS] = spans
    app.router.add_get("/api/services", services)
    app.router.add_get("/api/traces", traces)
    app.router.add_get("/api/traces/{trace_id}", trace)
    return app
