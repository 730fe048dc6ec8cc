"""Context checks before any ranking: did the sources return enough, about named services, inside the windows?

A ranking is only as good as what it ranks over. A catalog that matches none of the store's metric names, a
service label no series carries, or a window that holds no sample all leave the engine with nothing (or with
series named "") to reason over; it must then say so and why, not answer. ``measure`` reads what ``gather``
returned (and what the metrics source says it holds) and ``refusal`` decides whether that can support a
ranking. The same coverage is what ``onwatch sources check`` prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bot.investigate.look import Gathered
from integrations.base import SignalInventory, Sources, TimeWindow

SHOWN_NAMES = 8  # metric names quoted in a catalog-mismatch line


@dataclass(frozen=True, slots=True)
class ProfileCoverage:
    """One catalog profile: how many of its signals the metrics store can answer."""

    profile: str
    service_label: str
    signals: int
    found: tuple[str, ...]
    fallback: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "service_label": self.service_label, "signals": self.signals,
                "found": list(self.found), "fallback": self.fallback}


@dataclass(frozen=True, slots=True)
class SourceCoverage:
    """One kind of source: whether it is configured and answered, which named services it covers, how many
    items had no service name (dropped), and how many samples fall in each window."""

    source: str  # metrics | logs | traces | changes | topology
    configured: bool
    answered: bool
    services: tuple[str, ...] = ()
    unnamed: int = 0
    samples: Mapping[str, int] = field(default_factory=dict)
    newest: float | None = None  # time of the newest sample, to tell a window placed after the data

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "configured": self.configured, "answered": self.answered,
                "services": list(self.services), "unnamed": self.unnamed, "samples": dict(self.samples),
                "newest": self.newest}


@dataclass(frozen=True, slots=True)
class Coverage:
    windows: Mapping[str, TimeWindow]
    sources: tuple[SourceCoverage, ...]
    catalog: str = ""
    profiles: tuple[ProfileCoverage, ...] = ()
    signals: tuple[str, ...] = ()  # catalog signals that exist in the store
    metric_names: int = 0
    missing: tuple[str, ...] = ()  # lines for the report's ``missing``, each naming what to fix

    def source(self, kind: str) -> SourceCoverage | None:
        return next((s for s in self.sources if s.source == kind), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "windows": {k: [w.start, w.end] for k, w in self.windows.items()},
            "catalog": self.catalog,
            "profiles": [p.to_dict() for p in self.profiles],
            "signals": list(self.signals),
            "metric_names": self.metric_names,
            "sources": [s.to_dict() for s in self.sources],
            "missing": list(self.missing),
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _count(times: np.ndarray, w: TimeWindow) -> int:
    return int(np.searchsorted(times, w.end, side="right") - np.searchsorted(times, w.start, side="left"))


def _samples(times: list[np.ndarray], windows: Mapping[str, TimeWindow]) -> tuple[dict[str, int], float | None]:
    counts = {name: sum(_count(t, w) for t in times) for name, w in windows.items()}
    newest = max((float(t[-1]) for t in times if len(t)), default=None)
    return counts, newest


def _catalog_lines(inv: SignalInventory) -> list[str]:
    lines: list[str] = []
    if not inv.names:
        return ["metrics: the store lists no metric names; check sources.metrics.url and that it is being scraped"]
    shown = ", ".join(inv.names[:SHOWN_NAMES]) + (", …" if len(inv.names) > SHOWN_NAMES else "")
    for p in inv.profiles:
        if p.fallback or not p.signals or p.found:
            continue
        lines.append(f"metrics: 0 of {len(p.signals)} catalog signals found for profile {p.profile}; "
                     f"these exist: {shown} ({len(inv.names)} names); set sources.metrics.catalog")
    if not inv.signals and not lines:
        lines.append(f"metrics: no signal of catalog {inv.catalog} found; these exist: {shown}; "
                     "set sources.metrics.catalog")
    return lines


def measure(g: Gathered, sources: Sources, windows: Mapping[str, TimeWindow]) -> Coverage:
    """The coverage of what ``gather`` returned over ``windows`` (e.g. baseline and incident)."""
    missing: list[str] = []
    out: list[SourceCoverage] = []

    # metrics
    by_signal: dict[str, set[str]] = {}
    for svc, sig in g.series:
        by_signal.setdefault(sig, set()).add(svc)
    counts, newest = _samples([t for t, _ in g.series.values()], windows)
    out.append(SourceCoverage("metrics", sources.metrics is not None,
                              g.inventory is not None or bool(g.signal_links) or bool(g.series),
                              tuple(sorted({svc for svc, _ in g.series})), g.unnamed.get("metrics", 0),
                              counts, newest))
    inv = g.inventory
    profiles: tuple[ProfileCoverage, ...] = ()
    if inv is not None:
        profiles = tuple(ProfileCoverage(p.profile, p.service_label, len(p.signals), p.found, p.fallback)
                         for p in inv.profiles)
        missing += _catalog_lines(inv)
    bare = sorted(g.unnamed_signals - set(by_signal))
    if bare:
        labels = sorted({inv.labels.get(s, "?") for s in bare}) if inv is not None else []
        label = f" `{'`, `'.join(labels)}`" if labels else ""
        missing.append(f"metrics: {len(bare)} signal(s) returned series that carry no service label{label}: "
                       f"{', '.join(bare[:10])}; set sources.metrics.service_label or the catalog's")

    if inv is not None and inv.signals and not g.series and not bare and g.signal_links:
        missing.append(f"metrics: {len(inv.signals)} catalog signal(s) exist but none has a sample between "
                       f"{_iso(g.window.start)} and {_iso(g.window.end)}; is the time right?")

    # logs and traces
    log_times = [np.asarray([ln.time for ln in g.logs], dtype=np.float64)] if g.logs else []
    counts, newest = _samples(log_times, windows)
    out.append(SourceCoverage("logs", sources.logs is not None, g.logs is not None,
                              tuple(sorted({ln.service for ln in g.logs or []})), g.unnamed.get("logs", 0),
                              counts, newest))
    span_times = [np.asarray([s.start_time for s in g.spans], dtype=np.float64)] if g.spans else []
    counts, newest = _samples(span_times, windows)
    out.append(SourceCoverage("traces", sources.traces is not None, g.spans is not None,
                              tuple(sorted({s.service for s in g.spans or []})), g.unnamed.get("traces", 0),
                              counts, newest))
    out.append(SourceCoverage("changes", bool(sources.changes), g.change_sources > 0,
                              tuple(sorted({c.service for c in g.changes})), g.unnamed.get("changes", 0),
                              {"all": len(g.changes)}))
    out.append(SourceCoverage("topology", bool(sources.topology), g.topology_sources > 0,
                              tuple(sorted({e.caller for e in g.edges} | {e.callee for e in g.edges})),
                              g.unnamed.get("topology", 0), {"edges": len(g.edges)}))
    for sc in out:
        if sc.unnamed and sc.source != "metrics":
            missing.append(f"{sc.source}: {sc.unnamed} item(s) without a service name were left out")
        if sc.source in ("metrics", "logs", "traces") and sc.answered and sc.services:
            for name, w in windows.items():
                if sc.samples.get(name, 0) == 0:
                    late = f"; the newest is at {_iso(sc.newest)}" if sc.newest is not None else ""
                    missing.append(f"{sc.source}: no samples in the {name} window "
                                   f"({_iso(w.start)} to {_iso(w.end)}){late}")
    return Coverage(dict(windows), tuple(out), inv.catalog if inv else "", profiles,
                    tuple(inv.signals) if inv else tuple(sorted(by_signal)),
                    len(inv.names) if inv else 0, tuple(missing))


def refusal(cov: Coverage) -> str:
    """Why the coverage cannot support a ranking, or "" when it can.

    A ranking needs telemetry of named services both in the baseline and in the incident window, from at
    least one of metrics, logs and traces; otherwise any order would be an artefact of what is absent.
    """
    telemetry = [s for s in cov.sources if s.source in ("metrics", "logs", "traces")]
    named = [s for s in telemetry if s.services]
    if not named:
        why = "; ".join(cov.missing[:2]) or "no source returned telemetry"
        return f"no telemetry names a service, so there is nothing to rank ({why})"
    for name in cov.windows:
        if not any(s.samples.get(name, 0) for s in named):
            return f"no sample of any source falls in the {name} window, so there is nothing to compare"
    return ""
