"""The weekly reliability report in the incident channel: the figures ``onwatch report`` prints (the same
lines, ``bot.reports.text``), its chart, and a link to the reports page when ``server.public_url`` is set.

The leader's weekly tick (``reports.weekly_day`` at ``reports.weekly_time`` in ``reports.timezone``, wired in
``bot.app``) only enqueues a durable job, one per local date (its dedup key), so a restart, a second tick or
a new leader never posts the same week twice; a worker then builds and posts it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Protocol, runtime_checkable

from bot.context import AppContext
from bot.messages.model import Chart, Message, Text
from bot.reports.chart import report_png
from bot.reports.figures import Report
from bot.reports.load import build_report
from bot.reports.text import report_text
from bot.reports.times import zone
from bot.store.models import Job

log = logging.getLogger(__name__)

JOB_KIND = "weekly-report"
DAYS = 7


@runtime_checkable
class ChannelMessagePoster(Protocol):
    """An adapter that can post to its incident channel outside any incident's thread."""

    async def post_to_channel(self, message: Message) -> bool: ...


def weekly_message(report: Report, tz: dt.tzinfo, png: bytes, public_url: str | None = None) -> Message:
    start = dt.datetime.fromtimestamp(report.start, tz).strftime("%d %b")
    end = dt.datetime.fromtimestamp(report.end, tz).strftime("%d %b %Y")
    title = f"Weekly reliability report, {start} – {end}"
    chart = Chart(f"{title}: pages per on-call shift and time to detect, acknowledge, mitigate, resolve", png,
                  "onwatch-weekly-report.png")
    return Message(blocks=(Text(title, "heading"), Text(report_text(report, tz), "code"), chart),
                   fallback=f"{title}: {report.incidents} incident(s)",
                   page_url=f"{public_url.rstrip('/')}/ui/reports?days={DAYS}" if public_url else "",
                   page_title="reports page")


async def post_weekly_report(ctx: AppContext, end: float | None = None) -> int:
    """Build the report of the ``DAYS`` days before ``end`` and post it to every chat platform with an incident
    channel; the number of platforms that took it."""
    tz = zone(ctx.settings.reports.timezone)
    report = await build_report(ctx.db, ctx.settings.reports, DAYS, now=end)
    message = weekly_message(report, tz, await report_png(report, tz), ctx.settings.server.public_url)
    posted = 0
    for adapter in ctx.chat.adapters:
        if isinstance(adapter, ChannelMessagePoster) and await adapter.post_to_channel(message):
            posted += 1
    log.info("weekly report (%d incident(s)) posted to %d chat platform(s)", report.incidents, posted)
    return posted


async def enqueue_weekly_report(ctx: AppContext, now: float | None = None) -> Job | None:
    """The leader's weekly tick: one durable job per local date; None when this date's job already exists."""
    now = time.time() if now is None else now
    day = dt.datetime.fromtimestamp(now, zone(ctx.settings.reports.timezone)).date().isoformat()
    return await ctx.jobs.enqueue(JOB_KIND, {"end": now}, dedup_key=f"{JOB_KIND}:{day}")


async def handle_job(ctx: AppContext, job: Job) -> None:
    end = job.payload.get("end")
    await post_weekly_report(ctx, float(end) if isinstance(end, (int, float)) else None)
