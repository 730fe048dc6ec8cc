"""Escalation: an incident investigated for a service with an open watch item takes the item along. The item is
escalated (incident linked, audited, a reply under its post), the incident's thread says "Early warning since
HH:MM UTC: ..." before the first reasoning step, and the report and its evidence rows carry it. The real
investigation service over a replayed case; Slack through the real adapter to the fake Slack API."""

from __future__ import annotations

import json
from pathlib import Path

from sqlmodel import col, select

from bot.app import context_for
from bot.audit import Actor, verify_chain
from bot.investigate.requests import request_investigation
from bot.investigate.service import run_investigation
from bot.store.db import Database
from bot.store.models import Alert, AuditEvent, ChatThread, Evidence, Incident, Investigation, WatchItem
from bot.watch.model import WatchOutcome, WatchStatus
from integrations.replay import replay_sources
from tests.fakes.slack_api import FakeSlack
from tests.investigate_fixtures import ALERT, add_on, chain, make_case
from tests.slack_fixtures import INCIDENT_CHANNEL
from tests.watch_fixtures import finding, rig


def _text(m: dict) -> str:
    return json.dumps(m.get("blocks") or []) + m.get("text", "")


async def test_escalation_links_the_incident_and_the_report_carries_it(db: Database, slack: FakeSlack,
                                                                       sqlite_url: str, tmp_path: Path) -> None:
    r = rig(db, slack, sqlite_url, min_interval_s=0)
    watch = r.service()
    assert await watch.observe(finding("frontend", "latency_p90", summary="p90 of frontend 3x baseline")) \
        == WatchOutcome.OPENED
    assert await watch.observe(finding("search", "error_rate")) == WatchOutcome.OPENED
    warning_post, search_post = r.posts()

    case = make_case(tmp_path, chain(add_on("payment", "cpu", 70.0), add_on("frontend", "latency_p90", 0.2)))
    ctx = context_for(r.adapter.settings, db)
    ctx.sources_factory = lambda: replay_sources(case)
    ctx.chat.add(r.adapter)
    async with db.begin() as s:
        s.add(Incident(id="INC-T1", title="storefront slow", services=["frontend"]))
        await s.flush()
        s.add(Alert(fingerprint="f" * 16, source="alertmanager", name="Crafted", status="firing",
                    service="frontend", starts_at=float(ALERT), incident_id="INC-T1"))
    inv_id = await request_investigation(ctx, "INC-T1", Actor("cli", "op"))
    await run_investigation(ctx, inv_id, early_warnings=watch.escalate)
    await r.adapter.flush()

    async with db.session() as s:
        items = {i.service: i for i in (await s.exec(select(WatchItem))).all()}
        inv = await s.get(Investigation, inv_id)
        rows = (await s.exec(select(Evidence).where(Evidence.investigation_id == inv_id,
                                                    Evidence.source == "watch"))).all()
        audits = (await s.exec(select(AuditEvent).where(AuditEvent.action == "watch.escalated"))).all()
        thread = (await s.exec(select(ChatThread).where(ChatThread.incident_id == "INC-T1"))).one()
    item = items["frontend"]
    assert item.status == WatchStatus.ESCALATED and item.incident_id == "INC-T1" and item.escalated_at
    assert items["search"].status == WatchStatus.OPEN and items["search"].incident_id is None
    assert [(a.incident_id, a.params["watch_item"]) for a in audits] == [("INC-T1", item.id)]
    # the report and the evidence rows carry it
    assert inv is not None and inv.status == "done"
    (ew,) = inv.report["early_warnings"]
    assert ew["id"] == f"watch-{item.id}" and ew["service"] == "frontend" and ew["before"] == 0.2
    assert ew["summary"] == "early warning since 16:00 UTC: p90 of frontend 3x baseline"
    assert ew["id"] in [e["id"] for e in inv.report["evidence"]]
    assert [(e.key, e.kind, e.service) for e in rows] == [(f"watch-{item.id}", "early_warning", "frontend")]
    # the incident's thread says it first; the watch item's post says where it went
    replies = [m for m in slack.messages[INCIDENT_CHANNEL] if m.get("thread_ts") == thread.thread_id]
    assert "Early warning since 16:00 UTC" in _text(replies[0]) and "p90 of frontend 3x baseline" in _text(replies[0])
    assert "How I investigated" in " ".join(_text(m) for m in replies[1:])
    (note,) = r.replies(warning_post["ts"])
    assert "Escalated to incident INC-T1" in _text(note)
    assert r.replies(search_post["ts"]) == []

    # a second investigation of the incident starts from the same item, without escalating or posting it again
    again = await request_investigation(ctx, "INC-T1", Actor("cli", "op"))
    await run_investigation(ctx, again, early_warnings=watch.escalate)
    async with db.session() as s:
        inv2 = await s.get(Investigation, again)
        n = len((await s.exec(select(AuditEvent).where(col(AuditEvent.action) == "watch.escalated"))).all())
    assert inv2 is not None and [w["id"] for w in inv2.report["early_warnings"]] == [f"watch-{item.id}"]
    assert n == 1 and len(r.replies(warning_post["ts"])) == 1
    assert sum("Early warning since" in _text(m) for m in slack.messages[INCIDENT_CHANNEL]
               if m.get("thread_ts") == thread.thread_id) == 1
    # an escalated item is still live: the detector seeing it again holds it; its recovery closes it
    assert await watch.observe(finding("frontend", "latency_p90")) == WatchOutcome.HELD
    assert await watch.recover([], "degradation") == ["degradation:frontend:latency_p90",
                                                      "degradation:search:error_rate"]
    assert (await verify_chain(db)).ok


async def test_no_hook_no_watch_items_touched(db: Database, slack: FakeSlack, sqlite_url: str, tmp_path: Path) -> None:
    """Without the hook (the composition root not wiring it), the investigation runs as before."""
    r = rig(db, slack, sqlite_url)
    watch = r.service()
    await watch.observe(finding("frontend", "latency_p90"))
    case = make_case(tmp_path, add_on("frontend", "latency_p90", 0.2))
    ctx = context_for(r.adapter.settings, db)
    ctx.sources_factory = lambda: replay_sources(case)
    async with db.begin() as s:
        s.add(Incident(id="INC-T2", title="storefront slow", services=["frontend"]))
    inv_id = await request_investigation(ctx, "INC-T2", Actor("cli", "op"))
    await run_investigation(ctx, inv_id)
    async with db.session() as s:
        inv = await s.get(Investigation, inv_id)
        item = (await s.exec(select(WatchItem))).one()
    assert inv is not None and "early_warnings" not in inv.report and item.status == WatchStatus.OPEN
