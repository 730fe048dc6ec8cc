"""Score hypotheses with evidence: anomaly strength, onset precedence, topology, corroboration, changes.

raw = strength x corroboration x precedence x topology x change-nearness x memory
- strength: the best supporting finding, log-scaled robust z times what the signal says about its
  own service (resource signals point at the service itself; latency and errors may be inherited).
- corroboration: other signal families of the same service that moved too.
- precedence: a cause starts before its symptoms; a hypothesis whose onset lags the earliest clear
  anomaly is discounted, one already anomalous before the baseline ended is discounted hard.
- topology: latency and errors travel upstream, so a service whose callees moved as early is
  "explained" by them; a cause that explains more anomalous callers gains; a service the symptoms
  cannot reach (when the call graph is known) loses.
- change nearness: a deploy or config change of the service shortly before the onset.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bot.investigate.findings import Finding
from bot.investigate.hypotheses import PROPAGATING, Hypothesis
from integrations.base import Edge

# what a failing request shows: a caller's new errors are explained by a callee's failures (or a resource it
# ran out of), not by a callee that only got slower
FAILING = ("errors", "origin", "logs")


class Graph:
    """Caller -> callee call graph with bounded-depth reachability."""

    def __init__(self, edges: Iterable[Edge]):
        self.down: dict[str, set[str]] = {}
        self.up: dict[str, set[str]] = {}
        for e in edges:
            if e.caller == e.callee:
                continue
            self.down.setdefault(e.caller, set()).add(e.callee)
            self.up.setdefault(e.callee, set()).add(e.caller)

    @property
    def known(self) -> bool:
        return bool(self.down)

    def nodes(self) -> set[str]:
        return set(self.down) | set(self.up)

    def _walk(self, start: str, adj: Mapping[str, set[str]], depth: int) -> set[str]:
        seen: set[str] = set()
        q = deque([(start, 0)])
        while q:
            n, d = q.popleft()
            if d >= depth:
                continue
            for m in sorted(adj.get(n, ())):
                if m not in seen and m != start:
                    seen.add(m)
                    q.append((m, d + 1))
        return seen

    def descendants(self, s: str, depth: int = 4) -> set[str]:
        return self._walk(s, self.down, depth)

    def ancestors(self, s: str, depth: int = 4) -> set[str]:
        return self._walk(s, self.up, depth)

    def entries(self) -> set[str]:
        return {n for n in self.down if not self.up.get(n)}

    def reachable_from(self, symptoms: Sequence[str], depth: int = 8) -> set[str] | None:
        """Services the symptoms call, directly or not. A symptom outside the graph (an edge proxy, a
        dashboard in front of the traced services) is taken to call the graph's entry services."""
        if not self.known:
            return None
        out: set[str] = set(symptoms)
        nodes = self.nodes()
        for s in symptoms:
            starts = [s] if s in nodes else sorted(self.entries())
            for st in starts:
                out.add(st)
                out |= self.descendants(st, depth)
        return out


@dataclass(frozen=True, slots=True)
class Weights:
    corroboration_step: float = 0.15
    corroboration_max: int = 3
    explained_factor: float = 0.45
    downstream_wait_factor: float = 0.65
    unreachable_factor: float = 0.6
    caller_bonus: float = 0.15
    harmless_surge_factor: float = 0.5
    preexisting_factor: float = 0.35
    unknown_onset_factor: float = 0.9
    change_horizon_s: float = 7200.0
    change_tau_s: float = 1800.0
    change_boost: float = 0.5
    # the cluster itself reports the failure the signals show (OOMKilled with memory growth): two independent
    # witnesses of one cause
    event_corroboration: float = 1.5


def _best_strength(fs: Sequence[Finding]) -> float:
    return max((f.strength for f in fs), default=0.0)


def score(
    hyps: Sequence[Hypothesis],
    findings: Sequence[Finding],
    graph: Graph,
    symptoms: Sequence[str],
    onset: float,
    step: float,
    w: Weights = Weights(),
    memory_prior: Mapping[tuple[str, str], float] | None = None,
) -> None:
    """Fill ``raw`` and ``factors`` of every hypothesis (in place)."""
    anomalous = [f for f in findings if f.anomalous]
    by_service: dict[str, list[Finding]] = {}
    for f in anomalous:
        by_service.setdefault(f.service, []).append(f)
    clear = [f.onset for f in anomalous if f.onset is not None and f.strength >= 0.3 and not f.preexisting]
    t0 = min(clear) if clear else None
    tau = max(3.0 * step, 90.0)
    reach = graph.reachable_from(symptoms)

    def prop(svc: str) -> list[Finding]:
        return [f for f in by_service.get(svc, []) if f.family in PROPAGATING]

    for h in hyps:
        fac: dict[str, float] = {}
        own = by_service.get(h.service, [])
        if h.support:
            strength = _best_strength(h.support)
        elif h.events:
            strength = 0.6
        else:
            strength = 0.0
        if h.change is not None:
            # a change explains what its own service shows
            near = math.exp(-max(0.0, onset - h.change.time) / w.change_tau_s) if h.change.time <= onset else 0.5
            svc_strength = _best_strength([f for f in own if f.family != "client_latency"])
            strength = max(strength, 0.35 * near + 0.65 * svc_strength)
            fac["change_nearness"] = round(near, 3)
        fac["strength"] = round(strength, 4)
        families = {f.family for f in own if f.family not in ("client_latency", "node")}
        support_fams = {f.family for f in h.support}
        extra = len(families - support_fams)
        corr = 1.0 + w.corroboration_step * min(extra, w.corroboration_max)
        if h.support and h.events:
            corr *= w.event_corroboration
        fac["corroboration"] = corr
        # precedence
        t_h = h.onset()
        if t_h is None:
            prec = w.unknown_onset_factor
        elif t0 is None:
            prec = 1.0
        else:
            # onsets one sample apart are within the data's resolution
            prec = math.exp(-max(0.0, t_h - t0 - step) / tau)
        if h.support and all(f.preexisting for f in h.support) and h.change is None:
            prec *= w.preexisting_factor
            h.notes.append("already anomalous before the baseline ended")
        fac["precedence"] = round(prec, 4)
        # topology
        topo = 1.0
        if h.kind in ("dependency_failure", "error_pattern"):
            mine = max((f.strength for f in h.support), default=0.0)
            t_mine = t_h if t_h is not None else onset
            culprits = []
            for c in sorted(graph.descendants(h.service)):
                # a callee that slowed, failed or saturated a resource as early explains its callers (their
                # slowness; their errors only by failing itself)
                # evidence made of this very service's own waiting or calls cannot explain it away
                cf = [f for f in prop(c) if h.service not in f.via
                      and (h.kind != "error_pattern" or f.family in FAILING)]
                cf += [f for f in by_service.get(c, []) if f.info.resource and not f.preexisting]
                if not cf:
                    continue
                c_on = min((f.onset for f in cf if f.onset is not None), default=None)
                if (c_on is None or c_on <= t_mine + tau / 2) and _best_strength(cf) >= 0.5 * mine:
                    culprits.append(c)
            if culprits:
                topo *= w.explained_factor
                h.notes.append(f"its callees {', '.join(culprits[:3])} moved as early")
            else:
                srv = max((f.z for f in own if f.family == "latency"), default=0.0)
                cli = max((f.z for f in own if f.family == "client_latency"), default=0.0)
                if srv > 0 and cli >= 0.8 * srv:
                    topo *= w.downstream_wait_factor
                    h.notes.append("its time waiting on its downstream rose as much as its own latency")
        if h.kind == "traffic_surge":
            # a surge passed on by a caller that surged as early is the caller's; a surge that hurt
            # nothing here (no latency, errors or saturation) explains little
            t_mine = t_h if t_h is not None else onset
            upstream = [a for a in sorted(graph.ancestors(h.service))
                        if any(f.family == "traffic" and f.after > f.before
                               and (f.onset is None or f.onset <= t_mine + tau / 2) for f in by_service.get(a, []))]
            if upstream:
                topo *= w.explained_factor
                h.notes.append(f"its callers {', '.join(upstream[:3])} surged as early")
            hurt = [f for f in own if f.family in PROPAGATING or f.info.resource]
            if not hurt:
                topo *= w.harmless_surge_factor
                h.notes.append("no latency, errors or saturation came with it")
        callers = [a for a in sorted(graph.ancestors(h.service)) if prop(a)]
        if callers:
            topo *= 1.0 + w.caller_bonus * min(len(callers), 4)
            h.notes.append(f"explains {len(callers)} anomalous caller(s)")
        if reach is not None and h.service not in reach:
            topo *= w.unreachable_factor
            h.notes.append("not on a call path from the symptom services")
        fac["topology"] = round(topo, 4)
        # a change of the same service shortly before strengthens any of its hypotheses
        boost = 1.0
        if h.change is None:
            for other in hyps:
                if other.service == h.service and other.change is not None and other.change.time <= onset:
                    near = math.exp(-(onset - other.change.time) / w.change_tau_s)
                    boost = max(boost, 1.0 + w.change_boost * near)
        fac["change_boost"] = round(boost, 4)
        prior = 1.0
        if memory_prior:
            prior = memory_prior.get(h.key, memory_prior.get((h.service, "*"), 1.0))
        fac["memory"] = prior
        h.factors = fac
        h.raw = strength * corr * prec * topo * boost * prior


def prefer_explanations(hyps: Sequence[Hypothesis], step: float) -> None:
    """Within one service, a cause explains the symptoms it precedes.

    Saturation, a demand surge, a node problem or a change that starts no later than the service's
    own latency or errors is the better account of them: it takes their score (plus a little), so
    the service's cause is named by what drives it rather than by what it shows (and cites what it shows).
    Errors that start in the service's own code are explained only by a change (the release that shipped
    the code): CPU or a surge does not throw exceptions.
    """
    tau = max(3.0 * step, 90.0)
    by_service: dict[str, list[Hypothesis]] = {}
    for h in hyps:
        by_service.setdefault(h.service, []).append(h)
    for svc_hyps in by_service.values():
        symptoms = [h for h in svc_hyps if h.kind in ("dependency_failure", "error_pattern", "code_error")]
        for h in svc_hyps:
            explained = [s for s in symptoms if h.change is not None or s.kind != "code_error"]
            if h in symptoms or h.raw <= 0 or not explained:
                continue
            best = max(explained, key=lambda s: s.raw)
            if h.raw >= best.raw:
                continue
            t_sym = best.onset()
            t_h = h.onset()
            if h.change is not None:
                ok = t_sym is None or h.change.time <= t_sym
            else:
                strong = any(f.z >= 6.0 for f in h.support)
                ok = strong and (t_h is None or t_sym is None or t_h <= t_sym + tau)
            if ok:
                # it takes the symptoms' score, and with it their strength and evidence: the service's
                # strongest anomaly is still what it shows, now named by what drives it
                h.raw = best.raw * 1.05
                h.factors["explains_own_symptoms"] = 1.05
                h.factors["strength"] = max(h.factors.get("strength", 0.0), best.factors.get("strength", 0.0))
                h.support += [f for f in best.support if f not in h.support]
                h.notes.append(f"explains the service's own {best.kind.replace('_', ' ')}")


def discount_echoes(hyps: Sequence[Hypothesis], findings: Sequence[Finding], graph: Graph, step: float,
                    instrumented: set[str] | frozenset[str] = frozenset(), factor: float = 0.9) -> None:
    """An opaque endpoint does not outrank the service it stands in front of (in place).

    A node with callers but no callees of its own, and no telemetry of its own (no resource metrics,
    spans or logs: ``instrumented`` lists the services that have some), is known only from its callers'
    side: the time and
    errors they see calling it include the network, a load balancer and whatever serves it. When a
    sibling callee of the same caller - a service we can see inside, because it has callees of its
    own - moved the same way (same family, or the same signal, at least half as strongly, within one
    sample: an endpoint's tail quantile carries the network's and the balancer's own stalls, so its
    median or mean is the fair comparison when only those moved inside), the opaque node is most
    likely that service seen from outside, and the evidence is about the service. Its hypotheses are
    capped just below the service's, so the ranking names the component rather than its echo.
    """
    if not graph.known:
        return
    tau = max(step, 60.0)
    anomalous: dict[str, list[Finding]] = {}
    for f in findings:
        if f.anomalous and f.family in PROPAGATING:
            anomalous.setdefault(f.service, []).append(f)
    best_raw: dict[str, float] = {}
    for h in hyps:
        best_raw[h.service] = max(best_raw.get(h.service, 0.0), h.raw)

    def profile(svc: str) -> dict[str, tuple[float, float | None]]:
        """Strongest move and first onset per family, and per signal (``family:signal``): like with like."""
        out: dict[str, tuple[float, float | None]] = {}
        for f in anomalous.get(svc, []):
            for key in (f.family, f"{f.family}:{f.signal}"):
                s, on = out.get(key, (0.0, None))
                ons = [t for t in (on, f.onset) if t is not None]
                out[key] = (max(s, f.strength), min(ons) if ons else None)
        return out

    for h in hyps:
        leaf = h.service
        if graph.down.get(leaf) or not graph.up.get(leaf) or leaf in instrumented or h.raw <= 0:
            continue
        mine = profile(leaf)
        if not mine:
            continue
        twins: list[str] = []
        for caller in sorted(graph.up[leaf]):
            for sib in sorted(graph.down.get(caller, ())):
                if sib == leaf or not graph.down.get(sib) or sib in twins:
                    continue
                theirs = profile(sib)
                same = [fam for fam, (s, on) in mine.items() if fam in theirs
                        and theirs[fam][0] >= 0.5 * s
                        and (on is None or theirs[fam][1] is None or abs(on - (theirs[fam][1] or 0.0)) <= tau)]
                if same:
                    twins.append(sib)
        if not twins:
            continue
        cap = factor * max(best_raw.get(t, 0.0) for t in twins)
        h.echo_of = tuple(twins)
        if cap < h.raw:
            h.raw = cap
            h.factors["echo_of"] = round(factor, 3)
            h.notes.append(f"seen only from its callers' side; {', '.join(twins[:2])} behind the same caller "
                           "moved the same way and is observable inside")
