"""The reliability figures, computed from plain facts so each definition is tested on crafted timelines.

Definitions (docs/reports.md has them for people; keep the two in step):

- time to detect: impact start (when known) or the first alert's start → incident opened;
- time to acknowledge: incident opened → the first human acknowledgement;
- time to mitigate: incident opened → the first fix verified as recovered, or resolution if sooner/no fix;
- time to resolve: incident opened → resolved;
- change fail rate: deployments followed by an incident whose confirmed (remembered) or top cause is that
  deployment, over all deployments onwatch recorded or saw in the window;
- failed deployment recovery time: a failed deployment → its incident mitigated;
- pages per on-call shift: incidents opened at a paging severity (high, critical), per shift, against two.

Medians and 90th percentiles use linear interpolation between closest ranks (numpy's default); an empty
set has no figure (None), never zero.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

SUSTAINABLE_PAGES_PER_SHIFT = 2
PAGING = frozenset({"high", "critical"})
CHANGE_MATCH_S = 1.0  # a deployment and a change evidence item are the same change within this many seconds
FALLBACK_CHANGE_WINDOW_S = 24 * 3600  # a deploy cause without a matching change item: the service's last deploy
DURATIONS = ("time_to_detect", "time_to_acknowledge", "time_to_mitigate", "time_to_resolve")


@dataclass(frozen=True, slots=True)
class Deployment:
    service: str
    at: float
    version: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What the reports need of one incident, read from the store (``bot.reports.load``)."""

    id: str
    severity: str
    services: tuple[str, ...]
    opened_at: float
    first_alert_at: float | None = None
    impact_start: float | None = None
    acked_at: float | None = None
    fix_verified_at: float | None = None
    resolved_at: float | None = None
    cause_service: str = ""
    cause_kind: str = ""
    cause_change_at: float | None = None  # the time of the change the cause's evidence names, if any

    @property
    def detect_start(self) -> float | None:
        return self.impact_start if self.impact_start is not None else self.first_alert_at

    @property
    def mitigated_at(self) -> float | None:
        times = [t for t in (self.fix_verified_at, self.resolved_at) if t is not None]
        return min(times) if times else None


@dataclass(frozen=True, slots=True)
class Stat:
    median_s: float | None
    p90_s: float | None
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {"median_s": _r3(self.median_s), "p90_s": _r3(self.p90_s), "n": self.n}


def _r3(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def stat(values: Iterable[float]) -> Stat:
    xs = sorted(values)
    if not xs:
        return Stat(None, None, 0)
    if len(xs) == 1:
        return Stat(xs[0], xs[0], 1)
    return Stat(statistics.median(xs), statistics.quantiles(xs, n=10, method="inclusive")[8], len(xs))


@dataclass(frozen=True, slots=True)
class DurationReport:
    overall: Stat
    by_severity: dict[str, Stat]
    by_service: dict[str, Stat]

    def as_dict(self) -> dict[str, Any]:
        return {**self.overall.as_dict(),
                "by_severity": {k: v.as_dict() for k, v in sorted(self.by_severity.items())},
                "by_service": {k: v.as_dict() for k, v in sorted(self.by_service.items())}}


@dataclass(frozen=True, slots=True)
class ShiftPages:
    start: float
    end: float
    pages: int


@dataclass(slots=True)
class Report:
    start: float
    end: float
    incidents: int
    durations: dict[str, DurationReport]
    deployments: int
    failed_deployments: list[tuple[Deployment, str]]  # (deployment, incident id)
    recovery: Stat
    shifts: list[ShiftPages]
    noise: dict[str, int] = field(default_factory=dict)

    @property
    def change_fail_rate(self) -> float | None:
        return len(self.failed_deployments) / self.deployments if self.deployments else None

    @property
    def shifts_over_limit(self) -> int:
        return sum(1 for s in self.shifts if s.pages > SUSTAINABLE_PAGES_PER_SHIFT)

    def as_dict(self, iso: Callable[[float], str | None]) -> dict[str, Any]:
        cfr = self.change_fail_rate
        pages = [s.pages for s in self.shifts]
        return {
            "window": {"start": iso(self.start), "end": iso(self.end), "incidents": self.incidents},
            **{k: self.durations[k].as_dict() for k in DURATIONS},
            "change_fail_rate": None if cfr is None else round(cfr, 4),
            "deployments": self.deployments,
            "failed_deployments": [{"service": d.service, "version": d.version, "at": iso(d.at), "incident": i}
                                   for d, i in self.failed_deployments],
            "failed_deployment_recovery_s": self.recovery.as_dict(),
            "pages_per_shift": {
                "limit": SUSTAINABLE_PAGES_PER_SHIFT, "shifts": len(self.shifts),
                "over_limit": self.shifts_over_limit, "max": max(pages, default=0),
                "mean": round(sum(pages) / len(pages), 3) if pages else None,
                "by_shift": [{"start": iso(s.start), "end": iso(s.end), "pages": s.pages} for s in self.shifts],
            },
            "noise": dict(self.noise),
        }


def _durations(incs: Sequence[IncidentFacts], measure: Callable[[IncidentFacts], float | None]) -> DurationReport:
    overall: list[float] = []
    by_sev: dict[str, list[float]] = {}
    by_svc: dict[str, list[float]] = {}
    for i in incs:
        v = measure(i)
        if v is None:
            continue
        v = max(0.0, v)  # an alert that started "after" the incident opened (clock skew) counts as instant
        overall.append(v)
        by_sev.setdefault(i.severity, []).append(v)
        for svc in i.services:
            by_svc.setdefault(svc, []).append(v)
    return DurationReport(stat(overall), {k: stat(v) for k, v in by_sev.items()},
                          {k: stat(v) for k, v in by_svc.items()})


def _since_open(end: Callable[[IncidentFacts], float | None]) -> Callable[[IncidentFacts], float | None]:
    def measure(i: IncidentFacts) -> float | None:
        t = end(i)
        return None if t is None else t - i.opened_at
    return measure


def _detect(i: IncidentFacts) -> float | None:
    start = i.detect_start
    return None if start is None else i.opened_at - start


def failed_deployment(inc: IncidentFacts, deploys: Sequence[Deployment]) -> Deployment | None:
    """The deployment an incident's cause names: the change its evidence points at, else the cause service's
    last deployment in the day before the incident opened. None when the cause is not a deployment."""
    if inc.cause_kind != "deploy" or not inc.cause_service:
        return None
    same = [d for d in deploys if d.service == inc.cause_service and d.at <= inc.opened_at]
    if inc.cause_change_at is not None:
        hit = [d for d in same if abs(d.at - inc.cause_change_at) <= CHANGE_MATCH_S]
        if hit:
            return hit[0]
    recent = [d for d in same if inc.opened_at - d.at <= FALLBACK_CHANGE_WINDOW_S]
    return max(recent, key=lambda d: d.at) if recent else None


def compute(incidents: Sequence[IncidentFacts], deployments: Sequence[Deployment], start: float, end: float,
            shifts: Sequence[tuple[float, float]], noise: dict[str, int] | None = None) -> Report:
    """Every figure for incidents opened and deployments made in [start, end)."""
    incs = [i for i in incidents if start <= i.opened_at < end]
    deploys = sorted((d for d in deployments if start <= d.at < end), key=lambda d: d.at)
    durations = {
        "time_to_detect": _durations(incs, _detect),
        "time_to_acknowledge": _durations(incs, _since_open(lambda i: i.acked_at)),
        "time_to_mitigate": _durations(incs, _since_open(lambda i: i.mitigated_at)),
        "time_to_resolve": _durations(incs, _since_open(lambda i: i.resolved_at)),
    }
    failed: dict[Deployment, str] = {}
    recovery: list[float] = []
    for i in sorted(incs, key=lambda i: i.opened_at):
        d = failed_deployment(i, deploys)
        if d is None or d in failed:
            continue
        failed[d] = i.id
        if i.mitigated_at is not None:
            recovery.append(max(0.0, i.mitigated_at - d.at))
    pages = sorted(i.opened_at for i in incs if i.severity in PAGING)
    shift_pages = [ShiftPages(a, b, sum(1 for t in pages if a <= t < b)) for a, b in shifts]
    return Report(start, end, len(incs), durations, len(deploys), list(failed.items()), stat(recovery),
                  shift_pages, dict(noise or {}))
