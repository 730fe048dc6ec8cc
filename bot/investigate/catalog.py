"""What each signal means for root-cause reasoning: its family, its bad direction, its floors, its weight.

Resource signals (cpu, memory, disk, network) point at the service itself. Latency and errors
propagate upstream along callers, so they point at a service only when its callees are healthy.
A service's client latency is the time it waits for its downstream: it points away from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class SignalInfo:
    name: str
    family: str  # cpu | memory | disk | network | latency | client_latency | errors | origin | traffic | node | logs | traces | other
    direction: int  # +1 up is bad, -1 down is bad, 0 either way
    weight: float  # how much an anomaly of this signal says "the cause is in this service"
    rel_floor: float  # spread floor relative to the baseline level
    abs_floor: float  # spread floor in the signal's unit
    propagates: bool  # travels upstream to callers (latency, errors)
    # a share of this full scale (100 for a success percentage): its noise scales with the complement
    # (the failing share), not with the level, so 100 -> 88 % is a large move, not 12 % of a big number
    full_scale: float = 0.0
    # a failing share of requests on this scale (1.0 for an error rate as a fraction): one failed request among
    # those served moves it by scale / requests, which sets its noise floor when the volume is known
    error_share: float = 0.0

    @property
    def share_scale(self) -> float:
        """The full scale of a share of requests (a success or a failing share); 0 for any other signal."""
        return self.full_scale or self.error_share

    @property
    def resource(self) -> bool:
        return self.family in ("cpu", "memory", "disk", "network")


@lru_cache(maxsize=512)
def classify(signal: str) -> SignalInfo:
    s = signal.lower()
    if s.startswith("node_"):
        return SignalInfo(signal, "node", 1, 0.35, 0.05, 1.0 if "pct" in s or "rate" in s else 0.0, False)
    if s in ("log_errors",):
        return SignalInfo(signal, "logs", 1, 0.8, 0.1, 1.0, True)
    if s in ("log_warnings",):
        # a warning says something is odd (an empty result, a retry), not that requests fail
        return SignalInfo(signal, "logs", 1, 0.5, 0.1, 1.0, True)
    if s == "error_origin":
        # requests fail first here: the failure is this service's own, not one it passes on
        return SignalInfo(signal, "origin", 1, 1.0, 0.1, 1.0, True)
    if s.startswith("trace_call_gap"):
        return SignalInfo(signal, "traces", 1, 1.0, 0.1, 1.0, True)
    if s == "callers_wait":
        return SignalInfo(signal, "callers_wait", 1, 0.6, 0.1, 1.0, True)
    if s.startswith("trace_self"):
        return SignalInfo(signal, "traces", 1, 0.95, 0.1, 1.0, False)
    if s.startswith("trace_error"):
        return SignalInfo(signal, "traces", 1, 0.9, 0.0, 0.02, True)
    if s.startswith("client_latency") or s.startswith("downstream_latency"):
        return SignalInfo(signal, "client_latency", 1, 0.3, 0.1, 1e-3, True)
    if "latency" in s or "duration" in s or "response_time" in s:
        return SignalInfo(signal, "latency", 1, 0.9, 0.1, 1e-3, True)
    if s in ("availability", "success_rate") or "success" in s or "availability" in s:
        return SignalInfo(signal, "errors", -1, 1.0, 0.0, 1.0, True, full_scale=100.0)
    if s == "error_rate" or s.endswith("_error_rate"):
        return SignalInfo(signal, "errors", 1, 1.0, 0.0, 0.01, True, error_share=1.0)
    if "error" in s or "fail" in s or s.endswith("_5xx"):
        return SignalInfo(signal, "errors", 1, 1.0, 0.0, 0.01, True)
    if "cpu" in s or "throttl" in s:
        return SignalInfo(signal, "cpu", 1, 1.0, 0.05, 1.0 if "pct" in s or s == "cpu" else 0.0, False)
    if "mem" in s or "oom" in s:
        return SignalInfo(signal, "memory", 1, 1.0, 0.05, 0.0, False)
    if "disk" in s or s.startswith("fs_") or "filesystem" in s or "inode" in s:
        return SignalInfo(signal, "disk", 1, 0.9, 0.1, 0.0, False)
    if s.startswith("network") or s.startswith("net_") or "packet" in s or "retransmit" in s:
        return SignalInfo(signal, "network", 0, 0.6, 0.1, 0.0, False)
    if "request" in s or "workload" in s or s in ("qps", "rps", "throughput", "load"):
        return SignalInfo(signal, "traffic", 0, 0.45, 0.1, 0.0, False)
    return SignalInfo(signal, "other", 0, 0.3, 0.1, 0.0, False)
