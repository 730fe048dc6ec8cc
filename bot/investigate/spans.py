"""Per-service trace figures: a service's own time (its spans minus their children) and its errors.

A slow service makes every caller slow too, but only its own time grows: the time its callers wait
for it is theirs as downstream time, not own time. Comparing own time before and after separates
the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from integrations.base import Edge, Span


@dataclass(frozen=True, slots=True)
class ServiceSpans:
    service: str
    self_ms: np.ndarray  # own time per span
    errors: int
    with_status: int

    @property
    def n(self) -> int:
        return len(self.self_ms)


def service_spans(spans: Sequence[Span]) -> dict[str, ServiceSpans]:
    child_sum: dict[tuple[str, str], float] = {}
    for s in spans:
        if s.parent_span_id:
            k = (s.trace_id, s.parent_span_id)
            child_sum[k] = child_sum.get(k, 0.0) + s.duration_ms
    own: dict[str, list[float]] = {}
    errs: dict[str, int] = {}
    stat: dict[str, int] = {}
    for s in spans:
        self_ms = max(0.0, s.duration_ms - child_sum.get((s.trace_id, s.span_id), 0.0))
        own.setdefault(s.service, []).append(self_ms)
        if s.status:
            stat[s.service] = stat.get(s.service, 0) + 1
            if s.status == "error":
                errs[s.service] = errs.get(s.service, 0) + 1
    return {
        svc: ServiceSpans(svc, np.asarray(v, dtype=np.float64), errs.get(svc, 0), stat.get(svc, 0))
        for svc, v in sorted(own.items())
    }


def edges_from_spans(spans: Sequence[Span]) -> set[Edge]:
    """Caller -> callee pairs where a span's parent belongs to another service."""
    owner: dict[tuple[str, str], str] = {(s.trace_id, s.span_id): s.service for s in spans}
    edges: set[Edge] = set()
    for s in spans:
        if s.parent_span_id:
            parent = owner.get((s.trace_id, s.parent_span_id))
            if parent is not None and parent != s.service:
                edges.add(Edge(parent, s.service))
    return edges


@dataclass(frozen=True, slots=True)
class TraceShift:
    service: str
    signal: str  # trace_self_time_p50 | trace_self_time_p90 | trace_error_rate
    before: float
    after: float
    z: float
    n_before: int
    n_after: int


def compare(before: dict[str, ServiceSpans], after: dict[str, ServiceSpans], min_spans: int = 5) -> list[TraceShift]:
    out: list[TraceShift] = []
    for svc in sorted(set(before) & set(after)):
        b, a = before[svc], after[svc]
        if b.n < min_spans or a.n < min_spans:
            continue
        for q, name in ((0.5, "trace_self_time_p50"), (0.9, "trace_self_time_p90")):
            qb = float(np.quantile(b.self_ms, q))
            qa = float(np.quantile(a.self_ms, q))
            mad = float(np.median(np.abs(b.self_ms - np.median(b.self_ms)))) * 1.4826
            # the spread of a quantile estimate shrinks with the sample; floor it at 10 % and 1 ms
            spread = max(mad / np.sqrt(min(b.n, a.n)) * 3.0, 0.1 * qb, 1.0)
            out.append(TraceShift(svc, name, qb, qa, (qa - qb) / spread, b.n, a.n))
        if b.with_status >= min_spans and a.with_status >= min_spans:
            rb = b.errors / b.with_status
            ra = a.errors / a.with_status
            se = np.sqrt(max(rb * (1 - rb), 0.01) / a.with_status)
            out.append(TraceShift(svc, "trace_error_rate", rb, ra, (ra - rb) / se, b.with_status, a.with_status))
    return out


def edge_gaps(spans: Sequence[Span]) -> dict[tuple[str, str], np.ndarray]:
    """Per caller -> callee pair: the time a caller's span spends outside its callee's spans.

    Only parent spans whose children all belong to one other service count, so the gap is the
    cost of that call (network, queueing, serialisation) and not other work of the caller.
    """
    kids: dict[tuple[str, str], list[Span]] = {}
    for s in spans:
        if s.parent_span_id:
            kids.setdefault((s.trace_id, s.parent_span_id), []).append(s)
    out: dict[tuple[str, str], list[float]] = {}
    for p in spans:
        ch = kids.get((p.trace_id, p.span_id))
        if not ch:
            continue
        callee = ch[0].service
        if callee == p.service or any(c.service != callee for c in ch):
            continue
        gap = max(0.0, p.duration_ms - sum(c.duration_ms for c in ch))
        out.setdefault((p.service, callee), []).append(gap)
    return {k: np.asarray(v, dtype=np.float64) for k, v in sorted(out.items())}


def compare_gaps(
    before: dict[tuple[str, str], np.ndarray], after: dict[tuple[str, str], np.ndarray], min_calls: int = 3
) -> list[tuple[str, str, float, float, float, int, int]]:
    """(caller, callee, p90 before, p90 after, z, n before, n after) per edge seen in both windows.

    A rarely called service still tells a lot when its calls go from milliseconds to seconds, so an
    edge needs only a few calls each side; the spread floor widens as the sample shrinks.
    """
    out = []
    for k in sorted(set(before) & set(after)):
        b, a = before[k], after[k]
        if len(b) < min_calls or len(a) < min_calls:
            continue
        qb, qa = float(np.quantile(b, 0.9)), float(np.quantile(a, 0.9))
        mad = float(np.median(np.abs(b - np.median(b)))) * 1.4826
        few = max(1.0, 5.0 / min(len(b), len(a)))
        spread = max(mad / np.sqrt(min(len(b), len(a))) * 3.0, 0.1 * qb * few, 1.0 * few)
        out.append((k[0], k[1], qb, qa, (qa - qb) / spread, len(b), len(a)))
    return out
