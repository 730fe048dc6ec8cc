"""The chart data of a report: the key signal(s) of the top cause, the symptom's signal for context.

A person reads a picture faster than numbers, but the report is stored as JSON, so the chart is kept
small: at most a few series from the baseline start to the clock, each bucketed down to
``max_points`` points, and the changes that fell in the window as markers. Series in different
units are drawn as robust z against their own baseline so that one axis can hold them.
``bot/messages/chart.py`` renders this exact shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bot.investigate.catalog import classify
from bot.investigate.findings import Finding
from bot.investigate.look import Gathered
from bot.investigate.scope import Scope
from bot.investigate.stats import baseline

MAX_POINTS = 300
MAX_SERIES = 3

_UNITS = {"cpu": "%", "memory": "bytes", "latency": "s", "client_latency": "s", "traffic": "req/s",
          "network": "B/s", "disk": "B/s"}


def unit_of(signal: str) -> str:
    info = classify(signal)
    if info.family == "errors":
        return "%" if info.direction < 0 else "fraction"
    return _UNITS.get(info.family, "")


def downsample(t: np.ndarray, v: np.ndarray, max_points: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """Bucket a series to at most ``max_points`` points; each bucket keeps its first time and the value
    furthest from the series median, so a short spike survives the thinning."""
    if len(t) <= max_points:
        return [round(float(x), 3) for x in t], [float(f"{x:.6g}") for x in v]
    edges = np.linspace(0, len(t), max_points + 1).astype(int)
    med = float(np.median(v))
    ts: list[float] = []
    vs: list[float] = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b <= a:
            continue
        seg = v[a:b]
        i = int(np.argmax(np.abs(seg - med)))
        ts.append(round(float(t[a]), 3))
        vs.append(float(f"{float(seg[i]):.6g}"))
    return ts, vs


def _pick(findings: Sequence[Finding], service: str, g: Gathered, limit: int) -> list[tuple[str, str]]:
    """The metric series of ``service`` that moved most, best first."""
    own = sorted((f for f in findings if f.service == service and f.source == "metrics"
                  and (f.service, f.signal) in g.series and f.anomalous), key=lambda f: (-f.z, f.signal))
    return [(f.service, f.signal) for f in own[:limit]]


def build_chart(
    g: Gathered,
    scope: Scope,
    findings: Sequence[Finding],
    top_service: str | None,
    top_support: Sequence[Finding] = (),
) -> dict[str, Any] | None:
    """The ``report["chart"]`` dict, or None when no metric series belongs to the cause or the symptom."""
    start, end = scope.baseline.start, scope.now
    keys: list[tuple[str, str]] = []
    if top_service is not None:
        keys += [(f.service, f.signal) for f in top_support
                 if f.source == "metrics" and (f.service, f.signal) in g.series][:2]
        if not keys:
            keys += _pick(findings, top_service, g, 2)
    for sym in scope.symptoms:
        if sym == top_service:
            continue
        ctx = _pick(findings, sym, g, 1)
        if not ctx:  # nothing moved there: its latency (or any series) still sets the scene
            ctx = sorted(k for k in g.series if k[0] == sym and classify(k[1]).family in ("latency", "errors"))[:1]
        keys += ctx
        break
    keys = list(dict.fromkeys(keys))[:MAX_SERIES]
    if not keys:
        return None
    units = {unit_of(sig) for _, sig in keys}
    same_unit = len({sig for _, sig in keys}) == 1 or len(units) == 1
    series: list[dict[str, Any]] = []
    for svc, sig in keys:
        t, v = g.series[(svc, sig)]
        m = (t >= start) & (t <= end)
        if m.sum() < 2:
            continue
        tt, vv = t[m], v[m].astype(np.float64)
        if not same_unit:
            info = classify(sig)
            b = baseline(vv[tt < scope.incident.start], info.rel_floor, info.abs_floor, info.full_scale)
            if b is None:
                continue
            vv = (vv - b.median) / b.spread
        ts, vs = downsample(tt, vv)
        series.append({"name": f"{sig} of {svc}", "t": ts, "v": vs})
    if not series:
        return None
    unit = next(iter(units)) if same_unit else "robust z vs baseline"
    markers = [{"at": round(c.time, 3), "label": f"{c.kind} {c.service} {c.version}".strip()[:60]}
               for c in g.changes if start <= c.time <= end][:8]
    title = ", ".join(s["name"] for s in series[:2])
    return {"title": title[:120], "unit": unit, "onset": scope.onset, "series": series, "markers": markers}
