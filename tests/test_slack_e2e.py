"""End to end through the real services: an alert posted in Slack → triage → incident thread → investigation
over replayed telemetry → ranked causes, evidence and chart in the thread → proposal with buttons → an
authorised click (twice) → the runbook runs once against a local webhook receiver → the message is updated.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from bot.app import build_context, web_app
from bot.chat.slack.adapter import SlackAdapter
from bot.context import AppContext
from bot.jobs import JobRunner
from bot.store.models import (
    AuditEvent,
    ChatMessageRef,
    ChatThread,
    Execution,
    Incident,
    Investigation,
    Proposal,
)
from tests.fakes.slack_api import FakeSlack, action_body, event_body, sign
from tests.investigate_fixtures import deploy_case
from tests.remediate_fixtures import Receiver, serve_receiver, wire_e2e
from tests.slack_fixtures import ALERT_CHANNEL, SECRET, eventually, slack_settings

HOOK_SECRET = "rollback-hook-secret"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        f.add_user("UALICE", "alice")
        f.add_user("UBOB", "bob")
        yield f


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    async with serve_receiver(HOOK_SECRET) as served:
        yield served


@pytest.fixture
async def world(fake: FakeSlack, receiver: tuple[Receiver, str], sqlite_url: str, db: Any,
                tmp_path: Path) -> AsyncIterator[tuple[AppContext, TestClient, JobRunner]]:
    settings = slack_settings(sqlite_url, fake.api_url)
    ctx = await build_context(settings, db)
    runner = wire_e2e(ctx, deploy_case(tmp_path), receiver[1], HOOK_SECRET)
    client = TestClient(TestServer(web_app(ctx)))
    await client.start_server()
    try:
        yield ctx, client, runner
    finally:
        await client.close()
        await ctx.remediation.aclose()


async def post_signed(client: TestClient, body: str, form: bool = False) -> int:
    headers = sign(SECRET, body)
    headers["Content-Type"] = "application/x-www-form-urlencoded" if form else "application/json"
    resp = await client.post("/slack/events", data=body.encode(), headers=headers)
    return resp.status


async def test_alert_post_to_approved_runbook_run_once(world, fake, receiver):
    ctx, client, runner = world
    rec, _ = receiver
    adapter = next(a for a in ctx.chat.adapters if isinstance(a, SlackAdapter))
    adapter.debounce_s = 0.05

    # 1. another tool posts an alert in the alert channel
    alert = fake.add_message(ALERT_CHANNEL, "", bot_id="BALERTMANAGER", username="Alertmanager", attachments=[{
        "color": "danger", "title": "[FIRING:1] HighLatency frontend (prod shop)",
        "title_link": "http://alertmanager:9093/#/alerts?receiver=slack", "text": "frontend p90 latency is high"}])
    event = {"type": "message", "channel": ALERT_CHANNEL, "ts": alert["ts"], "bot_id": "BALERTMANAGER",
             "subtype": "bot_message", "username": "Alertmanager", "text": "", "attachments": alert["attachments"]}
    assert await post_signed(client, event_body(event)) == 200

    # 2. triage opens an incident, answered in the alert's own thread
    async def thread() -> ChatThread | None:
        async with ctx.db.session() as s:
            return (await s.exec(select(ChatThread))).first()

    th = await eventually(thread)
    assert th.channel == ALERT_CHANNEL and th.thread_id == alert["ts"]
    card = fake.find(ALERT_CHANNEL, th.root_message_id)
    assert card is not None and card["thread_ts"] == alert["ts"] and "frontend" in json.dumps(card["blocks"])

    # 3. the investigation runs as a durable job; the thread gets reasoning, causes with evidence, a chart
    assert await runner.run_until_idle() >= 1
    async with ctx.db.session() as s:
        inv = (await s.exec(select(Investigation))).one()
        proposals = (await s.exec(select(Proposal))).all()
    assert inv.status == "done" and inv.report["causes"][0]["service"] == "orders", inv.report
    await adapter.flush()  # the final summary replaces the live steps by a debounced edit
    in_thread = json.dumps([m.get("blocks") for m in fake.thread(ALERT_CHANNEL, alert["ts"])])
    assert "How I investigated" in in_thread and "Likely causes" in in_thread and "orders" in in_thread
    assert "git.example/orders/pull/7" in in_thread  # the deploy's link
    charts = [f for f in fake.files.values() if f["name"] == "onwatch-chart.png"]
    assert len(charts) == 1 and charts[0]["shared"]["thread_ts"] == alert["ts"]
    rollback = next(p for p in proposals if p.runbook_id == "webhook-argocd-rollback")
    assert rollback.status == "pending"
    async with ctx.db.session() as s:
        ref = (await s.exec(select(ChatMessageRef).where(ChatMessageRef.key == f"proposal:{rollback.id}"))).one()
    msg = fake.find(ALERT_CHANNEL, ref.message_id)
    assert msg is not None and msg["thread_ts"] == alert["ts"]
    await adapter.flush()
    assert "Awaiting approval" in json.dumps(fake.find(ALERT_CHANNEL, th.root_message_id)["blocks"])  # type: ignore[index]

    # 4. an unauthorised click changes nothing; an authorised double click approves once
    await post_signed(client, action_body("onwatch_approve", rollback.id, "UBOB", ALERT_CHANNEL, msg["ts"],
                                          alert["ts"]), form=True)
    await eventually(lambda: [e for e in fake.ephemerals if e["user"] == "UBOB"])
    clicks = [action_body("onwatch_approve", rollback.id, "UALICE", ALERT_CHANNEL, msg["ts"], alert["ts"])
              for _ in range(2)]  # a double click is two interactions, each with its own trigger id
    assert [await post_signed(client, click, form=True) for click in clicks] == [200, 200]

    async def approved() -> bool:
        async with ctx.db.session() as s:
            p = await s.get(Proposal, rollback.id)
        return p is not None and p.status != "pending"

    await eventually(approved)
    await eventually(lambda: [e for e in fake.ephemerals if e["user"] == "UALICE"])  # "already approved"

    # 5. the runbook runs once; the proposal message and the card follow
    await runner.run_until_idle()
    assert len(rec.received) == 1 and rec.received[0]["signature_ok"]
    assert rec.received[0]["body"]["service"] == "orders"
    async with ctx.db.session() as s:
        executions = (await s.exec(select(Execution))).all()
        inc = (await s.exec(select(Incident))).one()
        unauthorised = (await s.exec(select(AuditEvent).where(AuditEvent.action == "proposal.unauthorised"))).all()
    assert len(executions) == 1 and executions[0].status == "succeeded"
    assert len(unauthorised) == 1 and unauthorised[0].actor_id == "UBOB"

    def decided_msg() -> Any:
        m = fake.find(ALERT_CHANNEL, ref.message_id)
        text = json.dumps(m["blocks"]) if m else ""
        return "Approved by alice at" in text and "done" in text and '"actions"' not in text

    await eventually(decided_msg)
    await adapter.flush()
    root = json.dumps(fake.find(ALERT_CHANNEL, th.root_message_id)["blocks"])  # type: ignore[index]
    assert inc.phase in ("verifying", "executed") and ("Verifying the fix" in root or "Action done" in root)
