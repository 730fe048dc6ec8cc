"""Where errors start: the service that fails on its own, not the ones that pass its failure on.

An exception thrown in one service travels up the call chain: its callers fail too, and their error
counts and error logs rise as much as its own. What tells them apart is the shape of each failing
request:

- **Traces** that record a status: the error *origin* of a trace is a span with an error whose own
  children all succeeded (or that has none). Its service is where the request broke; the error spans
  above it only carry the failure up.
- **Logs** that carry a trace id: among the services that logged an ERROR for one request, the origin
  is one none of whose callees in that request (by the trace's spans) logged one. A caller's "request
  failed" line comes after and above its callee's exception.

Each origin is counted once per trace and per service, before and after the cut; a service whose
origin count rises (against its baseline rate, Poisson) is where the errors start. These are plain
facts of how traces and logs relate, so they hold for any system that propagates a trace id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bot.investigate.templates import ERROR_LEVELS, normal_level
from integrations.base import LogLine, Span


@dataclass(frozen=True, slots=True)
class Origin:
    """One request whose failure started in ``service`` (at ``operation`` when a span says which)."""

    trace_id: str
    service: str
    operation: str
    time: float
    source: str  # "traces" (span status) | "logs" (error lines with trace ids)


def _kids(spans: Sequence[Span]) -> dict[tuple[str, str], list[Span]]:
    out: dict[tuple[str, str], list[Span]] = {}
    for s in spans:
        if s.parent_span_id:
            out.setdefault((s.trace_id, s.parent_span_id), []).append(s)
    return out


def span_origins(spans: Sequence[Span]) -> list[Origin]:
    """Per trace, the error spans whose children all succeeded: one origin per (trace, service)."""
    kids = _kids(spans)
    seen: set[tuple[str, str]] = set()
    out: list[Origin] = []
    for s in sorted(spans, key=lambda s: (s.start_time, s.trace_id, s.span_id)):
        if s.status != "error":
            continue
        if any(c.status == "error" for c in kids.get((s.trace_id, s.span_id), ())):
            continue
        key = (s.trace_id, s.service)
        if key not in seen:
            seen.add(key)
            out.append(Origin(s.trace_id, s.service, s.operation, s.start_time, "traces"))
    return out


def log_origins(logs: Sequence[LogLine], spans: Sequence[Span]) -> list[Origin]:
    """Per trace, the services that logged an error while none of their callees in that trace did."""
    errors: dict[str, dict[str, float]] = {}
    for ln in logs:
        if ln.trace_id and normal_level(ln.level) in ERROR_LEVELS:
            first = errors.setdefault(ln.trace_id, {})
            first[ln.service] = min(first.get(ln.service, ln.time), ln.time)
    if not errors:
        return []
    by_trace: dict[str, list[Span]] = {}
    for s in spans:
        if s.trace_id in errors:
            by_trace.setdefault(s.trace_id, []).append(s)
    out: list[Origin] = []
    for tid in sorted(errors):
        failing = errors[tid]
        tspans = by_trace.get(tid)
        if not tspans:
            continue  # without the request's spans, which failure came first cannot be told
        below = _descendant_services(tspans)
        for svc in sorted(failing):
            if not (below.get(svc, set()) & set(failing)):
                out.append(Origin(tid, svc, "", failing[svc], "logs"))
    return out


def _descendant_services(spans: Sequence[Span]) -> dict[str, set[str]]:
    """Within one trace: for each service, the other services its spans call, directly or not."""
    owner = {s.span_id: s for s in spans}
    down: dict[str, set[str]] = {}
    for s in spans:
        p = owner.get(s.parent_span_id)
        if p is not None and p.service != s.service:
            down.setdefault(p.service, set()).add(s.service)
    out: dict[str, set[str]] = {}
    for svc in down:
        seen: set[str] = set()
        stack = list(down[svc])
        while stack:
            n = stack.pop()
            if n in seen or n == svc:
                continue
            seen.add(n)
            stack.extend(down.get(n, ()))
        out[svc] = seen
    return out


@dataclass(frozen=True, slots=True)
class OriginShift:
    service: str
    before: int
    after: int
    before_rate: float  # per second of the covered baseline
    after_rate: float
    z: float
    onset: float | None
    operation: str  # the operation most origins after the cut started in, when spans say
    source: str


def compare_origins(before: Sequence[Origin], after: Sequence[Origin], before_s: float, after_s: float,
                    min_after: int = 3) -> list[OriginShift]:
    """Per service: how much more often requests started failing there, as a Poisson z over covered time."""
    out: list[OriginShift] = []
    services = sorted({o.service for o in after})
    for svc in services:
        a = [o for o in after if o.service == svc]
        if len(a) < min_after:
            continue
        b = sum(1 for o in before if o.service == svc)
        rate_b = b / before_s if before_s > 0 else 0.0
        expected = rate_b * after_s
        z = (len(a) - expected) / math.sqrt(expected + 1.0)
        if z <= 0:
            continue
        ops: dict[str, int] = {}
        for o in a:
            if o.operation:
                ops[o.operation] = ops.get(o.operation, 0) + 1
        op = max(sorted(ops), key=lambda k: ops[k]) if ops else ""
        # with failures there before too, the first one after the cut may be one of those: onset unknown
        onset = min(o.time for o in a) if expected < 1.0 else None
        out.append(OriginShift(svc, b, len(a), rate_b, len(a) / after_s if after_s > 0 else 0.0, z,
                               onset, op, a[0].source))
    return out
