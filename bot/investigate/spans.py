"""Per-service trace figures: a service's own time (its spans minus their children) and its errors.

A slow service makes every caller slow too, but only its own time grows: the time its callers wait
for it is theirs as downstream time, not own time. Comparing own time before and after separates
the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from integrations.base import Edge, Span


@dataclass(frozen=True, slots=True)
class ServiceSpans:
    service: str
    self_ms: np.ndarray  # own time per span
    errors: int
    with_status: int
    by_operation: dict[str, np.ndarray] = field(default_factory=dict)  # own time per span, per operation

    @property
    def n(self) -> int:
        return len(self.self_ms)


def _children(spans: Sequence[Span]) -> dict[tuple[str, str], list[Span]]:
    kids: dict[tuple[str, str], list[Span]] = {}
    for s in spans:
        if s.parent_span_id:
            kids.setdefault((s.trace_id, s.parent_span_id), []).append(s)
    return kids


def _callee(p: Span, ch: list[Span] | None) -> str | None:
    """The one other service all of a span's children belong to: the span is a call to it."""
    if not ch:
        return None
    callee = ch[0].service
    if callee == p.service or any(c.service != callee for c in ch):
        return None
    return callee


def service_spans(spans: Sequence[Span]) -> dict[str, ServiceSpans]:
    """Each service's own time per span. A span that only wraps a call to one other service (a client
    span) is left out: the time it adds around its callee's spans is the cost of that call (network,
    queueing), which ``edge_gaps`` gives to the caller -> callee pair rather than to the caller's work.
    Without this, a network delay in front of a callee would read as the caller's own slowness."""
    kids = _children(spans)
    own: dict[str, list[float]] = {}
    ops: dict[str, dict[str, list[float]]] = {}
    errs: dict[str, int] = {}
    stat: dict[str, int] = {}
    for s in spans:
        ch = kids.get((s.trace_id, s.span_id))
        if s.status:
            stat[s.service] = stat.get(s.service, 0) + 1
            if s.status == "error":
                errs[s.service] = errs.get(s.service, 0) + 1
        if _callee(s, ch) is not None:
            own.setdefault(s.service, [])
            continue
        self_ms = max(0.0, s.duration_ms - sum(c.duration_ms for c in ch or ()))
        own.setdefault(s.service, []).append(self_ms)
        ops.setdefault(s.service, {}).setdefault(s.operation, []).append(self_ms)
    return {
        svc: ServiceSpans(svc, np.asarray(v, dtype=np.float64), errs.get(svc, 0), stat.get(svc, 0),
                          {op: np.asarray(t, dtype=np.float64) for op, t in sorted(ops.get(svc, {}).items())})
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
    signal: str  # trace_self_time_p50 | trace_self_time_p90 | trace_self_time_op | trace_error_rate
    before: float
    after: float
    z: float
    n_before: int
    n_after: int
    operation: str = ""  # for trace_self_time_op: the operation that moved


def compare(before: dict[str, ServiceSpans], after: dict[str, ServiceSpans], min_spans: int = 5) -> list[TraceShift]:
    out: list[TraceShift] = []
    for svc in sorted(set(before) & set(after)):
        b, a = before[svc], after[svc]
        if b.n < min_spans or a.n < min_spans:
            continue
        for q, name in ((0.5, "trace_self_time_p50"), (0.9, "trace_self_time_p90")):
            qb, qa, z = _quantile_shift(b.self_ms, a.self_ms, q)
            out.append(TraceShift(svc, name, qb, qa, z, b.n, a.n))
        op = _operation_shift(b, a, min_spans)
        if op is not None:
            out.append(op)
        if b.with_status >= min_spans and a.with_status >= min_spans:
            rb = b.errors / b.with_status
            ra = a.errors / a.with_status
            se = np.sqrt(max(rb * (1 - rb), 0.01) / a.with_status)
            out.append(TraceShift(svc, "trace_error_rate", rb, ra, (ra - rb) / se, b.with_status, a.with_status))
    return out


def _quantile_shift(b: np.ndarray, a: np.ndarray, q: float) -> tuple[float, float, float]:
    qb = float(np.quantile(b, q))
    qa = float(np.quantile(a, q))
    mad = float(np.median(np.abs(b - np.median(b)))) * 1.4826
    # the spread of a quantile estimate shrinks with the sample; floor it at 10 % and 1 ms
    spread = max(mad / np.sqrt(min(len(b), len(a))) * 3.0, 0.1 * qb, 1.0)
    return qb, qa, (qa - qb) / spread


def _operation_shift(b: ServiceSpans, a: ServiceSpans, min_spans: int) -> TraceShift | None:
    """The one operation (endpoint) of a service whose own time moved most.

    A fault in one code path (an exception handler, a slow query behind one endpoint) moves that
    operation only and is diluted in the service's overall own time. Taking the largest of several
    operations' shifts would find one by chance, so the best z is reduced by the expected maximum of that
    many standard normal draws (about sqrt(2 ln n)).
    """
    shifts: list[tuple[float, str, float, float, int, int]] = []
    for op in sorted(set(b.by_operation) & set(a.by_operation)):
        ob, oa = b.by_operation[op], a.by_operation[op]
        if len(ob) < min_spans or len(oa) < min_spans:
            continue
        qb, qa, z = _quantile_shift(ob, oa, 0.5)
        shifts.append((z, op, qb, qa, len(ob), len(oa)))
    if len(shifts) < 2:
        return None  # one operation: the service's own figures already say it
    z, op, qb, qa, nb, na = max(shifts)
    z -= float(np.sqrt(2.0 * np.log(len(shifts))))
    return TraceShift(b.service, "trace_self_time_op", qb, qa, z, nb, na, op)


def edge_calls(spans: Sequence[Span]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Per caller -> callee pair: (start times, gaps) of the calls, time-ordered; a call's gap is the
    time its span spends outside its callee's spans.

    Only parent spans whose children all belong to one other service count, so the gap is the
    cost of that call (network, queueing, serialisation) and not other work of the caller.
    """
    kids = _children(spans)
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for p in spans:
        ch = kids.get((p.trace_id, p.span_id))
        callee = _callee(p, ch)
        if callee is None or ch is None:
            continue
        gap = max(0.0, p.duration_ms - sum(c.duration_ms for c in ch))
        out.setdefault((p.service, callee), []).append((p.start_time, gap))
    res: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for k, v in sorted(out.items()):
        v.sort()
        arr = np.asarray(v, dtype=np.float64)
        res[k] = (arr[:, 0], arr[:, 1])
    return res


def edge_durations(spans: Sequence[Span]) -> dict[tuple[str, str], np.ndarray]:
    """Per caller -> callee pair: how long the caller waited on each call (its call span's duration)."""
    kids = _children(spans)
    out: dict[tuple[str, str], list[float]] = {}
    for p in spans:
        callee = _callee(p, kids.get((p.trace_id, p.span_id)))
        if callee is not None:
            out.setdefault((p.service, callee), []).append(p.duration_ms)
    return {k: np.asarray(v, dtype=np.float64) for k, v in sorted(out.items())}


def compare_waits(
    before: dict[tuple[str, str], np.ndarray], after: dict[tuple[str, str], np.ndarray], min_calls: int = 2
) -> dict[tuple[str, str], float]:
    """Per edge seen on both sides: a robust z of how much longer its caller waited on it (median)."""
    out: dict[tuple[str, str], float] = {}
    for k in sorted(set(before) & set(after)):
        b, a = before[k], after[k]
        if len(a) < min_calls:
            continue
        few = max(1.0, 5.0 / min(len(b), len(a)))
        mb = float(np.median(b))
        mad = float(np.median(np.abs(b - mb))) * 1.4826 if len(b) >= 3 else 0.0
        spread = max(mad / np.sqrt(min(len(b), len(a))) * 3.0, 0.1 * mb * few, 1.0 * few)
        out[k] = (float(np.median(a)) - mb) / spread
    return out


def edge_gaps(spans: Sequence[Span]) -> dict[tuple[str, str], np.ndarray]:
    """Per caller -> callee pair: the gaps of its calls (see ``edge_calls``)."""
    return {k: g for k, (_, g) in edge_calls(spans).items()}


@dataclass(frozen=True, slots=True)
class Overhead:
    """What a call between two services usually costs in this system: the median of the edges' typical
    gaps and a robust spread of them. Calls inside one cluster all pay about the same few milliseconds,
    so an edge whose calls cost a hundred times that is slow whatever its own (short) history says."""

    level: float
    spread: float

    @property
    def ceiling(self) -> float:
        return self.level + 3.0 * self.spread


def system_overhead(*windows: dict[tuple[str, str], np.ndarray]) -> Overhead | None:
    meds: dict[tuple[str, str], float] = {}
    for w in windows:
        for k, g in w.items():
            if len(g) and k not in meds:
                meds[k] = float(np.median(g))
    if len(meds) < 5:
        return None
    m = np.asarray(list(meds.values()))
    level = float(np.median(m))
    mad = float(np.median(np.abs(m - level))) * 1.4826
    return Overhead(level, max(mad, 0.25 * level, 1.0))


@dataclass(frozen=True, slots=True)
class GapShift:
    caller: str
    callee: str
    before: float  # the reference: the edge's median gap before (capped at the system's ceiling)
    after: float  # median gap after
    z: float
    n_before: int
    n_after: int
    preexisting: bool  # the edge was already far out of the system's range when its calls were first seen
    onset: float | None = None  # the first call of the run of slow calls


Calls = dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]


def _onset(times: np.ndarray, slow: np.ndarray, run: int = 5) -> float | None:
    """The first slow call after which most calls (60 % of the next ``run``) stay slow."""
    n = len(slow)
    for i in range(n):
        if slow[i] and slow[i:i + run].mean() >= 0.6:
            return float(times[i])
    return None


def compare_gaps(before: Calls, after: Calls, min_calls: int = 2, *, cut: float | None = None,
                 seen_s: float = 120.0) -> list[GapShift]:
    """Per edge called at least ``min_calls`` times after: how far its median gap moved.

    ``before``/``after`` map an edge to its calls' (start times, gaps), time-ordered (``edge_calls``).
    A rarely called service still tells a lot when its calls go from milliseconds to seconds, so an
    edge needs only a couple of calls; the spread floor widens as the sample shrinks. An edge with
    no or few calls before is read against its own few calls and against what calls cost across the
    system (``Overhead``): its own history is capped at the system's ceiling, so a baseline that already
    held the delay (a fault that began just before the cut) does not hide it. An edge that was out of
    range from its very first call (never seen healthy) is marked pre-existing only when that first call
    is at least ``seen_s`` before ``cut``: traces kept for a minute or two before an alert cannot tell a
    delay that began with the incident (alerts fire a while after their cause) from an older one.
    """
    empty = (np.zeros(0), np.zeros(0))
    sys_oh = system_overhead({k: g for k, (_, g) in before.items()}, {k: g for k, (_, g) in after.items()})
    out: list[GapShift] = []
    for k in sorted(after):
        ta, a = after[k]
        tb, b = before.get(k, empty)
        if len(a) < min_calls:
            continue
        if len(b) == 0 and sys_oh is None:
            continue
        qa = float(np.median(a))
        few = max(1.0, 5.0 / max(1, min(len(b), len(a))))
        capped = False
        if len(b):
            ref = float(np.median(b))
            if sys_oh is not None and ref > sys_oh.ceiling:
                ref, capped = sys_oh.ceiling, True
            mad = float(np.median(np.abs(b - np.median(b)))) * 1.4826 if len(b) >= 3 and not capped else 0.0
            spread = max(mad / np.sqrt(min(len(b), len(a))) * 3.0, 0.1 * ref * few, 1.0 * few)
        else:
            assert sys_oh is not None
            ref = sys_oh.level
            spread = max(sys_oh.spread, 0.1 * ref) * few
        if sys_oh is not None:
            spread = max(spread, 0.5 * sys_oh.level * few)
        z = (qa - ref) / spread
        times = np.concatenate((tb, ta))
        gaps = np.concatenate((b, a))
        slow = (gaps - ref) / spread >= 3.0
        onset = _onset(times, slow) if z >= 3.0 else None
        pre = capped and bool(slow[0]) and (cut is None or cut - float(times[0]) >= seen_s)
        out.append(GapShift(k[0], k[1], ref, qa, z, len(b), len(a), pre, onset))
    return out
