"""Prometheus metrics of one onwatch process, in their own registry (no global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.http_requests = Counter("onwatch_http_requests", "HTTP requests served",
                                     ["method", "route", "status"], registry=r)
        self.jobs = Gauge("onwatch_jobs", "durable jobs by state", ["state"], registry=r)
        self.job_events = Counter("onwatch_job_events", "job state transitions seen by this replica",
                                  ["kind", "state"], registry=r)
        self.investigation_seconds = Histogram(
            "onwatch_investigation_duration_seconds", "wall time of one investigation",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120), registry=r)
        self.alerts = Counter("onwatch_alerts_received", "alerts received by source", ["source"], registry=r)
        self.triage_pass_seconds = Histogram(
            "onwatch_triage_pass_duration_seconds", "wall time of one triage transaction (one webhook batch)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=r)
        self.dead_letters = Counter("onwatch_dead_letters", "payloads rejected into the dead-letter table",
                                    ["source"], registry=r)
        self.dead_letters_dropped = Counter("onwatch_dead_letters_dropped",
                                            "refused payloads not kept (rate) or dropped oldest first (pruned)",
                                            ["reason"], registry=r)

    def job_state(self, kind: str, state: str) -> None:
        self.job_events.labels(kind, state).inc()
