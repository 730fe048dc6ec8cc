"""The whole incident flow in Microsoft Teams, as ``tests/test_slack_e2e.py`` proves it for Slack.

Anonymous mode against a fake Bot Connector: an Alertmanager webhook → triage opens an incident → it is
announced as a new post in ``teams.channel`` → the real investigation job runs over a crafted replay case →
the thread gets the reasoning steps, evidence, the chart, ranked causes and a proposal card with
``Action.Execute`` Approve/Reject → a stranger's ``adaptiveCard/action`` is refused, an approver's double
click runs the runbook exactly once (http executor against a local receiver) → the proposal card is
replaced with who decided and when, and the incident card follows.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.app import build_context
from bot.config import Settings
from bot.context import AppContext
from bot.jobs import JobRunner
from bot.store.db import Database
from bot.store.models import (
    AuditEvent,
    ChatMessageRef,
    ChatThread,
    Execution,
    Incident,
    Investigation,
    Proposal,
)
from tests.fakes.bot_connector import ConnectorCall, FakeBotConnector
from tests.investigate_fixtures import deploy_case
from tests.remediate_fixtures import Receiver, serve_receiver, wire_e2e
from tests.slack_fixtures import eventually
from tests.teams_fixtures import (
    APPROVER_AAD,
    BOT_ID,
    CHANNEL,
    ROOT,
    STRANGER_AAD,
    Served,
    activity,
    invoke,
    serve,
    user,
)
from tests.triage_fixtures import triaged

HOOK_SECRET = "rollback-hook-secret"
WEBHOOK_TOKEN = "teams-flow-webhook-token"
TEAMS_MESSAGE_LIMIT = 28 * 1024  # Teams refuses a bot message larger than about 28 KB (MessageSizeTooBig)


def flow_settings(sqlite_url: str) -> Settings:
    return Settings(  # type: ignore[arg-type]
        database={"url": sqlite_url},
        runbooks={"dir": ROOT / "runbooks"},
        webhooks={"token": WEBHOOK_TOKEN},
        teams={"enabled": True, "channel": CHANNEL, "extra_service_url_hosts": ["127.0.0.1"]},
        approvals={"groups": {"sre-oncall": [f"teams:{APPROVER_AAD}"]}},
    )


def alertmanager_payload() -> dict[str, Any]:
    starts = datetime.fromtimestamp(time.time() - 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {"alertname": "HighLatency", "severity": "critical", "service": "frontend", "namespace": "shop"}
    return {
        "version": "4", "status": "firing", "receiver": "onwatch", "groupKey": "{}:{alertname=\"HighLatency\"}",
        "truncatedAlerts": 0, "groupLabels": {"alertname": "HighLatency"}, "commonLabels": labels,
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{"status": "firing", "labels": labels,
                    "annotations": {"summary": "frontend p90 latency is high"}, "startsAt": starts,
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090/graph",
                    "fingerprint": "a1b2c3d4e5f60718"}],
    }


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    async with serve_receiver(HOOK_SECRET) as served:
        yield served


@pytest.fixture
async def world(receiver: tuple[Receiver, str], sqlite_url: str, db: Database,
                tmp_path: Path) -> AsyncIterator[tuple[AppContext, Served, JobRunner]]:
    ctx = await build_context(flow_settings(sqlite_url), db)
    runner = wire_e2e(ctx, deploy_case(tmp_path), receiver[1], HOOK_SECRET)
    try:
        async with serve(ctx) as srv:
            yield ctx, srv, runner
    finally:
        await ctx.remediation.aclose()
        await ctx.triage.aclose()


def body_text(call: ConnectorCall) -> str:
    return json.dumps(call.body)


def all_actions(node: Any) -> list[dict[str, Any]]:
    """Every action object anywhere in a card (ActionSets, ShowCard sub-cards, fallbacks)."""
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("type"), str) and node["type"].startswith("Action."):
            out.append(node)
        for v in node.values():
            out += all_actions(v)
    elif isinstance(node, list):
        for v in node:
            out += all_actions(v)
    return out


async def test_alert_to_approved_runbook_run_once_in_teams(
        world: tuple[AppContext, Served, JobRunner], connector: FakeBotConnector,
        receiver: tuple[Receiver, str]) -> None:
    ctx, srv, runner = world
    rec, _ = receiver
    url = connector.service_url

    # 0. the app is installed in the team: onwatch learns the channel's conversation reference
    status, _ = await srv.post(activity("conversationUpdate", url, membersAdded=[{"id": BOT_ID}]))
    assert status == 201

    # 1. Alertmanager posts an alert to the real webhook endpoint
    async with srv.http.post(f"{srv.url}/webhooks/alertmanager", json=alertmanager_payload(),
                             headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}) as resp:
        assert resp.status == 200, await resp.text()  # triaged before the answer; onwatch then announces it
        accepted = await triaged(ctx, resp)
    (incident_id,) = accepted["incident_ids"]

    # 2. the incident is announced as a new post in the configured channel; it opens the incident's thread
    (create,) = connector.of_kind("create_conversation")
    assert create.body["channelData"]["channel"]["id"] == CHANNEL
    assert "Authorization" not in create.headers  # anonymous mode
    root_card = create.body["activity"]["attachments"][0]["content"]
    assert root_card["version"] == "1.5" and incident_id in json.dumps(root_card) and "frontend" in json.dumps(root_card)
    async with ctx.db.session() as s:
        th = (await s.exec(select(ChatThread).where(ChatThread.platform == "teams"))).one()
    assert th.incident_id == incident_id and th.thread_id == f"{CHANNEL};messageid={th.root_message_id}"

    # 3. the investigation runs as a durable job over the replayed telemetry
    assert await runner.run_until_idle() >= 1
    async with ctx.db.session() as s:
        inv = (await s.exec(select(Investigation))).one()
        proposals = (await s.exec(select(Proposal))).all()
    assert inv.status == "done" and inv.report["causes"][0]["service"] == "orders", inv.report

    # everything posted during and after the run went into the incident's thread, none of it too big for Teams
    sends = connector.of_kind("send")
    assert sends and {c.conversation_id for c in sends} == {th.thread_id}
    for c in [*sends, *connector.of_kind("update"), create]:
        assert len(json.dumps(c.body).encode()) <= TEAMS_MESSAGE_LIMIT, (c.kind, len(json.dumps(c.body)))
    updates = connector.of_kind("update")
    thread = " ".join(body_text(c) for c in [*sends, *updates])
    # the reasoning: one message posted with the first step, then edited in place as steps arrive and
    # finally into the summary
    step_sends = [c for c in sends if "Investigating " in body_text(c) and "Scope: " in body_text(c)]
    assert len(step_sends) == 1
    step_edits = [c for c in updates if c.conversation_id == step_sends[0].conversation_id
                  and ("Investigating " in body_text(c) or "How I investigated" in body_text(c))]
    assert len({c.activity_id for c in step_edits}) == 1, "every edit is of the one reasoning message"
    assert len(step_edits) >= 2 and "How I investigated" in body_text(step_edits[-1])
    assert "How I investigated" in thread
    # ranked causes with their confidence, and the evidence behind them (the deploy's link)
    assert "Likely causes" in thread and "#1 orders" in thread and "confidence " in thread
    assert "git.example/orders/pull/7" in thread
    # the chart, inline as a PNG
    images = [el for c in sends for card in connector.cards(c) for el in card["body"] if el.get("type") == "Image"]
    assert len(images) == 1 and images[0]["url"].startswith("data:image/png;base64,")
    assert base64.b64decode(images[0]["url"].partition(",")[2]).startswith(b"\x89PNG")
    assert images[0]["altText"]

    # the proposal card: Action.Execute approve/reject carrying the opaque id only, refresh for the approvers
    rollback = next(p for p in proposals if p.runbook_id == "webhook-argocd-rollback")
    assert rollback.status == "pending"
    async with ctx.db.session() as s:
        ref = (await s.exec(select(ChatMessageRef).where(ChatMessageRef.platform == "teams",
                                                         ChatMessageRef.key == f"proposal:{rollback.id}"))).one()
    assert ref.channel == th.thread_id
    posted = connector.message(th.thread_id, ref.message_id)
    assert posted is not None
    card = posted["attachments"][0]["content"]
    executes = [a for a in all_actions(card["body"]) if a["type"] == "Action.Execute"]
    assert {a["verb"] for a in executes} == {"onwatch_approve", "onwatch_reject"}
    assert all(a["data"] == {"proposal_id": rollback.id} for a in executes)
    assert card["refresh"]["userIds"] == [f"8:orgid:{APPROVER_AAD}"]
    assert card["refresh"]["action"]["verb"] == "onwatch_refresh"
    # the root card says where the incident stands now
    assert "Awaiting approval" in json.dumps(connector.message(th.thread_id, th.root_message_id))

    # 4. a stranger's click is refused and changes nothing
    updates_before = len(connector.of_kind("update"))
    status, body = await srv.post(invoke(url, "onwatch_approve", {"proposal_id": rollback.id},
                                         sender=user(STRANGER_AAD, "Mallory"), conversation_id=th.thread_id,
                                         reply_to=ref.message_id))
    assert status == 200 and "cannot decide" in json.dumps(body["value"])
    async with ctx.db.session() as s:
        assert (await s.get(Proposal, rollback.id)).status == "pending"  # type: ignore[union-attr]
    assert len(connector.of_kind("update")) == updates_before

    # an approver clicks twice: approved once, the second click is told it already is
    click = invoke(url, "onwatch_approve", {"proposal_id": rollback.id}, conversation_id=th.thread_id,
                   reply_to=ref.message_id)
    first = await srv.post(click)
    second = await srv.post(dict(click, id="f:second-click"))
    assert first[0] == second[0] == 200
    assert "Approved by Alice Approver at" in json.dumps(first[1]["value"])
    assert "onwatch_approve" not in json.dumps(first[1]["value"]["body"])
    assert "already approved" in json.dumps(second[1]["value"])

    # 5. the runbook runs exactly once
    await runner.run_until_idle()
    await runner.run_until_idle()
    assert len(rec.received) == 1 and rec.received[0]["signature_ok"]
    assert rec.received[0]["body"]["service"] == "orders"
    async with ctx.db.session() as s:
        executions = (await s.exec(select(Execution))).all()
        inc = await s.get(Incident, incident_id)
        unauthorised = (await s.exec(select(AuditEvent).where(AuditEvent.action == "proposal.unauthorised"))).all()
        approved = (await s.exec(select(AuditEvent).where(AuditEvent.action == "proposal.approved"))).all()
    assert len(executions) == 1 and executions[0].status == "succeeded"
    assert len(unauthorised) == 1 and unauthorised[0].actor_id == STRANGER_AAD
    assert len(approved) == 1 and approved[0].actor_id == APPROVER_AAD

    # the proposal card, for everyone, says who decided and when and has no buttons left
    def decided() -> bool:
        m = connector.message(th.thread_id, ref.message_id)
        text = json.dumps(m) if m else ""
        return "Approved by Alice Approver at" in text and "done" in text and "Action.Execute" not in text

    await eventually(decided)
    assert f"{datetime.now(UTC):%Y-%m-%d}" in json.dumps(connector.message(th.thread_id, ref.message_id))
    # and the incident card followed
    assert inc is not None and inc.phase in ("verifying", "executed")
    root = json.dumps(connector.message(th.thread_id, th.root_message_id))
    assert "Verifying the fix" in root or "Action done" in root
    assert len(connector.of_kind("create_conversation")) == 1  # one root post for the whole flow
