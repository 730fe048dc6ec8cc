"""Gather the evidence: every source queried in parallel, with a deadline and bounded concurrency each.

A failing source never fails the investigation: its ``ToolResult`` error becomes a line of ``missing``
("replay-logs timed out after 10 s") and the engine reasons over what did come back.

This is also the boundary where data without a service name stops: a series, line, span, change or event
whose service is empty is counted in ``unnamed`` and dropped, so nothing downstream can blame "".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from integrations.base import (
    ChangeEvent,
    ClusterEvent,
    Edge,
    InventorySource,
    LogLine,
    Series,
    SignalInventory,
    Sources,
    Span,
    TimeWindow,
    ToolResult,
    call_tool,
    describe,
)

T = TypeVar("T")


@dataclass
class Gathered:
    window: TimeWindow
    series: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    queries: dict[tuple[str, str], str] = field(default_factory=dict)
    signal_links: dict[str, str] = field(default_factory=dict)
    logs: list[LogLine] | None = None
    logs_link: Callable[[str, TimeWindow], str] | None = None
    spans: list[Span] | None = None
    changes: list[ChangeEvent] = field(default_factory=list)
    change_sources: int = 0
    edges: set[Edge] = field(default_factory=set)
    topology_sources: int = 0
    cluster: list[ClusterEvent] | None = None
    missing: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    inventory: SignalInventory | None = None  # what the metrics source says it holds, when it can say
    unnamed: dict[str, int] = field(default_factory=dict)  # source kind -> items dropped for an empty service
    unnamed_signals: set[str] = field(default_factory=set)  # signals that returned a series without a service


def named(service: str) -> bool:
    """A service name that can be ranked: not empty, not blank."""
    return bool(service and service.strip())


def _keep_named(g: Gathered, kind: str, items: Sequence[T], service: Callable[[T], str]) -> list[T]:
    out = [x for x in items if named(service(x))]
    if len(out) < len(items):
        g.unnamed[kind] = g.unnamed.get(kind, 0) + len(items) - len(out)
    return out


class Limits:
    """Per-source deadlines and concurrency (one semaphore per source object)."""

    def __init__(self, timeout_s: float, concurrency: int):
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self._sems: dict[int, asyncio.Semaphore] = {}

    def sem(self, src: object) -> asyncio.Semaphore:
        key = id(src)
        if key not in self._sems:
            self._sems[key] = asyncio.Semaphore(self.concurrency)
        return self._sems[key]

    async def call(self, src: object, query: str, make: Callable[[], Awaitable[T]]) -> ToolResult[T]:
        async with self.sem(src):
            return await call_tool(describe(src), query, make(), self.timeout_s)


def _record(g: Gathered, res: ToolResult[Any]) -> bool:
    g.calls.append({"source": res.source, "query": res.query, "status": res.status,
                    "elapsed_ms": round(res.elapsed_ms, 1)})
    if not res.ok:
        g.missing.append(res.error or f"{res.source}: {res.status}")
    return res.ok


async def gather(
    sources: Sources,
    window: TimeWindow,
    limits: Limits,
    *,
    services: Sequence[str] | None = None,
    log_limit: int = 20000,
    span_limit: int = 100000,
    change_window: TimeWindow | None = None,
) -> Gathered:
    g = Gathered(window=window)
    tasks: list[asyncio.Task[None]] = []

    async def metrics() -> None:
        m = sources.metrics
        if m is None:
            g.missing.append("metrics: no metrics source configured")
            return
        if isinstance(m, InventorySource):
            inv = await limits.call(m, "available signals", m.inventory)
            if not _record(g, inv) or inv.data is None:
                return
            g.inventory = inv.data
            sigs = sorted(set(inv.data.signals))
        else:
            res = await limits.call(m, "available signals", m.available_signals)
            if not _record(g, res) or res.data is None:
                return
            sigs = sorted(set(res.data))

        async def one(sig: str) -> None:
            r = await limits.call(m, f"{sig} by (service)", lambda: m.signal(sig, window, services))
            if _record(g, r) and r.data is not None:
                g.signal_links[sig] = m.link(sig, window)
                for s in r.data:
                    add_series(g, s)

        async with asyncio.TaskGroup() as tg:
            for sig in sigs:
                tg.create_task(one(sig))

    async def logs() -> None:
        src = sources.logs
        if src is None:
            g.missing.append("logs: no log source configured")
            return
        res = await limits.call(src, "log lines", lambda: src.lines(window, services, log_limit))
        if _record(g, res) and res.data is not None:
            lines = _keep_named(g, "logs", res.data, lambda ln: ln.service)
            g.logs = sorted(lines, key=lambda ln: (ln.time, ln.service, ln.message))
            g.logs_link = src.link

    async def traces() -> None:
        src = sources.traces
        if src is None:
            g.missing.append("traces: no trace source configured")
            return
        res = await limits.call(src, "spans", lambda: src.spans(window, services, span_limit))
        if _record(g, res) and res.data is not None:
            spans = _keep_named(g, "traces", res.data, lambda s: s.service)
            g.spans = sorted(spans, key=lambda s: (s.start_time, s.trace_id, s.span_id))

    async def changes() -> None:
        if not sources.changes:
            g.missing.append("changes: no change source configured")
            return
        cw = change_window or window
        for src in sources.changes:
            res = await limits.call(src, "changes", lambda src=src: src.changes(cw, services))  # type: ignore[misc]
            if _record(g, res) and res.data is not None:
                g.change_sources += 1
                g.changes.extend(_keep_named(g, "changes", res.data, lambda c: c.service))
        g.changes.sort(key=lambda c: (c.time, c.service, c.kind, c.version))

    async def topology() -> None:
        for src in sources.topology:
            res = await limits.call(src, "edges", src.edges)
            if _record(g, res) and res.data is not None:
                g.topology_sources += 1
                g.edges.update(_keep_named(g, "topology", res.data,
                                           lambda e: e.caller if named(e.callee) else ""))

    async def cluster() -> None:
        src = sources.cluster
        if src is None:
            return
        res = await limits.call(src, "events", lambda: src.events(window, services))
        if _record(g, res) and res.data is not None:
            events = _keep_named(g, "cluster", res.data, lambda e: e.service)
            g.cluster = sorted(events, key=lambda e: (e.time, e.service, e.reason))

    async with asyncio.TaskGroup() as tg:
        for fn in (metrics, logs, traces, changes, topology, cluster):
            tasks.append(tg.create_task(fn()))
    g.missing.sort()
    g.calls.sort(key=lambda c: (c["source"], c["query"]))
    return g


def add_series(g: Gathered, s: Series) -> None:
    if not s.points:
        return
    if not named(s.service):
        g.unnamed["metrics"] = g.unnamed.get("metrics", 0) + 1
        g.unnamed_signals.add(s.signal)
        return
    arr = np.asarray(s.points, dtype=np.float64)
    t, v = arr[:, 0], arr[:, 1]
    ok = np.isfinite(t) & np.isfinite(v)
    t, v = t[ok], v[ok]
    if len(t) == 0:
        return
    order = np.argsort(t, kind="stable")
    key = (s.service, s.signal)
    if key in g.series:  # the same series twice (two pods, two queries): keep the later-starting one merged
        t0, v0 = g.series[key]
        t = np.concatenate((t0, t[order]))
        v = np.concatenate((v0, v[order]))
        order = np.argsort(t, kind="stable")
    g.series[key] = (t[order], v[order])
    g.queries[key] = s.query or f'{s.signal}{{service="{s.service}"}}'
