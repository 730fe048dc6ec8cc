"""The engine: scope -> look -> hypothesise -> test -> narrow -> report. Pure and deterministic.

It takes a ``Scope`` and a ``Sources`` bundle (and, optionally, past incidents) and returns a
``Report``; it never touches the database or the chat. Everything is sorted and nothing is random,
so the same data gives the same answer.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bot.investigate.catalog import classify
from bot.investigate.chart import build_chart
from bot.investigate.coverage import measure, refusal
from bot.investigate.findings import (
    Finding,
    MetricFrame,
    call_waits,
    caller_wait_findings,
    log_findings,
    metric_findings,
    metric_frame,
    origin_findings,
    trace_findings,
)
from bot.investigate.hypotheses import Hypothesis, failure_class, form
from bot.investigate.look import Gathered, Limits, gather, named
from bot.investigate.planner import DeterministicPlanner, Look, Planner
from bot.investigate.report import Cause, EvidenceItem, Report, Step
from bot.investigate.scope import Scope
from bot.investigate.scoring import Graph, Weights, discount_echoes, prefer_explanations, score
from bot.investigate.spans import edges_from_spans
from integrations.base import AlertStateSource, Edge, Sources, TimeWindow


@dataclass(frozen=True, slots=True)
class PastIncident:
    """A remembered incident: what it looked like and what caused it."""

    incident_id: str
    services: tuple[str, ...]
    cause_service: str
    cause_kind: str
    title: str = ""
    fix: str = ""
    # confirmed (by a person) | verified (its fix held) | unconfirmed (the engine's own guess): only the first
    # two may act as a prior; an unconfirmed memory is context only, so a wrong guess cannot reinforce itself
    grade: str = "unconfirmed"


PRIOR_GRADES = frozenset({"confirmed", "verified"})


@dataclass(frozen=True, slots=True)
class EngineConfig:
    timeout_s: float = 10.0
    concurrency: int = 4
    history_s: float = 3600.0
    max_alert_delay_s: float = 3600.0  # the longest `for:` believed when a rule says since when it held
    # Answer only when the leading cause is clearly supported: a confidence of at least 0.3, and a score at
    # least ~1.3x its best independent rival's (separation = 1 - rival/leader >= 0.24).
    min_confidence: float = 0.3
    min_separation: float = 0.24
    min_strength: float = 0.3
    refute_precedence: float = 0.15
    max_causes: int = 10
    max_evidence: int = 60
    weights: Weights = field(default_factory=Weights)
    planner: Planner = field(default_factory=DeterministicPlanner)


StepCallback = Callable[[Step], Awaitable[None]]


class _Steps:
    """The reasoning so far; ``flush`` hands the steps added since the last flush to the caller's
    callback, so a chat thread can show each phase as it ends rather than all at the end."""

    def __init__(self, on_step: StepCallback | None = None) -> None:
        self.items: list[Step] = []
        self._on_step = on_step
        self._sent = 0

    def add(self, looked_at: str, concluded: str, kind: str = "looked") -> None:
        self.items.append(Step(len(self.items) + 1, looked_at, concluded, kind))

    async def flush(self) -> None:
        while self._sent < len(self.items):
            step = self.items[self._sent]
            self._sent += 1
            if self._on_step is not None:
                await self._on_step(step)


def _fmt_t(t: float, ref: float) -> str:
    d = t - ref
    return f"{'+' if d >= 0 else '-'}{abs(d):.0f}s"


def _memory_prior(scope: Scope, past: Sequence[PastIncident]) -> dict[tuple[str, str], float]:
    prior: dict[tuple[str, str], float] = {}
    for p in past:
        if p.grade in PRIOR_GRADES and set(p.services) & set(scope.symptoms) and p.cause_service:
            prior[(p.cause_service, p.cause_kind)] = 1.15
            prior.setdefault((p.cause_service, "*"), 1.05)
    return prior


async def _condition_start(scope: Scope, sources: Sources, limits: Limits,
                           max_delay_s: float) -> tuple[float | None, list[str]]:
    """When the alerts' rules first held, where the metrics source can say (the earliest), if that is earlier
    than the scope assumes and within ``max_delay_s`` of the alert (else ``None``); and the queries that failed."""
    m = sources.metrics
    if not isinstance(m, AlertStateSource) or not scope.alert_labels:
        return None, []
    found: list[float] = []
    failed: list[str] = []
    for labels in scope.alert_labels:
        res = await limits.call(m, "ALERTS_FOR_STATE", lambda labels=labels: m.pending_since(labels, scope.onset))
        if res.ok and res.data is not None:
            found.append(res.data)
        elif not res.ok:
            failed.append(f"{res.error or res.status}; the alert's start is assumed {scope.lead_s:.0f} s before it")
    t = min(found, default=None)
    return (t if t is not None and scope.onset - max_delay_s <= t < scope.onset else None), failed


ALONG_CALLS = ("latency", "client_latency", "errors")  # what a caller shows when what it calls is slow or failing


def _indistinct_without_graph(per_service: Sequence[Hypothesis], step: float) -> str:
    """With no call graph, a leader known only by slowness or failures has a twin in any service that slowed or
    failed from the same sample: either may be waiting on the other. Returns the twin's name, or ""."""
    lead = per_service[0] if per_service else None
    if lead is None or lead.change is not None or lead.events or not lead.support:
        return ""
    if any(f.family not in ALONG_CALLS for f in lead.support):
        return ""  # a saturated resource or an error origin is the service's own
    t0 = lead.onset()
    for h in per_service[1:]:
        along = [f for f in h.support if f.family in ALONG_CALLS]
        ts = [f.onset for f in along if f.onset is not None]
        if along and (t0 is None or not ts or abs(min(ts) - t0) <= step):
            return h.service
    return ""


def _settings_edges(scope: Scope) -> set[Edge]:
    return {Edge(caller, callee) for caller, callees in scope.topology.items() for callee in callees}


def _wide_recheck(g: Gathered, scope: Scope, look: Look, findings: list[Finding]) -> tuple[list[Finding], str]:
    frame = metric_frame(g, scope, baseline_factor=look.baseline_factor)
    if frame is None:
        return findings, "no metrics to look at again"
    wide = {(f.service, f.signal): f for f in metric_findings(g, scope, frame, look.services)}
    changed: list[str] = []
    out: list[Finding] = []
    for f in findings:
        wf = wide.get((f.service, f.signal)) if f.source == "metrics" else None
        if wf is not None and wf.z < f.z:
            if f.anomalous and not wf.anomalous:
                changed.append(f"{f.signal} of {f.service}")
            f = Finding(f.service, f.signal, f.info, f.source, wf.z, wf.onset if wf.anomalous else f.onset,
                        f.preexisting or wf.preexisting, f.before, f.after, f.query, f.link,
                        f.summary + f"; against the longer baseline z {wf.z:.1f}", f.peak, breadth=f.breadth)
        out.append(f)
    if changed:
        return out, f"within their longer-run range: {', '.join(changed[:6])}"
    return out, "the longer baseline confirms both anomalies"


def _instrumented(g: Gathered) -> set[str]:
    """Services with telemetry of their own: resource metrics, spans or log lines."""
    out = {svc for svc, sig in g.series if classify(sig).resource}
    out |= {s.service for s in g.spans or []}
    out |= {ln.service for ln in g.logs or []}
    return out


def _rank(hyps: Sequence[Hypothesis]) -> list[Hypothesis]:
    return sorted(hyps, key=lambda h: (-round(h.raw, 9), h.service, h.kind))


async def investigate(
    scope: Scope,
    sources: Sources,
    past: Sequence[PastIncident] = (),
    config: EngineConfig | None = None,
    on_step: StepCallback | None = None,
) -> Report:
    """Investigate ``scope`` over ``sources``; ``on_step`` (optional) is awaited with each reasoning
    step as the phase that produced it ends."""
    cfg = config or EngineConfig()
    steps = _Steps(on_step)
    steps.add(
        f"Scope: symptoms {', '.join(scope.symptoms) or '(none named)'}; onset {scope.onset:.0f}; "
        f"baseline {scope.baseline.start:.0f}-{scope.baseline.end:.0f}; incident {scope.incident.start:.0f}-{scope.now:.0f}",
        "compare the incident window with the baseline just before it",
    )
    await steps.flush()
    limits = Limits(cfg.timeout_s, cfg.concurrency)
    active, unanchored = await _condition_start(scope, sources, limits, cfg.max_alert_delay_s)
    if active is not None:
        assumed = scope.lead_s
        scope = scope.starting_at(active - assumed)
        steps.add(f"Start: the alert's rule has held since {_fmt_t(active, scope.onset)} from the alert (its for: "
                  "delay)", f"the incident starts {scope.lead_s:.0f} s before the alert, not {assumed:.0f} s")
    history = max(cfg.history_s, 3 * scope.baseline.seconds)
    window = TimeWindow(scope.incident.start - history, scope.now)
    change_window = TimeWindow(scope.onset - cfg.weights.change_horizon_s, scope.now)
    g = await gather(sources, window, limits, change_window=change_window)
    coverage = measure(g, sources, {"baseline": scope.baseline, "incident": scope.incident})

    # context: topology, changes, memory
    edges = set(g.edges) | _settings_edges(scope)
    if g.spans:
        edges |= edges_from_spans(g.spans)
    graph = Graph(sorted(edges, key=lambda e: (e.caller, e.callee)))
    ctx = [f"call graph: {len(edges)} edges" if edges else "call graph: unknown (no topology, no traces)"]
    if g.change_sources:
        ctx.append(f"{len(g.changes)} change(s) in the last {cfg.weights.change_horizon_s / 3600:.0f} h")
    prior = _memory_prior(scope, past)
    if past:
        ctx.append(f"{len(past)} similar past incident(s)")
    steps.add("Context: topology, changes, past incidents", "; ".join(ctx))
    await steps.flush()

    # look: metrics, logs, traces
    missing = list(g.missing) + unanchored
    frame: MetricFrame | None = metric_frame(g, scope)
    if frame is None and g.series:
        missing.append("metrics: no samples before the incident window to compare with (the data begins "
                       f"{_fmt_t(min(float(t[0]) for t, _ in g.series.values()), scope.onset)} from the alert)")
    findings: list[Finding] = []
    step_s = 60.0
    if frame is not None:
        step_s = frame.step
        mf = metric_findings(g, scope, frame)
        findings += mf
        anom = sorted((f for f in mf if f.anomalous), key=lambda f: (-f.z, f.service, f.signal))
        services = {s for s, _ in g.series}
        signals = {sig for _, sig in g.series}
        top = "; ".join(f"{f.signal} of {f.service} z {f.z:.1f}" for f in anom[:5])
        steps.add(
            f"Metrics: {len(signals)} signals over {len(services)} services (step {frame.step:g} s), "
            "robust z against the baseline median and spread",
            f"{len(anom)} series left their band" + (f"; strongest: {top}" if top else ""),
        )
    if graph.known and findings:
        cw = caller_wait_findings(findings, graph.up, graph.down, call_waits(g, scope), step_s)
        findings += cw
        if cw:
            steps.add("Callers' waiting time: which services do anomalous callers wait on",
                      ", ".join(f"{f.service} (z {f.z:.1f})" for f in sorted(cw, key=lambda f: -f.z)[:5]))
    if g.logs is not None:
        # drain3 over up to 20 000 lines is a third of a second of CPU: off the event loop
        lf = await asyncio.to_thread(log_findings, g, scope)
        findings += lf
        steps.add(
            f"Logs: {len(g.logs)} lines mined into templates (drain3), before vs after",
            f"{len(lf)} service(s) with new or more frequent error templates"
            + (": " + ", ".join(f.service for f in sorted(lf, key=lambda f: -f.z)[:5]) if lf else ""),
        )
    if g.spans:
        of = origin_findings(g, scope)
        findings += of
        if of:
            steps.add("Error origins: in each failing request, the service whose failure has no failing callee "
                      "beneath it", ", ".join(f"{f.service} (z {f.z:.1f})" for f in sorted(of, key=lambda f: -f.z)[:5]))
    if g.spans is not None:
        tf, note = trace_findings(g, scope)
        if note:
            missing.append(note)
        findings += tf
        moved = sorted({f.service for f in tf if f.anomalous})
        steps.add(
            f"Traces: {len(g.spans)} spans, each service's own time and errors before vs after",
            f"own time or errors rose in {len(moved)} service(s)" + (": " + ", ".join(moved[:6]) if moved else ""),
        )
    if g.cluster:
        steps.add("Cluster events", f"{len(g.cluster)} event(s): "
                  + ", ".join(sorted({f'{e.reason} {e.service}' for e in g.cluster})[:6]))

    await steps.flush()

    # hypothesise and test
    hyps = form(findings, g.changes, g.cluster or [], scope.onset, cfg.weights.change_horizon_s)
    score(hyps, findings, graph, scope.symptoms, scope.onset, step_s, cfg.weights, prior)
    prefer_explanations(hyps, step_s)
    instrumented = _instrumented(g)
    discount_echoes(hyps, findings, graph, step_s, instrumented)
    ranked = _rank(hyps)
    steps.add(f"Hypotheses: {len(hyps)} formed from the anomalies, changes and events",
              "; ".join(f"{h.service} {h.kind} {h.raw:.2f}" for h in ranked[:5]) or "none", "hypothesised")
    await steps.flush()

    looks: list[Look] = []
    while (look := cfg.planner.next_look([h for h in ranked if not h.refuted], looks)) is not None:
        looks.append(look)
        findings, concl = _wide_recheck(g, scope, look, findings)
        hyps = form(findings, g.changes, g.cluster or [], scope.onset, cfg.weights.change_horizon_s)
        score(hyps, findings, graph, scope.symptoms, scope.onset, step_s, cfg.weights, prior)
        prefer_explanations(hyps, step_s)
        discount_echoes(hyps, findings, graph, step_s, instrumented)
        ranked = _rank(hyps)
        steps.add(f"Look again: {look.reason}", concl, "tested")
        await steps.flush()

    # narrow: drop what the data refutes
    top_raw = ranked[0].raw if ranked else 0.0
    dropped: list[str] = []
    for h in ranked:
        if h.factors.get("precedence", 1.0) < cfg.refute_precedence:
            h.refuted = "started well after the first clear anomaly: a consequence, not a cause"
        elif top_raw > 0 and h.raw < 0.05 * top_raw:
            h.refuted = "far weaker than the leading cause"
        if h.refuted:
            dropped.append(f"{h.service} {h.kind} ({h.refuted})")
    alive = [h for h in ranked if not h.refuted and h.raw > 0 and named(h.service)]
    if dropped:
        steps.add(f"Narrow: tested {len(ranked)} hypotheses", f"dropped {len(dropped)}: " + "; ".join(dropped[:5]),
                  "tested")
        await steps.flush()

    # one cause per service, best first
    per_service: list[Hypothesis] = []
    seen: set[str] = set()
    for h in alive:
        if h.service not in seen:
            seen.add(h.service)
            per_service.append(h)
    # an echo of the leading cause (the same component seen from its callers' side) is not a rival
    lead = per_service[0] if per_service else None
    rivals = [h for h in per_service[1:] if lead is None or lead.service not in h.echo_of]
    raws = ([lead.raw] if lead else []) + [h.raw for h in rivals[:4]]
    total = sum(raws) or 1.0
    separation = 1.0 - (rivals[0].raw / lead.raw if lead and rivals and lead.raw > 0 else 0.0)

    def confidence(h: Hypothesis) -> float:
        return (1.0 - math.exp(-h.raw / 0.45)) * h.raw / total

    # evidence ids: the findings the causes cite, then the other clear anomalies
    chosen = per_service[: cfg.max_causes]
    cited: list[Finding] = []
    ids: dict[int, str] = {}
    for h in chosen:
        for f in h.support[:4]:
            if id(f) not in ids:
                ids[id(f)] = ""
                cited.append(f)
    rest = sorted((f for f in findings if f.anomalous and id(f) not in ids), key=lambda f: (-f.z, f.service, f.signal))
    evidence_items: list[EvidenceItem] = []
    for f in (cited + rest)[: cfg.max_evidence]:
        eid = f"e{len(evidence_items) + 1}"
        ids[id(f)] = eid
        evidence_items.append(EvidenceItem(
            id=eid, source=f.source, kind={"metrics": "metric"}.get(f.source, f.source), service=f.service,
            signal=f.signal, query=f.query, summary=f.summary, before=f.before, after=f.after, z=f.z,
            onset=f.onset, link=f.link,
        ))
    for h in chosen:
        if h.change is not None:
            c = h.change
            eid = f"e{len(evidence_items) + 1}"
            evidence_items.append(EvidenceItem(
                id=eid, source=c.source or "changes", kind="change", service=c.service, signal=c.kind,
                query=f"changes of {c.service}", onset=c.time, link=c.diff_url or c.url,
                summary=f"{c.kind} of {c.service} {c.previous_version or '?'} -> {c.version or '?'} "
                        f"{_fmt_t(c.time, scope.onset)} from the alert" + (f": {c.description}" if c.description else ""),
            ))
            ids[id(c)] = eid
        for e in h.events:
            eid = f"e{len(evidence_items) + 1}"
            evidence_items.append(EvidenceItem(
                id=eid, source="cluster", kind="cluster", service=e.service, signal=e.reason,
                query=f"events of {e.service}", onset=e.time,
                summary=f"{e.reason} {e.object or e.service} x{e.count}: {e.message[:200]}",
            ))
            ids[id(e)] = eid

    causes: list[Cause] = []
    for h in chosen:
        ev = [ids[id(f)] for f in h.support[:4] if ids.get(id(f))]
        if h.change is not None and ids.get(id(h.change)):
            ev.insert(0, ids[id(h.change)])
        ev += [ids[id(e)] for e in h.events if ids.get(id(e))]
        t_h = h.onset()
        when = f", from {_fmt_t(t_h, scope.onset)} relative to the alert" if t_h is not None else ""
        kind = failure_class(h)
        summary = f"{kind.replace('_', ' ')} in {h.service}{when}"
        if h.notes:
            summary += "; " + "; ".join(dict.fromkeys(h.notes))
        causes.append(Cause(h.service, kind, round(confidence(h), 4), ev, summary, h.raw))

    abstained = True
    reason = refusal(coverage)  # the sources' coverage first: no ranking over what they did not cover
    missing += coverage.missing
    if reason:
        pass
    elif not causes:
        reason = "nothing moved clearly away from its baseline"
    elif per_service[0].factors.get("strength", 0.0) < cfg.min_strength:
        reason = f"the strongest anomaly ({causes[0].service}) is weak"
    elif causes[0].confidence < cfg.min_confidence:
        reason = (f"the leading cause ({causes[0].service}, {causes[0].kind}) has a confidence of only "
                  f"{causes[0].confidence:.0%}")
    elif not graph.known and (twin := _indistinct_without_graph(per_service, step_s)):
        reason = (f"{causes[0].service} and {twin} slowed or failed together, and with no call graph the engine "
                  "cannot tell which one the other waits on (set triage.topology or add a trace source)")
    elif separation < cfg.min_separation:
        second = f" and {rivals[0].service}" if rivals else ""
        reason = (f"the leading causes ({causes[0].service}{second}) are not clearly separated "
                  f"(the runner-up scores {1 - separation:.0%} of the leader)")
    else:
        abstained = False
    sources_missing = sorted(set(missing))
    if abstained:
        if sources_missing:
            reason += "; missing: " + "; ".join(sources_missing[:3])
        steps.add("Conclusion", f"not enough evidence: {reason}", "concluded")
    else:
        c0 = causes[0]
        steps.add("Conclusion", f"most likely {c0.kind.replace('_', ' ')} in {c0.service} "
                                f"(confidence {c0.confidence:.2f}); evidence {', '.join(c0.evidence) or '-'}",
                  "concluded")
    await steps.flush()
    top_h = per_service[0] if per_service else None
    chart = build_chart(g, scope, findings, top_h.service if top_h else None, top_h.support if top_h else ())
    return Report(
        abstained=abstained,
        ranked_services=[c.service for c in causes],
        causes=causes,
        evidence=evidence_items,
        steps=steps.items,
        missing=sources_missing,
        scope=scope.to_dict(),
        reason=reason,
        chart=chart,
        separation=separation,
        similar=[{"incident_id": p.incident_id, "title": p.title, "cause_service": p.cause_service,
                  "cause_kind": p.cause_kind, "fix": p.fix} for p in past],
        coverage=coverage.to_dict(),
    )
