"""A fake Loki speaking ``/loki/api/v1/query_range`` for the LogQL shapes onwatch sends:
``{matchers} [|~ "re"]`` (streams) and ``sum by (label) (count_over_time({matchers} [|~ "re"] [Ns]))`` (matrix)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import new_app

LINES: web.AppKey[list[LogEntry]] = web.AppKey("lines", list)
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*,?')
_METRIC = re.compile(r"^sum by \((\w+)\) \(count_over_time\((.*) \[(\d+)s\]\)\)$", re.S)


@dataclass(frozen=True)
class LogEntry:
    ts_ns: int
    labels: dict[str, str]
    line: str


def _parse_selector(text: str) -> tuple[list[tuple[str, str, str]], str | None]:
    text = text.strip()
    if not text.startswith("{"):
        raise ValueError("expected a stream selector")
    end = text.index("}")
    body, rest = text[1:end], text[end + 1:].strip()
    matchers = [(m.group(1), m.group(2), json.loads(m.group(3))) for m in _MATCHER.finditer(body)]
    if not matchers:
        raise ValueError("queries require at least one label matcher")
    line_re = None
    if rest:
        if not rest.startswith("|~"):
            raise ValueError(f"unsupported pipeline {rest!r}")
        line_re = json.loads(rest[2:].strip())
    return matchers, line_re


def _match(entry: LogEntry, matchers: list[tuple[str, str, str]], line_re: str | None) -> bool:
    for label, op, value in matchers:
        got = entry.labels.get(label, "")
        ok = {"=": got == value, "!=": got != value,
              "=~": re.fullmatch(value, got) is not None, "!~": re.fullmatch(value, got) is None}[op]
        if not ok:
            return False
    return line_re is None or re.search(line_re, entry.line) is not None


async def query_range(request: web.Request) -> web.Response:
    q = request.query
    query, start, end = q["query"], int(q["start"]), int(q["end"])
    entries: list[LogEntry] = request.app[LINES]
    try:
        metric = _METRIC.match(query)
        if metric:
            by, sel, rng = metric.group(1), metric.group(2), int(metric.group(3))
            matchers, line_re = _parse_selector(sel)
            step = int(q["step"].rstrip("s"))
            out: dict[str, list[list[object]]] = {}
            t = start
            while t <= end:
                counts: dict[str, int] = {}
                for e in entries:
                    if t - rng * 10**9 < e.ts_ns <= t and _match(e, matchers, line_re):
                        key = e.labels.get(by, "")
                        counts[key] = counts.get(key, 0) + 1
                for key, n in counts.items():
                    out.setdefault(key, []).append([t / 1e9, str(n)])
                t += step * 10**9
            result = [{"metric": {by: k}, "values": v} for k, v in sorted(out.items())]
            return web.json_response({"status": "success", "data": {"resultType": "matrix", "result": result}})
        matchers, line_re = _parse_selector(query)
    except (ValueError, KeyError) as exc:
        return web.Response(status=400, text=f"parse error : {exc}")
    limit = int(q.get("limit", "100"))
    hits = [e for e in entries if start <= e.ts_ns <= end and _match(e, matchers, line_re)]
    hits.sort(key=lambda e: e.ts_ns, reverse=q.get("direction", "backward") == "backward")
    hits = hits[:limit]
    streams: dict[str, dict[str, Any]] = {}
    for e in hits:
        key = json.dumps(e.labels, sort_keys=True)
        s = streams.setdefault(key, {"stream": e.labels, "values": []})
        s["values"].append([str(e.ts_ns), e.line])
    return web.json_response({"status": "success", "data": {"resultType": "streams", "result": list(streams.values()),
                                                             "stats": {}}})


def make_app(entries: list[LogEntry]) -> web.Application:
    app = new_app()
    app[LINES] = entries
    app.router.add_get("/loki/api/v1/query_range", query_range)
    return app
