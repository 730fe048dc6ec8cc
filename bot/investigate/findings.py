"""Turn gathered telemetry into findings: one per series (metrics), template (logs) or service (traces).

A finding says how far a signal of a service moved from its baseline (a robust z in the signal's bad
direction), when it started to move, and whether it had already moved before the baseline ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bot.investigate.catalog import SignalInfo, classify
from bot.investigate.look import Gathered
from bot.investigate.scope import Scope
from bot.investigate.spans import compare, compare_gaps, edge_gaps, service_spans
from bot.investigate.stats import estimate_step, forward_fill, make_grid, shift_matrix, strength_score
from bot.investigate.templates import mine_shifts
from integrations.base import TimeWindow

THRESHOLD = 3.0


@dataclass(slots=True)
class Finding:
    service: str
    signal: str
    info: SignalInfo
    source: str  # metrics | logs | traces
    z: float
    onset: float | None
    preexisting: bool
    before: float
    after: float
    query: str
    link: str
    summary: str = ""
    peak: float = 0.0
    id: str = ""
    breadth: float = 1.0  # share of the service's statistics of this family (p50, p90, avg...) that moved

    @property
    def family(self) -> str:
        return self.info.family

    @property
    def anomalous(self) -> bool:
        return self.z >= THRESHOLD

    @property
    def strength(self) -> float:
        # a real slowdown or error burst shifts the whole distribution; one quantile alone moving while
        # the others hold is a reshaping of the tail (or of the body), weaker evidence
        return strength_score(self.z) * self.info.weight * (0.5 + 0.5 * self.breadth)


@dataclass(frozen=True, slots=True)
class MetricFrame:
    """The analysis grid: its step and the cut between baseline and incident."""

    step: float
    cut: float
    baseline: TimeWindow
    grid: np.ndarray


def metric_frame(g: Gathered, scope: Scope, baseline_factor: float = 1.0) -> MetricFrame | None:
    if not g.series:
        return None
    step = estimate_step([t for t, _ in g.series.values()])
    # a sample stamped t may summarise [t, t + step): the baseline ends one step before the incident
    cut = scope.incident.start - step
    length = max(scope.baseline.seconds, 5 * step) * baseline_factor
    bstart = max(g.window.start, cut - length)
    # anchor the grid on the sample times, so a coarse grid reads each sample where it was taken
    first = min(float(t[0]) for t, _ in g.series.values())
    if first > bstart:
        bstart = first
    else:
        bstart = first + np.ceil((bstart - first) / step) * step
    grid, gstep = make_grid(bstart, scope.now, step)
    return MetricFrame(gstep, cut, TimeWindow(bstart, cut), grid)


def metric_findings(
    g: Gathered, scope: Scope, frame: MetricFrame, services: Iterable[str] | None = None
) -> list[Finding]:
    wanted = set(services) if services is not None else None
    grid = frame.grid
    base_mask = grid <= frame.cut
    inc_mask = grid > frame.cut
    if not base_mask.any() or not inc_mask.any():
        return []
    keys = [k for k in g.series if wanted is None or k[0] in wanted]
    if not keys:
        return []
    infos = [classify(sig) for _, sig in keys]
    # counts are Poisson: a rate measured over one sample period cannot be known better than one event
    # per period, so a series at zero that sees one request is not an "infinite" surge
    count_floor = 1.0 / max(frame.step, 60.0)
    abs_floors = [max(i.abs_floor, count_floor) if i.family == "traffic" else i.abs_floor for i in infos]
    matrix = np.vstack([forward_fill(*g.series[k], grid) for k in keys])
    shifts = shift_matrix(
        grid, matrix, base_mask, inc_mask,
        np.asarray([i.direction for i in infos], dtype=np.float64),
        np.asarray([i.rel_floor for i in infos], dtype=np.float64),
        np.asarray(abs_floors, dtype=np.float64),
        frame.step, THRESHOLD, persist_s=max(60.0, frame.step), hold_s=max(240.0, 2 * frame.step),
    )
    out: list[Finding] = []
    for (svc, sig), info, sh in zip(keys, infos, shifts, strict=True):
        # a series that only starts inside the incident window has no baseline to compare with
        if sh is None:
            continue
        out.append(Finding(
            service=svc, signal=sig, info=info, source="metrics", z=sh.z, onset=sh.onset,
            preexisting=sh.preexisting, before=sh.before, after=sh.after, query=g.queries.get((svc, sig), ""),
            link=g.signal_links.get(sig, ""), peak=sh.peak,
            summary=f"{sig} of {svc} moved from {sh.before:.4g} to {sh.after:.4g} (robust z {sh.z:.1f})",
        ))
    out.sort(key=lambda f: (f.service, f.signal))
    set_breadth(out)
    return out


def set_breadth(findings: list[Finding], families: tuple[str, ...] = ("latency", "errors")) -> None:
    """For families measured by several statistics of one service, the share that moved (in place)."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        if f.source == "metrics" and f.family in families:
            groups.setdefault((f.service, f.family), []).append(f)
    for fs in groups.values():
        frac = sum(f.anomalous for f in fs) / len(fs)
        for f in fs:
            f.breadth = frac


def log_findings(g: Gathered, scope: Scope) -> list[Finding]:
    if not g.logs:
        return []
    cut = scope.incident.start
    before = [ln for ln in g.logs if ln.time < cut and ln.time >= scope.baseline.start]
    after = [ln for ln in g.logs if ln.time >= cut]
    if not after:
        return []
    shifts = mine_shifts(before, after)
    best: dict[str, Finding] = {}
    info = classify("log_errors")
    for s in shifts:
        if not s.errorish:
            continue
        first = next((ln.time for ln in after if ln.service == s.service and ln.message[:400] == s.example), None)
        # with no baseline lines at all, "new" says nothing: weigh the count alone, modestly
        z = s.z if before else min(s.z, 3.0)
        link = g.logs_link(s.service, TimeWindow(cut, scope.now)) if g.logs_link else ""
        label = "new" if s.new else "more frequent"
        f = Finding(
            service=s.service, signal="log_errors", info=info, source="logs", z=z, onset=first,
            preexisting=False, before=s.before_rate * 60, after=s.after_rate * 60,
            query=f"log template: {s.template[:200]}", link=link,
            summary=f"{label} {s.level or 'log'} template in {s.service}: \"{s.template[:160]}\" "
                    f"({s.before} before, {s.after} after; per minute {s.before_rate * 60:.3g} -> {s.after_rate * 60:.3g})",
        )
        cur = best.get(s.service)
        if cur is None or f.z > cur.z:
            best[s.service] = f
    return [best[k] for k in sorted(best)]


def trace_findings(g: Gathered, scope: Scope) -> tuple[list[Finding], str]:
    if not g.spans:
        return [], ""
    cut = scope.incident.start
    before = [s for s in g.spans if s.start_time < cut]
    after = [s for s in g.spans if s.start_time >= cut]
    if not before:
        return [], "traces: no spans before the incident window to compare with"
    shifts = compare(service_spans(before), service_spans(after))
    out: list[Finding] = []
    for sh in shifts:
        info = classify(sh.signal)
        unit = "ms" if "time" in sh.signal else ""
        out.append(Finding(
            service=sh.service, signal=sh.signal, info=info, source="traces", z=max(0.0, sh.z), onset=None,
            preexisting=False, before=sh.before, after=sh.after,
            query=f"{sh.signal} of spans of {sh.service}", link="",
            summary=f"{sh.signal.replace('_', ' ')} of {sh.service}: {sh.before:.4g}{unit} -> {sh.after:.4g}{unit} "
                    f"over {sh.n_before} / {sh.n_after} spans (z {sh.z:.1f})",
        ))
    # the cost of each call, outside the callee's own spans: a slow network to a service shows here
    gaps = compare_gaps(edge_gaps(before), edge_gaps(after))
    bad = [gp for gp in gaps if gp[4] >= THRESHOLD]
    n_in: dict[str, int] = {}
    n_out: dict[str, int] = {}
    for caller, callee, *_ in gaps:
        n_in[callee] = n_in.get(callee, 0) + 1
        n_out[caller] = n_out.get(caller, 0) + 1
    bad_in: dict[str, list[tuple[str, str, float, float, float, int, int]]] = {}
    bad_out: dict[str, list[tuple[str, str, float, float, float, int, int]]] = {}
    for gp in bad:
        bad_in.setdefault(gp[1], []).append(gp)
        bad_out.setdefault(gp[0], []).append(gp)
    info = classify("trace_call_gap")
    for svc in sorted(set(bad_in) | set(bad_out)):
        # calls into a service slow from every caller: that service; all calls out of one: the caller
        fin = len(bad_in.get(svc, [])) / max(1, n_in.get(svc, 0))
        fout = len(bad_out.get(svc, [])) / max(1, n_out.get(svc, 0))
        edges = bad_in.get(svc, []) if fin >= fout else bad_out.get(svc, [])
        frac = max(fin, fout)
        if not edges or (fin < fout and n_out.get(svc, 0) < 2):
            continue
        top = max(edges, key=lambda gp: gp[4])
        z = float(np.median([gp[4] for gp in edges])) * frac
        side = "into" if fin >= fout else "out of"
        out.append(Finding(
            service=svc, signal="trace_call_gap", info=info, source="traces", z=z, onset=None,
            preexisting=False, before=top[2], after=top[3],
            query=f"call time outside the callee's spans, calls {side} {svc}", link="",
            summary=f"calls {side} {svc} slowed outside the callee's own work on {len(edges)} of "
                    f"{n_in.get(svc, 0) if side == 'into' else n_out.get(svc, 0)} edges "
                    f"(p90 {top[0]} -> {top[1]}: {top[2]:.4g}ms -> {top[3]:.4g}ms)",
        ))
    return out, ""


def caller_wait_findings(findings: list[Finding], callers_of: dict[str, set[str]]) -> list[Finding]:
    """A service its callers wait on: most of its callers' downstream (client) latency rose.

    When a service's own latency is not measured, or the delay sits on the network in front of it,
    its callers' waiting time is what shows it; a service called by several waiting callers is the
    common factor.
    """
    wait: dict[str, Finding] = {}
    measured: set[str] = set()
    for f in findings:
        if f.family == "client_latency":
            measured.add(f.service)
            if f.anomalous and (f.service not in wait or f.z > wait[f.service].z):
                wait[f.service] = f
    info = classify("callers_wait")
    out: list[Finding] = []
    for svc in sorted(callers_of):
        callers = sorted(c for c in callers_of[svc] if c in measured and c != svc)
        waiting = [c for c in callers if c in wait]
        if not waiting or len(waiting) * 2 < len(callers):
            continue
        frac = len(waiting) / len(callers)
        zs = [wait[c].z for c in waiting]
        onsets = [t for t in (wait[c].onset for c in waiting) if t is not None]
        z = float(np.median(zs)) * frac
        out.append(Finding(
            service=svc, signal="callers_wait", info=info, source="metrics", z=z,
            onset=min(onsets) if onsets else None, preexisting=all(wait[c].preexisting for c in waiting),
            before=float(np.median([wait[c].before for c in waiting])),
            after=float(np.median([wait[c].after for c in waiting])),
            query="; ".join(wait[c].query for c in waiting[:3]), link=wait[waiting[0]].link,
            summary=f"{len(waiting)} of {len(callers)} callers of {svc} wait longer on their calls "
                    f"({', '.join(waiting[:4])}; median z {float(np.median(zs)):.1f})",
        ))
    return out
