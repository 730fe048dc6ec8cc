"""A PNG of the key signal around the onset, with change markers: a picture is read faster than numbers.

Rendering uses matplotlib's object API on the Agg canvas (no pyplot, no display, no global figure state)
inside ``asyncio.to_thread`` so the event loop never waits on it.

Where the series come from, first match wins:

1. ``report["chart"]`` (the engine's extra): ``{"title", "unit", "onset", "series": [{"name", "points":
   [[t, v], ...]} | {"name", "t": [...], "v": [...]}], "markers": [{"at", "label"}]}``;
2. evidence items carrying ``"series"``/``"points"`` (same point format), the top cause's first;
3. otherwise the before/after numbers of the top cause's evidence, drawn as paired bars.

Change markers are ``report["chart"]["markers"]``, ``report["changes"]`` and change-kind evidence with an
``onset``/``at`` time; the onset is a dashed line.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.messages.model import Chart

MAX_SERIES = 6
MAX_POINTS = 2000


@dataclass(frozen=True, slots=True)
class SeriesData:
    name: str
    t: tuple[float, ...]
    v: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Marker:
    at: float
    label: str


@dataclass(frozen=True, slots=True)
class ChartSpec:
    """What to draw: time series with an onset and change markers, or before/after bars."""

    title: str
    unit: str = ""
    series: tuple[SeriesData, ...] = ()
    onset: float | None = None
    markers: tuple[Marker, ...] = ()
    bars: tuple[tuple[str, float, float], ...] = field(default_factory=tuple)  # (label, before, after)


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if f == f and abs(f) != float("inf") else None


def _series(raw: Any, default_name: str) -> SeriesData | None:
    if not isinstance(raw, Mapping):
        return None
    name = str(raw.get("name") or default_name)
    pts: list[tuple[float, float]] = []
    if isinstance(raw.get("points"), Sequence):
        for p in raw["points"]:
            if isinstance(p, Sequence) and len(p) >= 2:
                t, v = _num(p[0]), _num(p[1])
                if t is not None and v is not None:
                    pts.append((t, v))
    elif isinstance(raw.get("t"), Sequence) and isinstance(raw.get("v"), Sequence):
        for t0, v0 in zip(raw["t"], raw["v"], strict=False):
            t, v = _num(t0), _num(v0)
            if t is not None and v is not None:
                pts.append((t, v))
    if len(pts) < 2:
        return None
    pts.sort()
    if len(pts) > MAX_POINTS:  # keep the shape, drop the density
        step = len(pts) / MAX_POINTS
        pts = [pts[int(i * step)] for i in range(MAX_POINTS)]
    return SeriesData(name, tuple(p[0] for p in pts), tuple(p[1] for p in pts))


def _markers(report: Mapping[str, Any], chart: Mapping[str, Any]) -> list[Marker]:
    out: list[Marker] = []
    for m in list(chart.get("markers") or []) + list(report.get("changes") or []):
        if isinstance(m, Mapping):
            at = _num(m.get("at") if "at" in m else m.get("time"))
            if at is not None:
                out.append(Marker(at, str(m.get("label") or m.get("summary") or "change")[:40]))
    for ev in report.get("evidence") or []:
        if isinstance(ev, Mapping) and ev.get("kind") in ("change", "deploy"):
            at = _num(ev.get("at", ev.get("onset")))
            if at is not None:
                out.append(Marker(at, str(ev.get("summary") or "change")[:40]))
    seen: set[tuple[float, str]] = set()
    uniq = []
    for m in sorted(out, key=lambda m: m.at):
        if (m.at, m.label) not in seen:
            seen.add((m.at, m.label))
            uniq.append(m)
    return uniq[:8]


def _top_evidence(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    evidence = {str(e.get("id")): e for e in report.get("evidence") or [] if isinstance(e, Mapping)}
    ordered: list[Mapping[str, Any]] = []
    for c in report.get("causes") or []:
        if isinstance(c, Mapping):
            for k in c.get("evidence") or []:
                e = evidence.get(str(k))
                if e is not None and e not in ordered:
                    ordered.append(e)
    ordered.extend(e for e in evidence.values() if e not in ordered)
    return ordered


def spec_from_report(report: Mapping[str, Any], title: str = "") -> ChartSpec | None:
    """Pick what to draw from a report; None when it holds nothing chartable."""
    chart = report.get("chart") if isinstance(report.get("chart"), Mapping) else {}
    assert isinstance(chart, Mapping)
    markers = tuple(_markers(report, chart))
    series = [s for i, raw in enumerate(chart.get("series") or []) if (s := _series(raw, f"series {i + 1}"))]
    onset = _num(chart.get("onset")) or _num((report.get("scope") or {}).get("onset")) or _num(report.get("onset"))
    top = _top_evidence(report)
    if not series:
        for ev in top:
            s = _series({"name": ev.get("signal") or ev.get("summary") or ev.get("id"),
                         "points": ev.get("series") or ev.get("points") or []}, str(ev.get("id")))
            if s is not None:
                series.append(s)
                onset = onset or _num(ev.get("onset"))
            if len(series) >= 3:
                break
    name = str(chart.get("title") or title or "Key signal around the onset")
    if series:
        return ChartSpec(title=name, unit=str(chart.get("unit", "")), series=tuple(series[:MAX_SERIES]),
                         onset=onset, markers=markers)
    bars = []
    for ev in top:
        b, a = _num(ev.get("before")), _num(ev.get("after"))
        if b is not None and a is not None:
            label = f"{ev.get('service', '')} {ev.get('signal') or ev.get('kind') or ''}".strip() or str(ev.get("id"))
            bars.append((label[:28], b, a))
        if len(bars) >= 6:
            break
    if not bars:
        return None
    return ChartSpec(title=name + " (before → after onset)", bars=tuple(bars))


def render_png(spec: ChartSpec) -> bytes:
    """Draw ``spec`` to PNG bytes. Blocking (CPU); call through ``asyncio.to_thread``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(spec.title[:90], fontsize=10)
    if spec.series:
        import matplotlib.dates as mdates

        def to_dt(ts: float) -> float:
            return ts / 86400.0  # matplotlib's date unit: days since its default epoch, 1970-01-01 UTC

        for s in spec.series:
            ax.plot([to_dt(t) for t in s.t], list(s.v), label=s.name[:40], linewidth=1.4)
        if spec.onset is not None:
            ax.axvline(to_dt(spec.onset), color="crimson", linestyle="--", linewidth=1.2, label="onset")
        lo = min(min(s.t) for s in spec.series)
        hi = max(max(s.t) for s in spec.series)
        for m in spec.markers:
            if lo <= m.at <= hi:
                ax.axvline(to_dt(m.at), color="darkorange", linewidth=1.0, alpha=0.9)
                ax.annotate(m.label, xy=(to_dt(m.at), 1.0), xycoords=("data", "axes fraction"),
                            rotation=90, va="top", ha="right", fontsize=7, color="darkorange")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz="UTC"))
        ax.set_xlabel("time (UTC)", fontsize=8)
        if spec.unit:
            ax.set_ylabel(spec.unit, fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    else:
        import numpy as np

        x = np.arange(len(spec.bars))
        ax.bar(x - 0.2, [b[1] for b in spec.bars], 0.4, label="before", color="steelblue")
        ax.bar(x + 0.2, [b[2] for b in spec.bars], 0.4, label="after", color="crimson")
        ax.set_xticks(x, [b[0] for b in spec.bars], rotation=15, fontsize=7, ha="right")
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


async def chart_for_report(report: Mapping[str, Any], title: str = "") -> Chart | None:
    """The report's chart as a neutral ``Chart``, or None when there is nothing to draw."""
    spec = spec_from_report(report, title)
    if spec is None:
        return None
    png = await asyncio.to_thread(render_png, spec)
    return Chart(title=spec.title, png=png, filename="onwatch-chart.png")
