"""The small typed interfaces the engine reads telemetry through, and the one result envelope.

The investigation engine only sees these types; which system sits behind them (Prometheus, a case
bundle, Loki, Tempo, Jaeger, Kubernetes, GitHub, ...) is decided by ``integrations.registry``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from bot.rfc3339 import parse_rfc3339 as parse_rfc3339  # the one RFC 3339 parser (zone required)

T = TypeVar("T")


# ---------------------------------------------------------------- errors


class SourceError(Exception):
    """A source call failed. ``source`` names the system; the message is written for a person."""

    def __init__(self, source: str, message: str):
        self.source = source
        super().__init__(f"{source}: {message}")


class SourceTimeout(SourceError):
    """The source did not answer within its timeout."""


class SourceUnavailable(SourceError):
    """Connection refused, DNS failure, or 5xx after the retries ran out."""


class SourceRejected(SourceError):
    """The source refused the request (4xx: bad query, auth, not found)."""


class SourceTooLarge(SourceError):
    """The answer exceeded the configured size cap."""


class SourceBadResponse(SourceError):
    """The answer could not be parsed (truncated JSON, unexpected shape)."""


# ---------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class TimeWindow:
    start: float
    end: float

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"window ends before it starts: {self.start} > {self.end}")

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class Series:
    """One signal of one service: ``points`` are (unix seconds, value), sorted by time."""

    service: str
    signal: str
    points: list[tuple[float, float]]
    query: str = ""


@dataclass(frozen=True, slots=True)
class LogLine:
    time: float
    service: str
    level: str
    message: str
    trace_id: str = ""


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    service: str
    operation: str
    start_time: float
    duration_ms: float
    status: Literal["ok", "error", ""] = ""


ChangeKind = Literal["deploy", "config", "flag", "scale", "rollback", "infra", "other"]


def keep_whole_traces(spans: list[Span], limit: int) -> list[Span]:
    """At most ``limit`` spans, dropping whole traces (largest ids last) rather than cutting one in half."""
    if len(spans) <= limit:
        return spans
    sizes: dict[str, int] = {}
    for s in spans:
        sizes[s.trace_id] = sizes.get(s.trace_id, 0) + 1
    keep: set[str] = set()
    total = 0
    for tid in sorted(sizes):
        if total + sizes[tid] <= limit:
            keep.add(tid)
            total += sizes[tid]
    return [s for s in spans if s.trace_id in keep]


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A deploy, config change, flag flip or scaling event, whatever system reported it."""

    service: str
    time: float
    kind: ChangeKind = "deploy"
    version: str = ""
    previous_version: str = ""
    description: str = ""
    url: str = ""
    diff_url: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """A Kubernetes-style event or pod state: OOMKilled, CrashLoopBackOff, Evicted, probe failure, restart."""

    time: float
    service: str
    reason: str
    message: str = ""
    object: str = ""
    node: str = ""
    count: int = 1


@dataclass(frozen=True, slots=True)
class Edge:
    caller: str
    callee: str


@dataclass(frozen=True, slots=True)
class ProfileInventory:
    """How much of one catalog profile the metrics store holds: ``found`` of its ``signals`` exist."""

    profile: str
    service_label: str
    signals: tuple[str, ...]
    found: tuple[str, ...]
    fallback: bool = False  # every metric name is a signal of this profile


@dataclass(frozen=True, slots=True)
class SignalInventory:
    """What a metrics source can answer, and the facts behind it, so an investigation can say why a
    signal is absent ("0 of 14 catalog signals found for profile kubernetes; these exist: ...")."""

    signals: tuple[str, ...]  # the signals to query
    catalog: str = ""
    profiles: tuple[ProfileInventory, ...] = ()
    names: tuple[str, ...] = ()  # metric names in the store (the store's own internals left out)
    labels: dict[str, str] = field(default_factory=dict)  # signal -> the label that names its service


# ---------------------------------------------------------------- interfaces


@runtime_checkable
class MetricsSource(Protocol):
    name: str

    async def signal(
        self, signal: str, window: TimeWindow, services: Sequence[str] | None = None
    ) -> list[Series]:
        """One query for ``signal`` aggregated by service: a series per service."""
        ...

    async def available_signals(self) -> list[str]: ...

    def link(self, signal: str, window: TimeWindow) -> str: ...


@runtime_checkable
class InventorySource(Protocol):
    """A metrics source that can also say which catalog signals exist and which metric names it holds."""

    async def inventory(self) -> SignalInventory: ...


@runtime_checkable
class AlertStateSource(Protocol):
    """A metrics source that knows when an alert's condition first held (Prometheus' ``ALERTS_FOR_STATE``)."""

    async def pending_since(self, labels: Mapping[str, str], at: float) -> float | None:
        """When the alerting rule behind ``labels`` became active (pending), read at ``at``; ``None`` unknown."""
        ...


@runtime_checkable
class LogSource(Protocol):
    name: str

    async def error_counts(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[Series]:
        """Error-line counts per service over time (signal name ``log_errors``)."""
        ...

    async def lines(
        self, window: TimeWindow, services: Sequence[str] | None = None, limit: int = 1000
    ) -> list[LogLine]: ...

    def link(self, service: str, window: TimeWindow) -> str: ...


@runtime_checkable
class TraceSource(Protocol):
    name: str

    async def spans(
        self, window: TimeWindow, services: Sequence[str] | None = None, limit: int = 5000
    ) -> list[Span]: ...

    async def trace(self, trace_id: str) -> list[Span]: ...

    def link(self, trace_id: str) -> str: ...


@runtime_checkable
class ChangeSource(Protocol):
    name: str

    async def changes(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[ChangeEvent]: ...


@runtime_checkable
class TopologySource(Protocol):
    name: str

    async def edges(self) -> list[Edge]: ...


@runtime_checkable
class ClusterSource(Protocol):
    """Kubernetes events and pod states, mapped to services."""

    name: str

    async def events(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[ClusterEvent]: ...


@dataclass
class Sources:
    """What one investigation can see. Any member may be missing; the engine reports it as missing."""

    metrics: MetricsSource | None = None
    logs: LogSource | None = None
    traces: TraceSource | None = None
    changes: list[ChangeSource] = field(default_factory=list)
    topology: list[TopologySource] = field(default_factory=list)
    cluster: ClusterSource | None = None
    now: float | None = None  # the clock investigations run at; None means wall-clock time

    def clock(self) -> float:
        return self.now if self.now is not None else time.time()

    async def aclose(self) -> None:
        seen: set[int] = set()
        for src in [self.metrics, self.logs, self.traces, self.cluster, *self.changes, *self.topology]:
            closer = getattr(src, "aclose", None)
            if src is not None and closer is not None and id(src) not in seen:
                seen.add(id(src))
                await closer()


# ---------------------------------------------------------------- the result envelope


@dataclass(slots=True)
class ToolResult(Generic[T]):
    """One envelope for every source call, so the engine handles success and failure the same way."""

    source: str
    query: str
    status: Literal["ok", "error", "timeout"]
    data: T | None = None
    error: str = ""
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


async def call_tool(source: str, query: str, call: Awaitable[T], timeout_s: float) -> ToolResult[T]:
    """Run one source call with a deadline and fold its typed failure into a ``ToolResult``."""
    started = time.perf_counter()
    try:
        data = await asyncio.wait_for(call, timeout=timeout_s)
    except TimeoutError:
        return ToolResult(source, query, "timeout", error=f"{source} timed out after {timeout_s:g} s",
                          elapsed_ms=(time.perf_counter() - started) * 1000)
    except SourceTimeout as exc:
        return ToolResult(source, query, "timeout", error=str(exc), elapsed_ms=(time.perf_counter() - started) * 1000)
    except SourceError as exc:
        return ToolResult(source, query, "error", error=str(exc), elapsed_ms=(time.perf_counter() - started) * 1000)
    return ToolResult(source, query, "ok", data=data, elapsed_ms=(time.perf_counter() - started) * 1000)


def describe(obj: Any) -> str:
    return getattr(obj, "name", type(obj).__name__)
