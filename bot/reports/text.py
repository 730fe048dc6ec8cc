"""The report as plain lines: what ``onwatch report`` prints and what the weekly post in chat says, so the
two always show the same figures."""

from __future__ import annotations

import datetime as dt

from bot.reports.figures import DURATIONS, SUSTAINABLE_PAGES_PER_SHIFT, Report
from bot.reports.times import iso


def fmt_duration(s: float | None) -> str:
    """``45 s``, ``3.5 min``; ``–`` for no figure (an empty set is not zero)."""
    if s is None:
        return "–"
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"


def report_lines(r: Report, tz: dt.tzinfo) -> list[str]:
    d = r.as_dict(lambda ts: iso(ts, tz))
    out = [f"Report {d['window']['start']} → {d['window']['end']} · {r.incidents} incident(s)", "",
           f"{'time to':<14} {'median':>10} {'p90':>10} {'n':>4}"]
    for k in DURATIONS:
        st = r.durations[k].overall
        out.append(f"{k.removeprefix('time_to_'):<14} {fmt_duration(st.median_s):>10} {fmt_duration(st.p90_s):>10} "
                   f"{st.n:>4}")
    cfr = r.change_fail_rate
    out += ["", f"change fail rate: {'–' if cfr is None else f'{cfr:.0%}'} "
                f"({len(r.failed_deployments)} of {r.deployments} deployments)",
            f"failed deployment recovery: median {fmt_duration(r.recovery.median_s)}, "
            f"p90 {fmt_duration(r.recovery.p90_s)} (n {r.recovery.n})",
            f"pages per shift: {len(r.shifts)} shifts, {r.shifts_over_limit} over the limit of "
            f"{SUSTAINABLE_PAGES_PER_SHIFT}, busiest {d['pages_per_shift']['max']}",
            f"alerts received {r.noise.get('received', 0)}, duplicates {r.noise.get('duplicates', 0)}, "
            f"suppressed {r.noise.get('suppressed', 0)}"]
    return out


def report_text(r: Report, tz: dt.tzinfo) -> str:
    return "\n".join(report_lines(r, tz))
