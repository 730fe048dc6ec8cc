"""The weekly report in the incident channel: the figures of ``onwatch report`` on a crafted timeline (answers
worked out by hand), its chart, the leader's weekly tick in the reports' zone, and one post per week.

Slack: the Slack adapter against the local fake Slack API. Teams: the real onwatch app and botbuilder's
CloudAdapter posting to a fake Bot Connector."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from bot.app import build_context, build_runner, build_scheduler, context_for
from bot.chat import weekly
from bot.chat.slack.adapter import SlackAdapter
from bot.config import Settings
from bot.reports.load import build_report
from bot.reports.text import report_text
from bot.reports.times import zone
from bot.scheduler import LeaderScheduler
from bot.store.db import Database
from bot.store.models import Acknowledgement, Alert, Incident, Job
from tests.fakes.bot_connector import FakeBotConnector
from tests.fakes.slack_api import FakeSlack
from tests.slack_fixtures import INCIDENT_CHANNEL, slack_settings
from tests.teams_fixtures import BOT_ID, Served, activity, card_nodes, serve, teams_settings

END = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC).timestamp()  # a Monday, 09:00 UTC
DAY = 86400.0
PUBLIC = "https://onwatch.acme.internal"


async def crafted(db: Database) -> None:
    """Two incidents in the week and one before it.

    INC-WEEK01 (critical): first alert 60 s before it opened, acknowledged after 120 s, resolved after 600 s.
    INC-WEEK02 (warning): alert at opening, acknowledged after 300 s (Bo; Ana's later one does not count),
    resolved after 1200 s. INC-OLD001 opened ten days before the end: outside the window.
    Detect 60, 0 → median 30 s, p90 54 s; acknowledge 120, 300 → 3.5 min, 4.7 min; mitigate (no fix: the
    resolution) and resolve 600, 1200 → 15.0 min, 19.0 min; n 2 each. Pages: one critical in the week."""
    a, b, old = END - 3 * DAY, END - 2 * DAY, END - 10 * DAY
    async with db.begin() as s:
        for inc_id, sev, opened, resolved in (("INC-WEEK01", "critical", a, a + 600),
                                              ("INC-WEEK02", "warning", b, b + 1200),
                                              ("INC-OLD001", "critical", old, old + 60)):
            s.add(Incident(id=inc_id, title=inc_id, severity=sev, services=["checkout"],
                           status="resolved", opened_at=opened, resolved_at=resolved))
        await s.flush()
        s.add(Alert(fingerprint="w1", source="alertmanager", name="CheckoutErrors", status="resolved",
                    severity="critical", service="checkout", starts_at=a - 60, incident_id="INC-WEEK01"))
        s.add(Alert(fingerprint="w2", source="alertmanager", name="CheckoutSlow", status="resolved",
                    severity="warning", service="checkout", starts_at=b, incident_id="INC-WEEK02"))
        s.add(Alert(fingerprint="w3", source="alertmanager", name="Old", status="resolved",
                    severity="critical", service="checkout", starts_at=old - 999, incident_id="INC-OLD001"))
        s.add(Acknowledgement(incident_id="INC-WEEK01", actor="slack:U0ANA", actor_name="Ana", at=a + 120))
        s.add(Acknowledgement(incident_id="INC-WEEK02", actor="teams:bo", actor_name="Bo", at=b + 300))
        s.add(Acknowledgement(incident_id="INC-WEEK02", actor="slack:U0ANA", actor_name="Ana", at=b + 900))
        s.add(Acknowledgement(incident_id="INC-OLD001", actor="slack:U0ANA", actor_name="Ana", at=old + 5))


EXPECTED = [
    "detect               30 s       54 s    2",
    "acknowledge       3.5 min    4.7 min    2",
    "mitigate         15.0 min   19.0 min    2",
    "resolve          15.0 min   19.0 min    2",
    "change fail rate: – (0 of 0 deployments)",
]


async def test_the_weekly_figures_are_those_of_onwatch_report(anydb: Database) -> None:
    await crafted(anydb)
    settings = Settings(database={"url": str(anydb.engine.url)}, reports={"timezone": "Europe/Berlin"})  # type: ignore[arg-type]
    report = await build_report(anydb, settings.reports, weekly.DAYS, now=END)
    text = report_text(report, zone("Europe/Berlin"))
    for line in EXPECTED:
        assert line in text, text
    assert report.incidents == 2 and sum(s.pages for s in report.shifts) == 1
    assert "Report 2026-11-23T10:00:00+01:00 → 2026-11-30T10:00:00+01:00 · 2 incident(s)" in text
    msg = weekly.weekly_message(report, zone("Europe/Berlin"), b"\x89PNG", PUBLIC)
    assert msg.blocks[1].text == text  # type: ignore[union-attr]  # the very lines `onwatch report` prints
    assert msg.page_url == f"{PUBLIC}/ui/reports?days=7" and not weekly.weekly_message(report, zone(None), b"").page_url


# ----------------------------------------------------------------- Slack


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        yield f


async def test_slack_weekly_post_with_its_chart(fake: FakeSlack, sqlite_url: str, db: Database) -> None:
    await crafted(db)
    settings = slack_settings(sqlite_url, fake.api_url)
    settings.server.public_url = PUBLIC
    ctx = context_for(settings, db)
    ctx.chat.add(SlackAdapter(settings, db, debounce_s=0.05))
    assert await weekly.post_weekly_report(ctx, END) == 1
    post, chart = fake.messages[INCIDENT_CHANNEL]
    shown = json.dumps(post["blocks"], ensure_ascii=False)
    assert "Weekly reliability report, 23 Nov – 30 Nov 2026" in shown
    for line in EXPECTED:
        assert line in shown
    assert f"<{PUBLIC}/ui/reports?days=7|Open the reports page>" in shown
    assert "thread_ts" not in chart or not chart["thread_ts"]  # the chart sits in the channel, under the post
    (png,) = [f["data"] for f in fake.files.values()]
    assert png.startswith(b"\x89PNG") and chart["files"][0]["name"] == "onwatch-weekly-report.png"


# ----------------------------------------------------------------- Teams


async def test_teams_weekly_post_with_its_chart_inline(connector: FakeBotConnector, sqlite_url: str, db: Database,
                                                      tmp_path: Path) -> None:
    await crafted(db)
    ctx = await build_context(teams_settings(sqlite_url), db)
    async with serve(ctx) as srv:
        await _install(srv, connector)
        assert await weekly.post_weekly_report(ctx, END) == 1
    (create,) = connector.of_kind("create_conversation")
    card = create.body["activity"]["attachments"][0]["content"]
    texts = [b.get("text", "") for b in card_nodes(card["body"])]
    assert any("acknowledge" in t and "3.5 min" in t for t in texts)
    (image,) = [b for b in card_nodes(card["body"]) if b.get("type") == "Image"]
    png = base64.b64decode(image["url"].removeprefix("data:image/png;base64,"))
    assert png.startswith(b"\x89PNG") and len(json.dumps(create.body)) < 28 * 1024


async def _install(srv: Served, fake: FakeBotConnector) -> None:
    status, _ = await srv.post(activity("conversationUpdate", fake.service_url, membersAdded=[{"id": BOT_ID}]))
    assert status == 201


# ----------------------------------------------------------------- the leader's weekly tick


async def test_the_tick_is_weekly_in_the_reports_zone(db: Database) -> None:
    sched = LeaderScheduler(db)
    seen: list[int] = []

    async def tick() -> None:
        seen.append(1)

    sched.weekly("weekly-report", "mon", "09:00", "America/New_York", tick)
    sched.start()
    try:
        nxt = sched.next_run("weekly-report")
        assert nxt is not None
        local = nxt.astimezone(zone("America/New_York"))
        assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)
        assert nxt > dt.datetime.now(dt.UTC) and nxt - dt.datetime.now(dt.UTC) <= dt.timedelta(days=7)
    finally:
        await sched.stop()


async def test_one_post_per_week_through_a_durable_job(fake: FakeSlack, sqlite_url: str, db: Database) -> None:
    await crafted(db)
    settings = slack_settings(sqlite_url, fake.api_url)
    settings.reports.timezone = "Europe/Berlin"
    ctx = context_for(settings, db)
    ctx.chat.add(SlackAdapter(settings, db, debounce_s=0.05))
    runner = build_runner(ctx)
    assert weekly.JOB_KIND in runner.handlers
    first = await weekly.enqueue_weekly_report(ctx, END)
    assert first is not None
    assert await weekly.enqueue_weekly_report(ctx, END + 600) is None  # a second tick the same local day
    assert await runner.run_until_idle() == 1
    assert any("Weekly reliability report" in json.dumps(m.get("blocks")) for m in fake.messages[INCIDENT_CHANNEL])
    async with db.session() as s:
        assert len((await s.exec(select(Job).where(Job.kind == weekly.JOB_KIND))).all()) == 1
    assert await weekly.enqueue_weekly_report(ctx, END + 7 * DAY) is not None  # next week's


async def test_the_leader_schedules_it_only_when_on(db: Database, sqlite_url: str) -> None:
    on = context_for(Settings(database={"url": sqlite_url}, reports={"weekly_day": "fri",  # type: ignore[arg-type]
                                                                           "weekly_time": "16:30"}), db)
    sched = build_scheduler(on, build_runner(on))
    sched.start()
    try:
        nxt = sched.next_run(weekly.JOB_KIND)
        assert nxt is not None and (nxt.weekday(), nxt.hour, nxt.minute) == (4, 16, 30)
    finally:
        await sched.stop()
    off = context_for(Settings(database={"url": sqlite_url}, reports={"weekly": False}), db)  # type: ignore[arg-type]
    sched = build_scheduler(off, build_runner(off))
    sched.start()
    try:
        assert sched.next_run(weekly.JOB_KIND) is None
    finally:
        await sched.stop()
