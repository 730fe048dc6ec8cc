"""The weekly report's picture: pages per on-call shift against the limit of two, and the four durations'
medians and p90s. Matplotlib's object API on the Agg canvas (no pyplot, no global state), run in a thread."""

from __future__ import annotations

import asyncio
import datetime as dt
import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bot.reports.figures import DURATIONS, SUSTAINABLE_PAGES_PER_SHIFT, Report

LABELS = {"time_to_detect": "detect", "time_to_acknowledge": "acknowledge", "time_to_mitigate": "mitigate",
          "time_to_resolve": "resolve"}


def render_report_png(report: Report, tz: dt.tzinfo) -> bytes:
    fig = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    pages = [s.pages for s in report.shifts]
    colours = ["#c0392b" if p > SUSTAINABLE_PAGES_PER_SHIFT else "#2e86c1" for p in pages]
    left.bar(range(len(pages)), pages, color=colours)
    left.axhline(SUSTAINABLE_PAGES_PER_SHIFT, color="#555", linestyle="--", linewidth=1)
    step = max(1, len(pages) // 7)
    ticks = list(range(0, len(pages), step))
    left.set_xticks(ticks, [dt.datetime.fromtimestamp(report.shifts[i].start, tz).strftime("%a %H:%M")
                            for i in ticks], fontsize=7)
    left.set_title(f"Pages per on-call shift (limit {SUSTAINABLE_PAGES_PER_SHIFT})", fontsize=10)
    left.set_ylim(0, max([SUSTAINABLE_PAGES_PER_SHIFT + 1, *pages]))
    names = [LABELS[k] for k in DURATIONS]
    med = [(report.durations[k].overall.median_s or 0.0) / 60 for k in DURATIONS]
    p90 = [(report.durations[k].overall.p90_s or 0.0) / 60 for k in DURATIONS]
    xs = range(len(names))
    right.bar([x - 0.2 for x in xs], med, width=0.4, label="median", color="#2e86c1")
    right.bar([x + 0.2 for x in xs], p90, width=0.4, label="p90", color="#85c1e9")
    right.set_xticks(list(xs), names, fontsize=8)
    right.set_ylabel("minutes", fontsize=8)
    right.set_title("Time to …", fontsize=10)
    right.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


async def report_png(report: Report, tz: dt.tzinfo) -> bytes:
    return await asyncio.to_thread(render_report_png, report, tz)
