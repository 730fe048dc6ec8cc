"""The read-only tools the LLM investigator may call, over the same sources the engine read.

Every successful call becomes an ``EvidenceItem`` with its own id (``t1``, ``t2``…, beside the engine's
``e1``…), so the model's answer cites tool results exactly as it cites the engine's evidence. There is
no tool that writes, proposes or runs anything: the set below is the whole of what the model can do,
and a call to any other name is refused. Results too large for the model's context are cut (the longest
list is shortened and the model told to narrow the query) or, when even that cannot help, refused.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.investigate.report import EvidenceItem
from bot.investigate.templates import mine_shifts
from integrations.base import ChangeEvent, LogLine, Sources, Span, TimeWindow, call_tool
from integrations.diffs import DiffSource
from integrations.kubernetes_describe import DescribeResult, ObjectDescriber, ObjectKind

MAX_LINE_CHARS = 500
_TIME_KEYS = frozenset({"time", "since", "started", "finished"})
_BAD_CONDITIONS = frozenset({"MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable",
                             "ReplicaFailure"})


class ToolName(StrEnum):
    METRICS = "metrics"
    LOGS = "logs"
    TRACES = "traces"
    K8S_EVENTS = "k8s_events"
    DESCRIBE = "describe"
    CHANGES = "changes"
    DIFF = "diff"


class ToolStatus(StrEnum):
    OK = "ok"
    REFUSED = "refused"
    ERROR = "error"


READ_SET = frozenset(t.value for t in ToolName)

_STR = {"type": "string"}
_SPECS: dict[ToolName, tuple[str, dict[str, Any], list[str]]] = {
    ToolName.METRICS: (
        "One signal of one service around the alert: samples, and medians before and after the alert. "
        "Without a known signal, lists the signals there are.",
        {"service": _STR, "signal": _STR,
         "minutes_before": {"type": "integer", "minimum": 1, "maximum": 240},
         "minutes_after": {"type": "integer", "minimum": 1, "maximum": 240}},
        ["service", "signal"]),
    ToolName.LOGS: (
        "Log lines of one service since the incident began (filter by level and a substring), and the "
        "message templates whose rate rose since the baseline, with level and counts.",
        {"service": _STR, "level": {"type": "string", "enum": ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]},
         "contains": _STR, "limit": {"type": "integer", "minimum": 1, "maximum": 200}},
        ["service"]),
    ToolName.TRACES: (
        "Trace operations of one service (count, p50/p95 duration before and during the incident, errors) "
        "and where the errors in its traces originate.",
        {"service": _STR}, ["service"]),
    ToolName.K8S_EVENTS: (
        "Kubernetes events and pod states of one service (OOMKilled, CrashLoopBackOff, probe failures…).",
        {"service": _STR}, ["service"]),
    ToolName.DESCRIBE: (
        "A Kubernetes Deployment, Pod or Node as kubectl describe shows it, trimmed: replicas and strategy, "
        "containers with image, resources and probes, status, conditions, restarts and last terminations, "
        "capacity and taints, and its recent events. name is the object's name, or for a Deployment or a Pod "
        "the service's name (its least healthy pod is described). Read-only.",
        {"kind": {"type": "string", "enum": [k.value for k in ObjectKind]}, "name": _STR, "namespace": _STR},
        ["kind", "name"]),
    ToolName.CHANGES: (
        "Deploys, config changes, flag flips and scaling events in the investigated window, optionally of "
        "one service; each with the version to pass to the diff tool.",
        {"service": _STR}, []),
    ToolName.DIFF: (
        "The diff of one change (files and patches, size-capped), named by service and the version it "
        "moved to.",
        {"service": _STR, "version": _STR}, ["service"]),
}


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    name: str
    call: str  # canonical text of the call, as shown in the audit and the thread
    status: ToolStatus
    content: dict[str, Any]  # what the model is shown (redacted by the loop before it leaves)
    evidence: EvidenceItem | None = None
    reason: str = ""


class ToolRefused(Exception):
    """The call is not allowed or not answerable as asked; the message tells the model what to do."""


def canonical(name: str, args: dict[str, Any]) -> str:
    return f"{name}({json.dumps(args, sort_keys=True, separators=(',', ':'), default=str)})"


def fit(content: dict[str, Any], max_chars: int) -> tuple[dict[str, Any], str]:
    """``content`` within ``max_chars`` of JSON: its longest list shortened from the end, with a note.

    Raises ``ToolRefused`` when even an empty list would not fit (one item too large, say).
    """
    size = len(json.dumps(content, default=str))
    if size <= max_chars:
        return content, ""
    lists = [(k, v) for k, v in content.items() if isinstance(v, list) and v]
    if not lists:
        raise ToolRefused(f"the result is {size} characters, over the {max_chars} allowed; narrow the query")
    key, items = max(lists, key=lambda kv: len(json.dumps(kv[1], default=str)))
    lo, hi = 0, len(items)
    while lo < hi:  # the most items that fit
        mid = (lo + hi + 1) // 2
        trial = {**content, key: items[:mid], "truncated": f"{mid} of {len(items)} {key} shown"}
        if len(json.dumps(trial, default=str)) <= max_chars:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        raise ToolRefused(f"the result is {size} characters, over the {max_chars} allowed; narrow the query "
                          f"(a service, a level, a substring, a shorter window)")
    note = f"only {lo} of {len(items)} {key} shown: the result was too large; narrow the query to see the rest"
    return {**content, key: items[:lo], "truncated": note}, note


def _rel(t: float, onset: float) -> str:
    d = (t - onset) / 60
    return f"{'+' if d >= 0 else '-'}{abs(d):.1f} min"


def _q(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))], 3)


def _str_arg(args: dict[str, Any], key: str, required: bool = False, max_len: int = 200) -> str:
    v = args.get(key)
    if v is None or v == "":
        if required:
            raise ToolRefused(f"'{key}' is required")
        return ""
    if not isinstance(v, str) or len(v) > max_len:
        raise ToolRefused(f"'{key}' must be a string of at most {max_len} characters")
    return v


def _int_arg(args: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = args.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ToolRefused(f"'{key}' must be an integer from {lo} to {hi}")
    try:
        n = int(v)
    except ValueError:
        raise ToolRefused(f"'{key}' must be an integer from {lo} to {hi}") from None
    if not lo <= n <= hi:
        raise ToolRefused(f"'{key}' must be from {lo} to {hi}")
    return n


class Toolbox:
    """The read set over one investigation's sources and windows (taken from the report's scope)."""

    def __init__(self, sources: Sources, scope: dict[str, Any], *, max_result_chars: int = 32_000,
                 max_diff_file_chars: int = 6_000, max_diff_chars: int = 24_000, timeout_s: float = 10.0):
        self.sources = sources
        self.onset = float(scope.get("onset") or sources.clock())
        self.now = float(scope.get("now") or sources.clock())
        base = scope.get("baseline") or [self.onset - 3600, self.onset]
        inc = scope.get("incident") or [self.onset, self.now]
        self.baseline = TimeWindow(float(base[0]), float(base[1]))
        self.incident = TimeWindow(float(inc[0]), max(float(inc[0]), float(inc[1])))
        self.whole = TimeWindow(min(self.baseline.start, self.incident.start), max(self.now, self.incident.end))
        self.max_result_chars = max_result_chars
        self.max_diff_file_chars = max_diff_file_chars
        self.max_diff_chars = max_diff_chars
        self.timeout_s = timeout_s
        self.evidence: list[EvidenceItem] = []
        self._seen: dict[str, str] = {}  # canonical call -> evidence id (or "" when it failed)

    def available(self) -> list[ToolName]:
        s = self.sources
        have = {ToolName.METRICS: s.metrics is not None, ToolName.LOGS: s.logs is not None,
                ToolName.TRACES: s.traces is not None, ToolName.K8S_EVENTS: s.cluster is not None,
                ToolName.DESCRIBE: isinstance(s.cluster, ObjectDescriber),
                ToolName.CHANGES: bool(s.changes),
                ToolName.DIFF: any(isinstance(c, DiffSource) for c in s.changes)}
        return [t for t in ToolName if have[t]]

    def specs(self) -> list[dict[str, Any]]:
        """The OpenAI ``tools`` definitions of the tools these sources can answer."""
        out = []
        for t in self.available():
            desc, props, required = _SPECS[t]
            out.append({"type": "function", "function": {
                "name": t.value, "description": desc,
                "parameters": {"type": "object", "properties": props, "required": required,
                               "additionalProperties": False}}})
        return out

    async def run(self, name: str, args: dict[str, Any]) -> ToolOutcome:
        call = canonical(name, args)
        if name not in READ_SET:
            return ToolOutcome(name, call, ToolStatus.REFUSED, {"error": (
                f"there is no tool '{name}'. You can only read, with: {', '.join(t.value for t in self.available())}. "
                "You cannot approve, propose or run any action.")}, reason=f"'{name}' is not in the read set")
        tool = ToolName(name)
        if tool not in self.available():
            return ToolOutcome(name, call, ToolStatus.REFUSED, {"error": f"no source answers '{name}' here"},
                               reason=f"no source for '{name}'")
        if call in self._seen:
            prior = self._seen[call]
            msg = f"this exact call was already made; its result is evidence {prior}" if prior else \
                "this exact call was already made and failed; do not repeat it"
            return ToolOutcome(name, call, ToolStatus.REFUSED, {"error": msg}, reason="repeated identical call")
        handlers: dict[ToolName, Callable[[dict[str, Any]], Awaitable[tuple[dict[str, Any], EvidenceItem]]]] = {
            ToolName.METRICS: self._metrics, ToolName.LOGS: self._logs, ToolName.TRACES: self._traces,
            ToolName.K8S_EVENTS: self._events, ToolName.DESCRIBE: self._describe, ToolName.CHANGES: self._changes,
            ToolName.DIFF: self._diff,
        }
        try:
            unknown = set(args) - set(_SPECS[tool][1])
            if unknown:
                raise ToolRefused(f"unknown arguments: {', '.join(sorted(unknown))}")
            content, item = await handlers[tool](args)
            content, note = fit(content, self.max_result_chars)
        except ToolRefused as exc:
            self._seen[call] = ""
            return ToolOutcome(name, call, ToolStatus.REFUSED, {"error": str(exc)}, reason=str(exc))
        except _SourceFailed as exc:
            self._seen[call] = ""
            return ToolOutcome(name, call, ToolStatus.ERROR, {"error": str(exc)}, reason=str(exc))
        item.id = f"t{len(self.evidence) + 1}"
        if note:
            item.summary += f" ({note})"
        self.evidence.append(item)
        self._seen[call] = item.id
        return ToolOutcome(name, call, ToolStatus.OK, {"evidence_id": item.id, **content}, item)

    async def _call(self, source: str, what: str, call: Awaitable[Any]) -> Any:
        res = await call_tool(source, what, call, self.timeout_s)
        if not res.ok:
            raise _SourceFailed(res.error)
        return res.data

    # ------------------------------------------------------------------ the tools

    async def _metrics(self, args: dict[str, Any]) -> tuple[dict[str, Any], EvidenceItem]:
        service = _str_arg(args, "service", True)
        signal = _str_arg(args, "signal", True)
        before = _int_arg(args, "minutes_before", 30, 1, 240)
        after = _int_arg(args, "minutes_after", 15, 1, 240)
        m = self.sources.metrics
        assert m is not None
        w = TimeWindow(self.onset - before * 60, max(self.onset - before * 60, min(self.now, self.onset + after * 60)))
        series = await self._call(m.name, f"{signal} of {service}", m.signal(signal, w, [service]))
        points: list[tuple[float, float]] = next((s.points for s in series if s.service == service), [])
        if not points:
            signals = await self._call(m.name, "signals", m.available_signals())
            raise ToolRefused(f"no {signal} for {service} in that window; signals there are: "
                              f"{', '.join(sorted(signals)[:80])}")
        pre = [v for t, v in points if t < self.onset]
        post = [v for t, v in points if t >= self.onset]
        step = max(1, len(points) // 60)
        med_b = round(statistics.median(pre), 6) if pre else None
        med_a = round(statistics.median(post), 6) if post else None
        content = {"service": service, "signal": signal, "window": [_rel(w.start, self.onset), _rel(w.end, self.onset)],
                   "median_before": med_b, "median_after": med_a, "max_after": round(max(post), 6) if post else None,
                   "points": [[_rel(t, self.onset), round(v, 6)] for t, v in points[::step]]}
        item = EvidenceItem("", m.name, "metric", service, signal, canonical("metrics", args),
                            f"{signal} of {service}: median {med_b} before the alert, {med_a} after",
                            before=med_b, after=med_a, link=m.link(signal, w))
        return content, item

    async def _logs(self, args: dict[str, Any]) -> tuple[dict[str, Any], EvidenceItem]:
        service = _str_arg(args, "service", True)
        level = _str_arg(args, "level").upper()
        contains = _str_arg(args, "contains").lower()
        limit = _int_arg(args, "limit", 50, 1, 200)
        src = self.sources.logs
        assert src is not None
        after: list[LogLine] = await self._call(src.name, f"lines of {service}",
                                                src.lines(self.incident, [service], limit=5000))
        before: list[LogLine] = await self._call(src.name, f"baseline lines of {service}",
                                                 src.lines(self.baseline, [service], limit=5000))
        picked = [ln for ln in after if (not level or ln.level.upper() == level)
                  and (not contains or contains in ln.message.lower())]
        shifts = mine_shifts(before, after, min_after=1)[:25]
        by_level: dict[str, int] = {}
        for ln in after:
            by_level[ln.level or "-"] = by_level.get(ln.level or "-", 0) + 1
        content = {
            "service": service, "window": [_rel(self.incident.start, self.onset), _rel(self.incident.end, self.onset)],
            "lines_in_window": len(after), "by_level": by_level, "matching": len(picked),
            "templates": [{"template": s.template[:MAX_LINE_CHARS], "level": s.level, "before": s.before,
                           "after": s.after, "new": s.new} for s in shifts],
            "lines": [{"at": _rel(ln.time, self.onset), "level": ln.level, "message": ln.message[:MAX_LINE_CHARS],
                       **({"trace_id": ln.trace_id} if ln.trace_id else {})} for ln in picked[-limit:]],
        }
        top = shifts[0].template[:160] if shifts else "no rising template"
        item = EvidenceItem("", src.name, "logs", service, "log_lines", canonical("logs", args),
                            f"logs of {service}: {len(after)} lines since the incident began, {len(picked)} matching; "
                            f"top rising template: {top}", link=src.link(service, self.incident))
        return content, item

    async def _traces(self, args: dict[str, Any]) -> tuple[dict[str, Any], EvidenceItem]:
        service = _str_arg(args, "service", True)
        src = self.sources.traces
        assert src is not None
        during: list[Span] = await self._call(src.name, "spans", src.spans(self.incident, None, limit=5000))
        base: list[Span] = await self._call(src.name, "baseline spans", src.spans(self.baseline, [service], limit=5000))
        ops: dict[str, list[Span]] = {}
        for s in during:
            if s.service == service:
                ops.setdefault(s.operation, []).append(s)
        base_ops: dict[str, list[float]] = {}
        for s in base:
            if s.service == service:
                base_ops.setdefault(s.operation, []).append(s.duration_ms)
        operations: list[dict[str, Any]] = sorted(({
            "operation": op, "count": len(v), "errors": sum(1 for s in v if s.status == "error"),
            "p50_ms": _q([s.duration_ms for s in v], 0.5), "p95_ms": _q([s.duration_ms for s in v], 0.95),
            "baseline_p50_ms": _q(base_ops.get(op, []), 0.5) if base_ops.get(op) else None,
        } for op, v in ops.items()), key=lambda o: (-o["count"], o["operation"]))
        traces = {s.trace_id for s in during if s.service == service}
        errored_children = {(s.trace_id, s.parent_span_id) for s in during if s.status == "error"}
        origins: dict[tuple[str, str], int] = {}
        for s in during:
            if s.trace_id in traces and s.status == "error" and (s.trace_id, s.span_id) not in errored_children:
                origins[(s.service, s.operation)] = origins.get((s.service, s.operation), 0) + 1
        error_origins = [{"service": k[0], "operation": k[1], "errors": n}
                         for k, n in sorted(origins.items(), key=lambda kv: (-kv[1], kv[0]))][:20]
        content = {"service": service, "traces": len(traces), "operations": operations, "error_origins": error_origins}
        slow = operations[0] if operations else None
        item = EvidenceItem("", src.name, "traces", service, "operations", canonical("traces", args),
                            f"traces of {service}: {len(operations)} operations in {len(traces)} traces"
                            + (f"; {slow['operation']} p50 {slow['p50_ms']} ms (baseline {slow['baseline_p50_ms']})"
                               if slow else "")
                            + (f"; errors originate in {error_origins[0]['service']}" if error_origins else ""))
        return content, item

    async def _events(self, args: dict[str, Any]) -> tuple[dict[str, Any], EvidenceItem]:
        service = _str_arg(args, "service", True)
        src = self.sources.cluster
        assert src is not None
        events = await self._call(src.name, f"events of {service}", src.events(self.whole, [service]))
        rows = [{"at": _rel(e.time, self.onset), "reason": e.reason, "object": e.object, "node": e.node,
                 "count": e.count, "message": e.message[:MAX_LINE_CHARS]} for e in events]
        reasons = sorted({e.reason for e in events})
        item = EvidenceItem("", src.name, "cluster", service, "events", canonical("k8s_events", args),
                            f"Kubernetes events of {service}: {len(rows)}" + (f" ({', '.join(reasons[:5])})" if reasons else ""))
        return {"service": service, "events": rows}, item

    async def _describe(self, args: dict[str, Any]) -> tuple[dict[str, Any], EvidenceItem]:
        raw_kind = _str_arg(args, "kind", True)
        kind = next((k for k in ObjectKind if k.value.lower() == raw_kind.lower()), None)
        if kind is None:
            raise ToolRefused(f"kind must be one of {', '.join(k.value for k in ObjectKind)}")
        name = _str_arg(args, "name", True, max_len=253)
        namespace = _str_arg(args, "namespace", max_len=63) or None
        src = self.sources.cluster
        assert isinstance(src, ObjectDescriber)
        got: DescribeResult = await self._call(src.name, f"{kind.value} {name}",
                                               src.describe(kind, name, namespace, self.whole))
        d = got.description
        if d is None:
            where = f" in namespace {namespace}" if namespace else ""
            raise ToolRefused(f"no {kind.value} named {name!r}{where}; there are: "
                              f"{', '.join(got.known) or 'none'}")

        def rel(v: Any) -> Any:  # Unix times (conditions, events, terminations) relative to the alert
            if isinstance(v, dict):
                return {k: (_rel(x, self.onset) if k in _TIME_KEYS and isinstance(x, float) else rel(x))
                        for k, x in v.items()}
            return [rel(x) for x in v] if isinstance(v, list) else v

        content = {"kind": d.kind.value, "namespace": d.namespace, "name": d.name, "service": d.service,
                   "spec": rel(d.spec), "status": rel(d.status), "conditions": rel(d.conditions),
                   "events": rel(d.events), **({"other_pods" if d.kind is ObjectKind.POD else "pods": d.related}
                                              if d.related else {})}
        failing = [c["type"] for c in d.conditions if c.get("status") == "False" and c.get("type") != "Progressing"
                   or c.get("type") in _BAD_CONDITIONS and c.get("status") == "True"]
        reasons = sorted({e["reason"] for e in d.events if e.get("type") == "Warning"})
        subject = d.service if d.kind is not ObjectKind.NODE else d.name
        item = EvidenceItem("", src.name, "cluster", subject, "describe", canonical("describe", args),
                            f"{d.kind.value} {d.namespace + '/' if d.namespace else ''}{d.name}"
                            + (f": conditions not well: {', '.join(failing[:4])}" if failing else "")
                            + (f"; warnings: {', '.join(reasons[:5])}" if reasons else "")
                            + f"; {len(d.events)} recent events")
        return content, item

    async def _all_changes(self, service: str) -> list[tuple[ChangeEvent, str]]:
        out: list[tuple[ChangeEvent, str]] = []
        for src in self.sources.changes:
            got = await self._call(src.name, "changes", src.changes(self.whole, [service] if service else None))
            out += [(c, src.name) for c in got]
        return sorted(out, key=lambda cs: (cs[0].time, cs[0].service))

    async def _changes(self, args: dict[str, Any]) -> tuple[dict[str, Any], EvidenceItem]:
        service = _str_arg(args, "service")
        found = await self._all_changes(service)
        diffable = any(isinstance(c, DiffSource) for c in self.sources.changes)
        rows = [{"service": c.service, "at": _rel(c.time, self.onset), "kind": c.kind, "version": c.version,
                 "previous_version": c.previous_version, "description": c.description[:MAX_LINE_CHARS],
                 "diff": "call diff(service, version)" if diffable and c.version else "none"} for c, _ in found]
        names = sorted({c.service for c, _ in found})
        item = EvidenceItem("", found[0][1] if found else "changes", "change", service or ",".join(names[:5]),
                            "changes", canonical("changes", args),
                            f"{len(rows)} changes" + (f" of {service}" if service else "") + " in the window"
                            + (": " + "; ".join(f"{r['kind']} of {r['service']} {r['version']} at {r['at']}"
                                                for r in rows[-4:]) if rows else ""))
        return {"changes": rows}, item

    async def _diff(self, args: dict[str, Any]) -> tuple[dict[str, Any], EvidenceItem]:
        service = _str_arg(args, "service", True)
        version = _str_arg(args, "version")
        found = [c for c, _ in await self._all_changes(service) if c.service == service]
        pick = [c for c in found if c.version == version] if version else found[-1:]
        if not pick:
            versions = ", ".join(c.version or "(none)" for c in found) or "none in the window"
            raise ToolRefused(f"no change of {service} to version {version!r}; versions: {versions}")
        change = pick[-1]
        for src in self.sources.changes:
            if not isinstance(src, DiffSource):
                continue
            d = await self._call(src.name, f"diff of {service}",
                                 src.diff(change, max_file_chars=self.max_diff_file_chars,
                                          max_total_chars=self.max_diff_chars))
            if d is None:
                continue
            files = [{"filename": f.filename, "status": f.status, "additions": f.additions,
                      "deletions": f.deletions, "patch": f.patch, **({"truncated": True} if f.truncated else {})}
                     for f in d.files]
            content = {"service": service, "from": d.base, "to": d.head, "url": d.url,
                       "commits": [{"sha": s, "title": t} for s, t in d.commits], "files": files,
                       **({"files_without_patch": d.omitted_files} if d.omitted_files else {})}
            names = ", ".join(f"{f.filename} (+{f.additions} -{f.deletions})" for f in d.files[:6])
            item = EvidenceItem("", d.source or src.name, "change", service, "diff", canonical("diff", args),
                                f"diff of {service} {d.base or '?'} -> {d.head or '?'}: {len(d.files)} files: {names}",
                                onset=change.time, link=d.url or change.diff_url)
            return content, item
        raise ToolRefused(f"no source has a diff for the change of {service} to {change.version or '?'}")


class _SourceFailed(Exception):
    """A source call behind a tool failed; the model is told, the investigation goes on."""
