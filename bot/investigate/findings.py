"""Turn gathered telemetry into findings: one per series (metrics), template (logs) or service (traces).

A finding says how far a signal of a service moved from its baseline (a robust z in the signal's bad
direction), when it started to move, and whether it had already moved before the baseline ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from bot.investigate.catalog import SignalInfo, classify
from bot.investigate.look import Gathered
from bot.investigate.origins import compare_origins, log_origins, span_origins
from bot.investigate.scope import Scope
from bot.investigate.spans import (
    GapShift,
    compare,
    compare_gaps,
    compare_waits,
    edge_calls,
    edge_durations,
    service_spans,
)
from bot.investigate.stats import (
    estimate_step,
    forward_fill,
    grid_phase,
    make_grid,
    shift_matrix,
    strength_score,
)
from bot.investigate.templates import covered_seconds, mine_shifts
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
    # the other services whose observations this finding is made of (the callers whose wait is laid on this
    # service, the other ends of its slow calls): such a finding cannot be used to explain those services
    via: tuple[str, ...] = ()

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

    def read(self, times: np.ndarray, values: np.ndarray) -> np.ndarray:
        """A series on this grid: each sample at the grid point nearest to it (see ``forward_fill``)."""
        return forward_fill(times, values, self.grid, tolerance=0.5 * self.step)


def metric_frame(g: Gathered, scope: Scope, baseline_factor: float = 1.0) -> MetricFrame | None:
    if not g.series:
        return None
    times = [t for t, _ in g.series.values()]
    step = estimate_step(times)
    # a sample stamped t may summarise [t, t + step): the baseline ends one step before the incident
    cut = scope.incident.start - step
    length = max(scope.baseline.seconds, 5 * step) * baseline_factor
    bstart = max(g.window.start, cut - length)
    # the grid sits where the samples are (their mean phase within a step), so each series' samples are
    # read at their nearest grid points whatever their jitter and whichever pod was scraped first
    phase = grid_phase(times, step)
    first = min(float(t[0]) for t in times)
    bstart = max(bstart, first - 0.5 * step)
    bstart = phase + np.ceil((bstart - phase) / step) * step
    if bstart > cut:
        return None  # no sample before the incident: nothing to compare with
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
    period = max(frame.step, 60.0)
    count_floor = 1.0 / period
    matrix = np.vstack([frame.read(*g.series[k]) for k in keys])
    served = _requests_per_period(keys, infos, matrix, base_mask, period)
    abs_floors = [_abs_floor(i, served.get(svc), count_floor) for (svc, _sig), i in zip(keys, infos, strict=True)]
    shifts = shift_matrix(
        grid, matrix, base_mask, inc_mask,
        np.asarray([i.direction for i in infos], dtype=np.float64),
        np.asarray([i.rel_floor for i in infos], dtype=np.float64),
        np.asarray(abs_floors, dtype=np.float64),
        frame.step, THRESHOLD, persist_s=max(60.0, frame.step), hold_s=max(240.0, 2 * frame.step),
        full_scale=np.asarray([i.full_scale for i in infos], dtype=np.float64),
    )
    volume = _requests_per_period(keys, infos, matrix, inc_mask, period)
    # how wide the service's latency distribution was before: the gap between its lowest and highest
    # measured latency statistic (p50 .. p99) at baseline
    lat_range: dict[str, tuple[float, float]] = {}
    for (svc, _sig), info, sh in zip(keys, infos, shifts, strict=True):
        if sh is not None and info.family == "latency" and np.isfinite(sh.before):
            lo, hi = lat_range.get(svc, (sh.before, sh.before))
            lat_range[svc] = (min(lo, sh.before), max(hi, sh.before))
    out: list[Finding] = []
    for (svc, sig), info, sh in zip(keys, infos, shifts, strict=True):
        # a series that only starts inside the incident window has no baseline to compare with
        if sh is None:
            continue
        z = sh.z
        if info.share_scale > 0 and svc in volume:
            # a failing share (an error rate) is the same count read from the other side
            ok = (sh.before, sh.after) if info.full_scale else (info.error_share - sh.before, info.error_share - sh.after)
            z = min(z, failure_count_z(*ok, info.share_scale, volume[svc]))
        if info.family == "latency" and svc in volume and svc in lat_range:
            lo, hi = lat_range[svc]
            z = min(z, quantile_sampling_z(sh.before, sh.after, hi - lo, volume[svc]))
        out.append(Finding(
            service=svc, signal=sig, info=info, source="metrics", z=z, onset=sh.onset,
            preexisting=sh.preexisting, before=sh.before, after=sh.after, query=g.queries.get((svc, sig), ""),
            link=g.signal_links.get(sig, ""), peak=sh.peak,
            summary=f"{sig} of {svc} moved from {sh.before:.4g} to {sh.after:.4g} (robust z {z:.1f})",
        ))
    out.sort(key=lambda f: (f.service, f.signal))
    set_breadth(out)
    return out


def _requests_per_period(keys: Sequence[tuple[str, str]], infos: Sequence[SignalInfo], matrix: np.ndarray,
                         mask: np.ndarray, period: float) -> dict[str, float]:
    """Requests each service served per sample period over the grid points of ``mask`` (its ``request_rate``)."""
    out: dict[str, float] = {}
    for (svc, sig), info, row in zip(keys, infos, matrix, strict=True):
        if info.family == "traffic" and sig == "request_rate":
            seen = row[mask]
            seen = seen[np.isfinite(seen)]
            if len(seen):
                out[svc] = float(np.median(seen)) * period
    return out


def _abs_floor(info: SignalInfo, requests: float | None, count_floor: float) -> float:
    """A series' absolute noise floor: a count's one event per period, a share's one failed request."""
    if info.family == "traffic":
        return max(info.abs_floor, count_floor)
    if info.share_scale:
        return share_floor(info.abs_floor, info.share_scale, requests)
    return info.abs_floor


def share_floor(abs_floor: float, full_scale: float, requests: float | None) -> float:
    """The noise floor of a share of requests (success or failing): one failed request among those served, when
    the volume is known.

    A fixed floor (a percentage point) hides a 3 % failure rate over a thousand requests, thirty failures
    where none were before, which no one on call would ignore; over ten requests one failure is already
    ten points. With the volume known, the floor is what a single failure moves the share, never more than
    the fixed one; the failure-count check (``failure_count_z``) still bounds small volumes.
    """
    if not requests or requests < 1.0:
        return abs_floor
    return min(abs_floor, full_scale / requests)


def failure_count_z(before: float, after: float, full_scale: float, requests: float) -> float:
    """How surprising a success share's drop is as a count of failed requests (Poisson).

    A success percentage over a handful of requests swings wildly: 0 % of one request is one failure.
    With ``requests`` served per sample period, the failures seen after are compared with what the
    baseline failure share predicts for that volume.
    """
    p_b = min(1.0, max(0.0, 1.0 - before / full_scale))
    p_a = min(1.0, max(0.0, 1.0 - after / full_scale))
    expected = p_b * requests
    return (p_a * requests - expected) / float(np.sqrt(expected + 1.0))


def quantile_sampling_z(before: float, after: float, dist_width: float, requests: float) -> float:
    """How surprising a latency statistic's rise is given how many requests it was computed over.

    A median or percentile of a handful of requests jumps around inside the service's own latency
    distribution: with a wide distribution (p50 far below p99) and a few requests per sample period,
    the median of one period can land near the old p90 by chance. The sampling error of a quantile
    is about the distribution's width over the square root of the number of requests, so a rise is
    measured against that; over thousands of requests this bound is far looser than the robust band.
    """
    if dist_width <= 0 or requests <= 0:
        return float("inf")
    return (after - before) / (dist_width / float(np.sqrt(requests)))


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
    for s in shifts:
        if not s.errorish:
            continue
        signal = "log_warnings" if s.level == "WARN" else "log_errors"
        info = classify(signal)
        first = next((ln.time for ln in after if ln.service == s.service and ln.message[:400] == s.example), None)
        # with no baseline lines at all, "new" says nothing: weigh the count alone, modestly
        z = s.z if before else min(s.z, 3.0)
        link = g.logs_link(s.service, TimeWindow(cut, scope.now)) if g.logs_link else ""
        label = "new" if s.new else "more frequent"
        f = Finding(
            service=s.service, signal=signal, info=info, source="logs", z=z, onset=first,
            preexisting=False, before=s.before_rate * 60, after=s.after_rate * 60,
            query=f"log template: {s.template[:200]}", link=link,
            summary=f"{label} {s.level or 'log'} template in {s.service}: \"{s.template[:160]}\" "
                    f"({s.before} before, {s.after} after; per minute {s.before_rate * 60:.3g} -> {s.after_rate * 60:.3g})",
        )
        cur = best.get(s.service)
        if cur is None or (f.strength, f.z) > (cur.strength, cur.z):
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
            summary=f"{sh.signal.replace('_', ' ')} of {sh.service}"
                    + (f" in {sh.operation}" if sh.operation else "")
                    + f": {sh.before:.4g}{unit} -> {sh.after:.4g}{unit} over {sh.n_before} / {sh.n_after} spans "
                      f"(z {sh.z:.1f})",
        ))
    # the cost of each call, outside the callee's own spans: a slow network to a service shows here
    gaps = compare_gaps(edge_calls(before), edge_calls(after), cut=cut)
    bad = [gp for gp in gaps if gp.z >= THRESHOLD]
    n_in: dict[str, int] = {}
    n_out: dict[str, int] = {}
    for gp in gaps:
        n_in[gp.callee] = n_in.get(gp.callee, 0) + 1
        n_out[gp.caller] = n_out.get(gp.caller, 0) + 1
    bad_in: dict[str, list[GapShift]] = {}
    bad_out: dict[str, list[GapShift]] = {}
    for gp in bad:
        bad_in.setdefault(gp.callee, []).append(gp)
        bad_out.setdefault(gp.caller, []).append(gp)
    fin = {svc: len(v) / max(1, n_in.get(svc, 0)) for svc, v in bad_in.items()}
    fout = {svc: len(v) / max(1, n_out.get(svc, 0)) for svc, v in bad_out.items()}

    def slow_callee(svc: str) -> bool:  # calls into it are slow from most of its callers
        return len(bad_in.get(svc, [])) >= 2 and fin.get(svc, 0.0) >= 0.5

    def slow_caller(svc: str) -> bool:  # most of its calls out are slow, whoever it calls
        return len(bad_out.get(svc, [])) >= 2 and fout.get(svc, 0.0) >= 0.5

    info = classify("trace_call_gap")
    for svc in sorted(set(bad_in) | set(bad_out)):
        # calls into a service slow from every caller: that service; all calls out of one: the caller.
        # A slow edge is split per callee: one into a callee that is slow from most of its callers is
        # that callee's, not one more sign against the caller (and the reverse for a slow caller).
        ins = [gp for gp in bad_in.get(svc, []) if not slow_caller(gp.caller) or slow_callee(svc)]
        outs = [gp for gp in bad_out.get(svc, []) if not slow_callee(gp.callee) or slow_caller(svc)]
        f_in = len(ins) / max(1, n_in.get(svc, 0))
        f_out = len(outs) / max(1, n_out.get(svc, 0))
        edges = ins if f_in >= f_out else outs
        frac = max(f_in, f_out)
        if not edges or (f_in < f_out and n_out.get(svc, 0) < 2):
            continue
        top = max(edges, key=lambda gp: gp.z)
        z = float(np.median([gp.z for gp in edges])) * frac
        onsets = [gp.onset for gp in edges if gp.onset is not None]
        side = "into" if f_in >= f_out else "out of"
        out.append(Finding(
            service=svc, signal="trace_call_gap", info=info, source="traces", z=z,
            onset=float(np.median(onsets)) if onsets else None,
            preexisting=all(gp.preexisting for gp in edges), before=top.before, after=top.after,
            query=f"call time outside the callee's spans, calls {side} {svc}", link="",
            summary=f"calls {side} {svc} slowed outside the callee's own work on {len(edges)} of "
                    f"{n_in.get(svc, 0) if side == 'into' else n_out.get(svc, 0)} edges "
                    f"(median {top.caller} -> {top.callee}: {top.before:.4g}ms -> {top.after:.4g}ms)",
            via=tuple(sorted({gp.caller if side == "into" else gp.callee for gp in edges})),
        ))
    return out, ""


def starved(findings: Iterable[Finding], step: float) -> dict[str, float]:
    """Services short of CPU or memory of their own, with the time that began (their earliest clear onset).

    A starved service is slow at everything, including sending its calls and reading their answers, so its
    longer wait on a callee says nothing about the callee.
    """
    out: dict[str, float] = {}
    for f in findings:
        if f.anomalous and f.family in ("cpu", "memory") and not f.preexisting and f.onset is not None:
            out[f.service] = min(out.get(f.service, f.onset), f.onset)
    return out


def origin_findings(g: Gathered, scope: Scope) -> list[Finding]:
    """Services where failing requests start (``origins``): from span status when spans record it, else
    from error log lines tied to spans by their trace id."""
    if not g.spans:
        return []
    cut = scope.incident.start
    origins = span_origins(g.spans)
    if not origins and g.logs:
        origins = log_origins(g.logs, g.spans)
    if not origins:
        return []
    before = [o for o in origins if o.time < cut]
    after = [o for o in origins if o.time >= cut]
    # rates over the time each side actually covers: traces and logs may cover only part of a window
    span_t = [s.start_time for s in g.spans]
    # no requests seen before the cut: "no failures before" says nothing, weigh the count alone, modestly
    seen_before = any(t < cut for t in span_t)
    before_s = covered_seconds([t for t in span_t if t < cut])
    after_s = covered_seconds([t for t in span_t if t >= cut])
    if after_s <= 0:
        return []
    info = classify("error_origin")
    out: list[Finding] = []
    for sh in compare_origins(before, after, before_s, after_s):
        where = f" ({sh.operation})" if sh.operation else ""
        how = "error spans whose callees succeeded" if sh.source == "traces" else \
            "error log lines with no error logged below it in the same request"
        out.append(Finding(
            service=sh.service, signal="error_origin", info=info, source=sh.source, z=sh.z if seen_before else min(sh.z, 3.0),
            onset=sh.onset, preexisting=False, before=sh.before_rate * 60, after=sh.after_rate * 60,
            query=f"requests whose failure starts in {sh.service}", link="",
            summary=f"failing requests start in {sh.service}{where}: {how}; {sh.before} before, {sh.after} after "
                    f"(per minute {sh.before_rate * 60:.3g} -> {sh.after_rate * 60:.3g})",
        ))
    return out


def call_waits(g: Gathered, scope: Scope) -> dict[tuple[str, str], float]:
    """Per traced caller -> callee edge, how much longer the caller waited on its calls (robust z)."""
    if not g.spans:
        return {}
    cut = scope.incident.start
    before = [s for s in g.spans if s.start_time < cut]
    after = [s for s in g.spans if s.start_time >= cut]
    return compare_waits(edge_durations(before), edge_durations(after))


def _wait_share(caller: str, callee: str, callees_of: dict[str, set[str]],
                waits: dict[tuple[str, str], float]) -> float:
    """The part of a caller's longer wait that can be laid on one callee.

    A caller's client latency is one figure for all its calls: a caller that waits longer says one of
    its callees got slower, not which. Traces split it per callee when they show which calls grew;
    otherwise each callee gets an even share, so a caller of many services does not make every one of
    them look like the common factor.
    """
    mine = {k[1]: z for k, z in waits.items() if k[0] == caller}
    rose = {c for c, z in mine.items() if z >= THRESHOLD}
    if not rose:
        # the caller's own calls are not traced on both sides: its callees that other callers are
        # seen waiting longer on are the likely ones
        callees = callees_of.get(caller, set())
        rose = {k[1] for k, z in waits.items() if z >= THRESHOLD and k[1] in callees}
    if rose:
        return 1.0 / len(rose) if callee in rose else 0.0
    return 1.0 / max(1, len(callees_of.get(caller, ())))


def caller_wait_findings(
    findings: list[Finding],
    callers_of: dict[str, set[str]],
    callees_of: dict[str, set[str]] | None = None,
    waits: dict[tuple[str, str], float] | None = None,
    step: float = 60.0,
) -> list[Finding]:
    """A service its callers wait on: most of its callers' downstream (client) latency rose.

    When a service's own latency is not measured, or the delay sits on the network in front of it,
    its callers' waiting time is what shows it; a service called by several waiting callers is the
    common factor. Each caller's wait is split among its callees (``_wait_share``). A caller starved of
    CPU or memory from before its wait rose is slow at everything, calls included: its wait is its own and
    is laid on no callee.
    """
    wait: dict[str, Finding] = {}
    measured: set[str] = set()
    hungry = starved(findings, step)
    for f in findings:
        if f.family == "client_latency":
            measured.add(f.service)
            own_fault = f.service in hungry and (f.onset is None or hungry[f.service] <= f.onset + step)
            if f.anomalous and not own_fault and (f.service not in wait or f.z > wait[f.service].z):
                wait[f.service] = f
    info = classify("callers_wait")
    out: list[Finding] = []
    down = callees_of or {}
    for svc in sorted(callers_of):
        callers = sorted(c for c in callers_of[svc] if c in measured and c != svc)
        share = {c: _wait_share(c, svc, down, waits or {}) for c in callers if c in wait}
        waiting = [c for c in callers if share.get(c, 0.0) > 0]
        if not waiting or len(waiting) * 2 < len(callers):
            continue
        frac = sum(share[c] for c in waiting) / len(callers)
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
                    f"({', '.join(waiting[:4])}; median z {float(np.median(zs)):.1f}, "
                    f"{frac:.0%} of their wait laid on {svc})",
            via=tuple(waiting),
        ))
    return out
