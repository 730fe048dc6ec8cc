"""Grouping: which incident an alert belongs to.

An alert joins an incident when it arrives within the incident's window (``group_window_s`` since the
incident last gained or changed an alert) and shares identity with it:

* the same service (score 3),
* a service next to one of the incident's services in the topology, caller or callee (score 2),
* the same alertname family in the same namespace, or no service but the same namespace (score 1),

and never across clusters (a missing cluster label is compatible with any). A resolved incident can
absorb an alert only within ``cooloff_s`` after it resolved (it reopens); after that a new incident opens.
Ties go to the incident with the most recent activity. Everything here is pure, so it is tested alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

_FAMILY_SUFFIX = re.compile(
    r"(?:[_\-\s]?(?:critical|crit|warning|warn|info|page|ticket|major|minor|high|low|p\d|sev\d|\d+))+$",
    re.IGNORECASE,
)


def placement(labels: Mapping[str, str]) -> tuple[str, str]:
    """The cluster and namespace an alert's labels place it in ("" when they do not say)."""
    return (labels.get("cluster") or labels.get("k8s_cluster") or labels.get("region") or "",
            labels.get("namespace") or labels.get("kubernetes_namespace") or labels.get("env") or "")


@lru_cache(maxsize=4096)
def alert_family(name: str) -> str:
    """``DiskSpaceLowCritical`` and ``DiskSpaceLow`` share a family; so do ``HighLatency_p1`` and ``HighLatency``.

    Cached: a storm repeats a handful of alert names thousands of times (the function is pure)."""
    base = _FAMILY_SUFFIX.sub("", name.strip()) or name.strip()
    return re.sub(r"[^a-z0-9]", "", base.lower())[:60]


@dataclass(frozen=True, slots=True)
class Identity:
    service: str
    cluster: str
    namespace: str
    family: str

    def key(self) -> str:
        """The ``Incident.group_key`` of an incident this alert opens."""
        parts = [f"c={self.cluster}", f"ns={self.namespace}", f"f={self.family}", f"s={self.service}"]
        return ";".join(p.replace(";", ",") for p in parts)[:200]


def identity_of(name: str, service: str, labels: Mapping[str, str]) -> Identity:
    """The identity an alert groups by."""
    cluster, namespace = placement(labels)
    return Identity(service=service, cluster=cluster, namespace=namespace, family=alert_family(name))


@lru_cache(maxsize=4096)
def parse_key(key: str) -> Identity:
    """The identity an incident's ``group_key`` records (cached: every pass re-reads the open incidents' keys)."""
    d: dict[str, str] = {}
    for part in key.split(";"):
        k, _, v = part.partition("=")
        d[k] = v
    return Identity(service=d.get("s", ""), cluster=d.get("c", ""), namespace=d.get("ns", ""), family=d.get("f", ""))


def neighbours(topology: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """Undirected adjacency from ``caller -> callees``."""
    adj: dict[str, set[str]] = {}
    for caller, callees in topology.items():
        for callee in callees:
            if callee == caller:
                continue
            adj.setdefault(caller, set()).add(callee)
            adj.setdefault(callee, set()).add(caller)
    return adj


@dataclass(slots=True)
class Candidate:
    """What grouping needs to know about an incident (open, or resolved within its cool-off)."""

    incident_id: str
    identity: Identity
    services: set[str]
    status: str
    last_activity: float
    resolved_at: float | None = None
    families: set[str] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)


def score(ident: Identity, cand: Candidate, adj: Mapping[str, set[str]]) -> int:
    if ident.cluster and cand.identity.cluster and ident.cluster != cand.identity.cluster:
        return 0
    if ident.service and ident.service in cand.services:
        return 3
    if ident.service and any(ident.service in adj.get(s, ()) for s in cand.services):
        return 2
    namespaces = cand.namespaces | ({cand.identity.namespace} - {""})
    if ident.namespace and ident.namespace in namespaces:
        families = cand.families | ({cand.identity.family} - {""})
        if not ident.service or ident.family in families:
            return 1
    return 0


def live(c: Candidate, now: float, window_s: float, cooloff_s: float) -> bool:
    """Whether ``c`` can take an alert at ``now``: open and active within the window, or resolved within the
    cool-off (it would reopen)."""
    if c.status == "resolved":
        return c.resolved_at is not None and now - c.resolved_at <= cooloff_s
    return now - c.last_activity <= window_s


def choose(ident: Identity, candidates: Iterable[Candidate], adj: Mapping[str, set[str]], now: float,
           window_s: float, cooloff_s: float) -> Candidate | None:
    """The incident this alert joins, or None (it opens a new one)."""
    best: tuple[int, float] | None = None
    chosen: Candidate | None = None
    for c in candidates:
        if not live(c, now, window_s, cooloff_s):
            continue
        s = score(ident, c, adj)
        if s == 0:
            continue
        rank = (s, c.last_activity)
        if best is None or rank > best:
            best, chosen = rank, c
    return chosen


def absorb(cand: Candidate, ident: Identity, now: float) -> None:
    """Record that an alert joined ``cand`` so later alerts of the same batch see it."""
    if ident.service:
        cand.services.add(ident.service)
    if ident.family:
        cand.families.add(ident.family)
    if ident.namespace:
        cand.namespaces.add(ident.namespace)
    cand.last_activity = now


class CandidateIndex:
    """Candidates indexed by service and namespace, so a storm over many open incidents stays linear."""

    def __init__(self, adj: Mapping[str, set[str]]):
        self.adj = adj
        self.all: dict[str, Candidate] = {}
        self.by_service: dict[str, dict[str, Candidate]] = {}
        self.by_namespace: dict[str, dict[str, Candidate]] = {}

    def add(self, cand: Candidate) -> None:
        self.all[cand.incident_id] = cand
        self._index(cand)

    def _index(self, cand: Candidate) -> None:
        for svc in cand.services:
            self.by_service.setdefault(svc, {})[cand.incident_id] = cand
        for ns in cand.namespaces | ({cand.identity.namespace} - {""}):
            self.by_namespace.setdefault(ns, {})[cand.incident_id] = cand

    def absorb(self, cand: Candidate, ident: Identity, now: float) -> None:
        """``absorb``, re-indexing the candidate only when the alert brought it a new service or namespace."""
        grows = (ident.service and ident.service not in cand.services) or (
            ident.namespace and ident.namespace not in cand.namespaces)
        absorb(cand, ident, now)
        if grows:
            self._index(cand)

    def get(self, incident_id: str | None) -> Candidate | None:
        return self.all.get(incident_id) if incident_id else None

    def best(self, ident: Identity, now: float, window_s: float, cooloff_s: float) -> Candidate | None:
        """``choose`` over the candidates that could score above zero for ``ident`` (``near``)."""
        return choose(ident, self.near(ident), self.adj, now, window_s, cooloff_s)

    def near(self, ident: Identity) -> list[Candidate]:
        """Every candidate that could score above zero for ``ident``."""
        found: dict[str, Candidate] = {}
        if ident.service:
            found.update(self.by_service.get(ident.service, {}))
            for n in self.adj.get(ident.service, ()):
                found.update(self.by_service.get(n, {}))
        if ident.namespace:
            found.update(self.by_namespace.get(ident.namespace, {}))
        return list(found.values())
