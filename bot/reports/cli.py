"""``onwatch incidents show ID [--json]`` and ``onwatch report [--days N] [--json]``: the web view's timeline
and reports in a terminal. Times are ISO 8601 in the reports' zone (``reports.timezone``, UTC by default)."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from bot.config import load_settings
from bot.errors import NotFound, OnwatchError
from bot.messages.format import fmt_num
from bot.operator_cli import run_on_database
from bot.reports.figures import Report
from bot.reports.load import build_report
from bot.reports.text import report_text
from bot.reports.timeline import FeedbackView, IncidentTimeline, incident_timeline, timeline_dict
from bot.reports.times import iso, zone
from bot.store.db import Database


def render_timeline(t: IncidentTimeline, tz: dt.tzinfo) -> str:
    inc = t.incident
    out = [f"{inc.id}  {inc.title}",
           f"  status {inc.status} ({inc.phase}) · severity {inc.severity} · services {', '.join(inc.services) or '–'}",
           f"  opened {iso(inc.opened_at, tz)}" + (f" · resolved {iso(inc.resolved_at, tz)}" if inc.resolved_at else ""),
           "  acknowledged " + ("; ".join(f"{a.actor_name or a.actor} at {iso(a.at, tz)}" for a in t.acks) or "not yet")]
    out += feedback_lines(t.feedback, tz)
    v = t.latest
    if v is not None:
        out.append("")
        if v.status == "failed":
            out.append(f"Investigation {v.id} failed: {v.error or 'no reason recorded'}")
        elif v.abstained:
            out.append("Not enough evidence to name a cause." + (f" {v.reason}" if v.reason else ""))
        out.append("Ranked causes:" if v.causes else "No cause ranked.")
        for c in v.causes[:5]:
            out.append(f"  {c.rank}. {c.service} — {c.kind} (confidence {c.confidence:.0%}) evidence {', '.join(c.evidence)}")
        if v.reading is not None:
            out += ["", "The model's reading:", f"  {v.reading.text}"]
        out += ["", "Evidence:"]
        for e in v.evidence:
            out.append(f"  [{e.key}] {e.summary} (before {fmt_num(e.before)}, after {fmt_num(e.after)})"
                       + (f" {e.link}" if e.link else ""))
        if v.missing:
            out.append("  could not check: " + "; ".join(v.missing))
    for p in t.proposals:
        out += ["", f"Proposal {p.title} ({p.runbook_id}, risk {p.risk}): {p.status}"]
        for d in p.decisions:
            out.append(f"  {d.actor}: {d.decision} at {iso(d.at, tz)}")
        if p.execution is not None:
            x = p.execution
            out.append(f"  execution {x.status} at {iso(x.started_at, tz)}" + (f": {x.error}" if x.error else ""))
            out.append(f"  verification {x.verification or '–'}" + (f" at {iso(x.verified_at, tz)}" if x.verified_at else ""))
    out += ["", "Timeline:"]
    for entry in t.entries:
        out.append(f"  {iso(entry.at, tz)}  {entry.action:<24} {entry.actor:<16} {entry.text}")
    return "\n".join(out)


def feedback_lines(f: FeedbackView, tz: dt.tzinfo) -> list[str]:
    """What people said about the cause and the fix (``onwatch incidents confirm|correct``, chat buttons)."""
    if f.cause_service:
        cause = (f"  cause {f.cause_verb} by {f.cause_by} at {iso(f.cause_at, tz)}: {f.cause_kind} in {f.cause_service}"
                 + (f" — {f.cause_note}" if f.cause_note else ""))
    else:
        cause = "  cause not confirmed by anyone yet"
    fix = f"  fixed by: {f.fix} (recorded by {f.fix_by} at {iso(f.fix_at, tz)})" if f.fix else "  what fixed it: not recorded"
    return [cause, fix] + ([f"  memory: {f.memory}"] if f.memory else [])


def show_main(args: argparse.Namespace) -> int:
    settings = load_settings(getattr(args, "config", None))
    tz = zone(settings.reports.timezone)

    async def _show(db: Database) -> IncidentTimeline:
        return await incident_timeline(db, str(args.id).upper())

    try:
        t = run_on_database(settings, _show)
    except NotFound as exc:
        raise OnwatchError(str(exc)) from None
    if args.json:
        print(json.dumps(timeline_dict(t), indent=2, ensure_ascii=False))
    else:
        print(render_timeline(t, tz))
    return 0


def report_main(args: argparse.Namespace) -> int:
    settings = load_settings(getattr(args, "config", None))
    tz = zone(settings.reports.timezone)
    if not 1 <= args.days <= 366:
        raise OnwatchError("--days must be from 1 to 366")

    async def _report(db: Database) -> Report:
        return await build_report(db, settings.reports, args.days)

    r = run_on_database(settings, _report)
    if args.json:
        print(json.dumps(r.as_dict(lambda ts: iso(ts, tz)), indent=2))
    else:
        print(report_text(r, tz))
    return 0
