"""The trace data both the fake Tempo and the fake Jaeger serve."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FakeSpan:
    trace_id: str  # 32 hex
    span_id: str  # 16 hex
    parent: str
    service: str
    operation: str
    start_ns: int
    duration_ns: int
    error: bool = False


def by_trace(spans: list[FakeSpan]) -> dict[str, list[FakeSpan]]:
    out: dict[str, list[FakeSpan]] = {}
    for s in spans:
        out.setdefault(s.trace_id, []).append(s)
    return out
