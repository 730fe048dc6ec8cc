"""Candidate causes, each tied to the findings that would support it.

Kinds: a deploy or config change of a service; saturation of a resource (cpu, memory, disk, network);
failure of a dependency (its own latency or errors, which its callers then inherit); a traffic surge;
a node problem; a new error pattern in a service's logs; a code error (failing requests start in the
service itself: its error spans or error logs have no failing callee beneath them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.investigate.findings import Finding
from integrations.base import ChangeEvent, ClusterEvent

RESOURCE_KIND = {"cpu": "cpu_saturation", "memory": "memory_saturation", "disk": "disk_saturation",
                 "network": "network_saturation"}
PROPAGATING = ("latency", "errors", "traces", "logs", "callers_wait", "origin")
_CLUSTER_KIND = {
    "oomkilled": "memory_saturation", "oomkilling": "memory_saturation",
    "evicted": "node_problem", "nodenotready": "node_problem", "nodepressure": "node_problem",
    "diskpressure": "disk_saturation", "memorypressure": "node_problem",
}


@dataclass(slots=True)
class Hypothesis:
    service: str
    kind: str
    support: list[Finding] = field(default_factory=list)
    change: ChangeEvent | None = None
    events: list[ClusterEvent] = field(default_factory=list)
    raw: float = 0.0
    factors: dict[str, float] = field(default_factory=dict)
    refuted: str = ""
    notes: list[str] = field(default_factory=list)
    echo_of: tuple[str, ...] = ()  # services this one is only a caller-side view of (see scoring)

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.kind)

    def onset(self) -> float | None:
        ts = [f.onset for f in self.support if f.onset is not None]
        if self.change is not None:
            ts.append(self.change.time)
        return min(ts) if ts else None


def change_kind(c: ChangeEvent) -> str:
    if c.kind in ("config", "flag"):
        return "config_change"
    if c.kind in ("deploy", "rollback"):
        return "deploy"
    return f"{c.kind}_change"


def cluster_kind(e: ClusterEvent) -> str:
    r = e.reason.lower().replace("_", "").replace(" ", "")
    if r in _CLUSTER_KIND:
        return _CLUSTER_KIND[r]
    return "dependency_failure"  # crash loops, failed probes, restarts: the service itself is failing


# Failure classes: a hypothesis whose evidence names a specific, well-known failure is reported under that
# class, so remediation can match (and, where allowlisted, auto-run) the runbook made for it. Scoring is
# unchanged; only the reported kind becomes more precise.
_EVENT_CLASS = (
    ("oomkill", "oom_kill"),
    ("evicted", "pod_evicted"),
    ("crashloopbackoff", "crashloop"),
    ("backoff", "crashloop"),
    ("containercreating", "stuck_pod"),
    ("failedmount", "stuck_pod"),
    ("failedattachvolume", "stuck_pod"),
    ("terminating", "stuck_pod"),
)
_POOL_EXHAUSTED = re.compile(
    r"(connection|conn|db|database|jdbc|hikari|pg|redis)\W?\w*\W?pool\W.{0,40}(exhaust|timeout|timed out|full|"
    r"no (available|free|idle))|too many (connections|clients)|remaining connection slots are reserved|"
    r"connection is not available, request timed out|"
    r"(could not|unable to|cannot) (get|acquire|obtain) (a )?(jdbc |db |database )?connection",
    re.IGNORECASE,
)


def failure_class(h: Hypothesis) -> str:
    """The most specific failure class the hypothesis' own evidence shows, else its kind."""
    for e in sorted(h.events, key=lambda e: (e.time, e.reason)):
        reason = e.reason.lower().replace("_", "").replace(" ", "")
        for needle, cls in _EVENT_CLASS:
            if needle in reason:
                return cls
    if h.kind in ("error_pattern", "dependency_failure", "code_error"):
        for f in h.support:
            if f.source == "logs" and _POOL_EXHAUSTED.search(f.summary):
                return "connection_pool_exhausted"
    return h.kind


def form(
    findings: Sequence[Finding],
    changes: Sequence[ChangeEvent],
    events: Sequence[ClusterEvent],
    onset: float,
    change_horizon_s: float,
) -> list[Hypothesis]:
    hyps: dict[tuple[str, str], Hypothesis] = {}

    def get(svc: str, kind: str) -> Hypothesis:
        k = (svc, kind)
        if k not in hyps:
            hyps[k] = Hypothesis(svc, kind)
        return hyps[k]

    for f in findings:
        if not f.anomalous:
            continue
        fam = f.family
        if fam in RESOURCE_KIND:
            get(f.service, RESOURCE_KIND[fam]).support.append(f)
        elif fam in ("latency", "errors", "traces", "callers_wait"):
            get(f.service, "dependency_failure").support.append(f)
        elif fam == "logs":
            get(f.service, "error_pattern").support.append(f)
        elif fam == "origin":
            get(f.service, "code_error").support.append(f)
        elif fam == "traffic" and f.after > f.before:
            get(f.service, "traffic_surge").support.append(f)
        elif fam == "node":
            get(f.service, "node_problem").support.append(f)
    for c in changes:
        if onset - change_horizon_s <= c.time:
            h = get(c.service, change_kind(c))
            if h.change is None or abs(onset - c.time) < abs(onset - h.change.time):
                h.change = c
    for e in events:
        get(e.service, cluster_kind(e)).events.append(e)
    for h in hyps.values():
        h.support.sort(key=lambda f: (-f.strength, f.signal))
    return [hyps[k] for k in sorted(hyps)]
