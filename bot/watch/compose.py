"""Watch items as neutral chat messages: the early warning, its recovery, its escalation, and its evidence for
the investigation.

Everything from outside (service and signal names, titles, summaries, change descriptions, source errors) is
shown where no platform formats it: the heading (Slack ``plain_text``; Teams escapes it) or a code block, with
backticks replaced so nothing can close the block, or an inline code span in a line of onwatch's own words.
So a service named ``*bold* <!channel>`` is shown as those characters on Slack and Teams alike; the renderers
escape ``<``, ``>`` and ``&`` (and every Teams markup character) as everywhere else.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from bot.messages.chart import chart_for_report
from bot.messages.format import change_ratio, clip, fmt_num, utc_time
from bot.messages.model import Block, Chart, Message, Text
from bot.store.models import WatchItem
from bot.watch.context import WatchContext
from bot.watch.model import WatchFinding, WatchKind

KIND_LABEL = {WatchKind.DEGRADATION: "degradation", WatchKind.SLO_BURN: "SLO slow burn"}
INERT = str.maketrans({"`": "ˋ", "\r": " "})
FALLBACK_INERT = str.maketrans({"`": "ˋ", "*": "∗", "~": "∼", "\n": " ", "\r": " "})
EDGE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")  # ``_it_`` formats; ``latency_p99`` does not


def block_text(text: str) -> str:
    """Text for a code block: no backtick can end the block early."""
    return text.translate(INERT)


def quoted(text: str, limit: int = 300) -> str:
    """Outside text inside a line of onwatch's own words: one inline code span on one line."""
    return "`" + clip(" ".join(text.split()), limit).translate(INERT) + "`"


def fallback(text: str) -> str:
    """A notification's text (parsed as markup, shown without blocks): formatting characters made inert."""
    return clip(EDGE_UNDERSCORE.sub("ˍ", text.translate(FALLBACK_INERT)), 300)


def kind_label(kind: str) -> str:
    return KIND_LABEL.get(WatchKind(kind), kind) if kind in WatchKind.__members__.values() else kind


def hhmm(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%H:%M UTC")


def span(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 3600:
        return f"{max(1, s // 60)} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def opened_key(item_id: int) -> str:
    return f"watch:{item_id}:opened"


def _seen_lines(item: WatchItem, f: WatchFinding) -> list[str]:
    unit = f" {f.unit}" if f.unit else ""
    lines = [f"service   {f.service}", f"signal    {f.signal or '–'}",
             f"kind      {kind_label(f.kind)}", f"since     {utc_time(f.started_at)}"]
    if f.value is not None or f.baseline is not None:
        moved = change_ratio(f.baseline, f.value)
        lines.append(f"now       {fmt_num(f.value)}{unit} (baseline {fmt_num(f.baseline)}{unit}"
                     + (f", {moved}" if moved else "") + ")")
    if f.summary:
        lines.append(f"seen      {clip(' '.join(f.summary.split()), 600)}")
    lines.append(f"key       {f.key}  (watch item {item.id})")
    return lines


def _change_lines(ctx: WatchContext, started_at: float) -> list[str]:
    out = []
    for c in ctx.changes:
        delta = c.time - started_at
        when = f"{span(abs(delta))} {'before' if delta <= 0 else 'after'} the start"
        what = " ".join(x for x in (c.kind, c.version, clip(' '.join(c.description.split()), 160)) if x)
        out.append(f"{hhmm(c.time)}  {what}  ({when}{', ' + c.source if c.source else ''})"
                   + (f"\n         {c.url}" if c.url else ""))
    return out


def _similar_lines(ctx: WatchContext) -> list[str]:
    out = []
    for r in ctx.similar:
        cause = f"{r.cause_service} {r.cause_kind.replace('_', ' ')}".strip() or "cause not established"
        fix = f"; fixed by: {clip(r.fix, 200)}" if r.fix else ""
        out.append(f"{r.incident_id or r.ref}  {clip(r.title, 160)}: {cause}{fix} [{r.grade_label}]")
    return out


async def chart_of(f: WatchFinding, ctx: WatchContext) -> Chart | None:
    """The signal around its start, the start as a dashed line and the nearby changes as markers (the same chart
    code as an investigation's); None when there are fewer than two points."""
    report: dict[str, Any] = {"chart": {
        "title": clip(f"{f.service} {f.signal}".strip(), 80), "unit": f.unit, "onset": f.started_at,
        "series": [{"name": f.signal or f.service, "points": [list(p) for p in f.points]}],
        "markers": [{"at": c.time, "label": f"{c.kind} {c.version}".strip()} for c in ctx.changes]}}
    chart = await chart_for_report(report)
    if chart is None:
        return None
    return Chart(f"Early warning: {f.service} {f.signal}".strip(), chart.png, "onwatch-early-warning.png")


async def opened_message(item: WatchItem, f: WatchFinding, ctx: WatchContext) -> Message:
    """The early warning as it is posted once in the incident channel."""
    assert item.id is not None
    blocks: list[Block] = [
        Text(f"Early warning: {clip(f.title, 120)}", "heading"),
        Text(block_text("\n".join(_seen_lines(item, f))), "code"),
        Text("An early warning, not a page: no incident is open. This post gets a reply when the signal "
             "recovers, or when an incident about this service is investigated.", "muted"),
    ]
    chart = await chart_of(f, ctx)
    if chart is not None:
        blocks.append(chart)
    changes = _change_lines(ctx, f.started_at)
    if changes:
        blocks.append(Text("Changes near the start", "heading"))
        blocks.append(Text(block_text("\n".join(changes)), "code"))
    elif ctx.change_sources:
        blocks.append(Text("No change to this service near the start in the change sources.", "muted"))
    similar = _similar_lines(ctx)
    if similar:
        blocks.append(Text("Looks like", "heading"))
        blocks.append(Text(block_text("\n".join(similar)), "code"))
    if ctx.missing:
        blocks.append(Text("Could not check:", "muted"))
        blocks.append(Text(block_text("\n".join(ctx.missing)), "code"))
    return Message(blocks=tuple(blocks), fallback=fallback(f"Early warning: {f.title}"), key=opened_key(item.id))


def recovered_message(item: WatchItem, now: float, reason: str) -> Message:
    """The short reply under the early warning when it closes."""
    why = "" if reason in ("", "recovered") else f" ({quoted(reason, 200)})"
    text = (f"Recovered at {hhmm(now)}: it lasted {span(now - _started(item))} from its start at "
            f"{hhmm(_started(item))}; this early warning is closed{why}.")
    return Message(blocks=(Text(text, "muted"),), fallback=fallback(text), key=f"watch:{item.id}:closed")


def closed_by_hand_message(item: WatchItem, now: float, reason: str, by: str) -> Message:
    """The reply when a person closes an early warning (``onwatch watch close``): not a recovery."""
    why = f": {quoted(reason, 200)}" if reason else ""
    text = (f"Closed by {quoted(by, 100)} at {hhmm(now)}, {span(now - _started(item))} after its start at "
            f"{hhmm(_started(item))}; the check may warn again if it still sees it{why}.")
    return Message(blocks=(Text(text, "muted"),), fallback=fallback(text), key=f"watch:{item.id}:closed")


def escalated_message(item: WatchItem) -> Message:
    text = (f"Escalated to incident {item.incident_id} at {hhmm(item.escalated_at or item.last_seen_at)}: "
            "its investigation starts from this early warning. Follow the incident's thread.")
    return Message(blocks=(Text(text),), fallback=fallback(text), key=f"watch:{item.id}:escalated")


def _started(item: WatchItem) -> float:
    v = item.detail.get("started_at")
    return float(v) if isinstance(v, int | float) else item.opened_at


def early_warning_line(item: WatchItem) -> str:
    """The line the incident's thread shows: ``Early warning since HH:MM UTC: <summary>``."""
    summary = str(item.detail.get("summary") or item.title)
    return (f"Early warning since {hhmm(_started(item))}: {quoted(summary)} (watch item {item.id}, "
            f"{kind_label(item.kind)} on {quoted(item.service, 100)}, open since {hhmm(item.opened_at)}).")


def evidence_of(item: WatchItem) -> dict[str, Any]:
    """The item as an investigation's evidence (``report["early_warnings"]`` and an ``Evidence`` row)."""
    d: Mapping[str, Any] = item.detail
    started = _started(item)

    def num(x: Any) -> float | None:
        return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None

    summary = str(d.get("summary") or item.title)
    return {
        "id": f"watch-{item.id}", "source": "watch", "kind": "early_warning", "service": item.service,
        "signal": item.signal, "watch_item": item.id, "watch_key": item.key, "watch_kind": item.kind,
        "summary": f"early warning since {hhmm(started)}: {summary}", "title": item.title,
        "before": num(d.get("baseline")), "after": num(d.get("value")), "onset": started,
        "opened_at": item.opened_at, "unit": str(d.get("unit") or ""),
        "points": list(d.get("points") or []), "changes": list(d.get("changes") or []),
        "similar": [s.get("incident_id") for s in d.get("similar") or [] if isinstance(s, Mapping)],
    }
