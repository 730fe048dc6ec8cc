"""End to end: activities POSTed to ``/api/messages`` on the real onwatch app (anonymous mode), proactive
posts and card updates landing on a fake Bot Connector (the ``serviceUrl``), the real domain services."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.app import build_context
from bot.chat.teams.adapter import TeamsAdapter
from bot.chat.teams.connection import ANONYMOUS_WARNING
from bot.context import AppContext
from bot.store.db import Database
from bot.store.models import (
    AuditEvent,
    ChatMessageRef,
    ChatThread,
    ConversationRef,
    DeadLetter,
    Incident,
    Investigation,
    Job,
    Proposal,
)
from tests.fakes.bot_connector import FakeBotConnector
from tests.teams_fixtures import (
    APPROVER_AAD,
    BOT_ID,
    CHANNEL,
    STRANGER_AAD,
    Served,
    activity,
    invoke,
    make_incident,
    make_proposal,
    mention_message,
    serve,
    teams_settings,
    user,
    write_runbooks,
)

REPORT: dict[str, Any] = {
    "abstained": False,
    "causes": [{"service": "checkout", "kind": "deploy regression", "confidence": 0.82, "evidence": ["e1"],
                "summary": "errors after v2.3.1"}],
    "evidence": [{"id": "e1", "source": "prometheus", "kind": "metric", "service": "checkout",
                  "query": "sum(rate(http_requests_total{code=~\"5..\"}[5m]))", "summary": "5xx rate up 40x",
                  "before": 0.01, "after": 0.4}],
    "steps": [{"index": 1, "kind": "looked", "text": "error rate of checkout"},
              {"index": 2, "kind": "concluded", "text": "deploy v2.3.1 preceded the errors"}],
    "missing": [],
}


@pytest.fixture
async def app_ctx(db: Database, sqlite_url: str, tmp_path: Path) -> AppContext:
    return await build_context(teams_settings(sqlite_url, runbooks_dir=write_runbooks(tmp_path)), db)


@pytest.fixture
async def srv(app_ctx: AppContext) -> AsyncIterator[Served]:
    async with serve(app_ctx) as s:
        yield s


async def install_in_team(srv: Served, fake: FakeBotConnector) -> None:
    status, _ = await srv.post(activity("conversationUpdate", fake.service_url, membersAdded=[{"id": BOT_ID}]))
    assert status == 201


async def rows(db: Database, model: Any) -> list[Any]:
    async with db.session() as s:
        return list((await s.exec(select(model))).all())


async def announced(srv: Served, fake: FakeBotConnector) -> tuple[Incident, ChatThread]:
    await install_in_team(srv, fake)
    inc = await make_incident(srv.ctx.db)
    await srv.ctx.chat.incident_opened(inc.id)
    (thread,) = await rows(srv.ctx.db, ChatThread)
    return inc, thread


async def offered(srv: Served, inc: Incident) -> Proposal:
    p = await make_proposal(srv.ctx.db, inc.id, preview={"target": "shop/checkout"})
    await srv.ctx.chat.proposals_offered(inc.id, [p.id], [])
    return p


def test_the_teams_adapter_is_wired_in() -> None:
    from bot.app import feature_installers

    assert any(i.__module__ == "bot.chat.teams.routes" for i in feature_installers())


async def test_build_context_adds_the_adapter_and_warns_about_anonymous_mode(
        db: Database, sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        ctx = await build_context(teams_settings(sqlite_url), db)
    assert [a.platform for a in ctx.chat.adapters].count("teams") == 1
    assert any(r.levelno == logging.WARNING and r.getMessage() == ANONYMOUS_WARNING for r in caplog.records)


async def test_incident_announced_in_the_channel_then_threaded_and_updated(
        srv: Served, connector: FakeBotConnector) -> None:
    inc, thread = await announced(srv, connector)
    (create,) = connector.of_kind("create_conversation")
    assert create.body["channelData"]["channel"]["id"] == CHANNEL
    assert create.body["isGroup"] is True
    card = create.body["activity"]["attachments"][0]["content"]
    assert card["version"] == "1.5" and inc.id in str(card)
    assert "Authorization" not in create.headers  # anonymous mode: no token towards the serviceUrl
    assert thread.thread_id == f"{CHANNEL};messageid={thread.root_message_id}"

    # the investigation's reasoning, chart and causes go into that thread
    async with srv.ctx.db.begin() as s:
        inv = Investigation(incident_id=inc.id, status="done", report=REPORT, started_at=time.time(),
                            finished_at=time.time())
        s.add(inv)
    await srv.ctx.chat.investigation_finished(inc.id, inv.id)
    sends = connector.of_kind("send")
    assert sends and all(c.conversation_id == thread.thread_id for c in sends)
    posted = str([c.body for c in sends])
    assert "deploy v2.3.1 preceded the errors" in posted and "confidence 82%" in posted and "5xx rate up 40x" in posted

    # the root card is refreshed in place as work moves on
    async with srv.ctx.db.begin() as s:
        row = await s.get(Incident, inc.id)
        assert row is not None
        row.phase = "cause_found"
        s.add(row)
    await srv.ctx.chat.incident_updated(inc.id)
    updates = [c for c in connector.of_kind("update") if c.activity_id == thread.root_message_id]
    assert updates and "Cause found" in str(updates[-1].body)
    assert "Cause found" in str(connector.message(thread.thread_id, thread.root_message_id))

    # announcing again does not post a second root card
    await srv.ctx.chat.incident_opened(inc.id)
    assert len(connector.of_kind("create_conversation")) == 1


async def test_investigate_by_mention_opens_an_incident_in_that_thread(
        srv: Served, connector: FakeBotConnector) -> None:
    thread = f"{CHANNEL};messageid=1712345678901"
    status, body = await srv.post(mention_message(connector.service_url, "investigate checkout is throwing 500s",
                                                  conversation_id=thread, deliveryMode="expectReplies"))
    assert status == 200
    (reply,) = body["activities"]
    assert reply["text"].startswith("Opened INC-")
    (inc,) = await rows(srv.ctx.db, Incident)
    assert inc.services == ["checkout"] and inc.source == "adhoc"
    (t,) = await rows(srv.ctx.db, ChatThread)
    assert (t.incident_id, t.thread_id, t.channel) == (inc.id, thread, CHANNEL)
    (send,) = connector.of_kind("send")
    assert send.conversation_id == thread and inc.id in str(send.body)
    assert not connector.of_kind("create_conversation")  # it lives where it was asked for
    audit = [r for r in await rows(srv.ctx.db, AuditEvent) if r.action == "incident.opened"]
    assert audit and audit[0].actor_platform == "teams" and audit[0].actor_id == APPROVER_AAD


async def test_status_in_a_personal_chat(srv: Served, connector: FakeBotConnector) -> None:
    inc = await make_incident(srv.ctx.db)
    status, body = await srv.post(activity("message", connector.service_url, text=f"status {inc.id}",
                                           conversation_id="a:1personalchat", conversation_type="personal",
                                           deliveryMode="expectReplies"))
    assert status == 200
    (reply,) = body["activities"]
    assert inc.id in str(reply["attachments"][0]["content"])


async def test_a_reply_without_expect_replies_goes_to_the_connector(srv: Served, connector: FakeBotConnector) -> None:
    status, body = await srv.post(mention_message(connector.service_url, "help", id="1712"))
    assert status == 201 and body is None
    (reply,) = connector.of_kind("reply")
    assert reply.activity_id == "1712" and "investigate" in reply.body["text"]


async def test_approver_invoke_runs_once_and_updates_the_card_for_everyone(
        srv: Served, connector: FakeBotConnector) -> None:
    inc, thread = await announced(srv, connector)
    p = await offered(srv, inc)
    (ref,) = [r for r in await rows(srv.ctx.db, ChatMessageRef) if r.key == f"proposal:{p.id}"]
    posted = connector.message(thread.thread_id, ref.message_id)
    assert posted is not None
    card = posted["attachments"][0]["content"]
    assert card["refresh"]["userIds"] == [f"8:orgid:{APPROVER_AAD}"]
    assert "onwatch_approve" in str(card["body"])

    status, body = await srv.post(invoke(connector.service_url, "onwatch_approve", {"proposal_id": p.id},
                                         conversation_id=thread.thread_id, reply_to=ref.message_id))
    assert status == 200
    assert body["statusCode"] == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
    assert "Approved by" in str(body["value"]) and "onwatch_approve" not in str(body["value"]["body"])
    now = connector.message(thread.thread_id, ref.message_id)
    assert now is not None and "Approved by" in str(now) and "onwatch_approve" not in str(now)
    jobs = [j for j in await rows(srv.ctx.db, Job) if j.kind == "execution"]
    assert len(jobs) == 1 and jobs[0].payload == {"proposal_id": p.id}


async def test_stranger_invoke_is_refused_audited_and_changes_nothing(
        srv: Served, connector: FakeBotConnector) -> None:
    inc, thread = await announced(srv, connector)
    p = await offered(srv, inc)
    updates_before = len(connector.of_kind("update"))
    status, body = await srv.post(invoke(connector.service_url, "onwatch_approve", {"proposal_id": p.id},
                                         sender=user(STRANGER_AAD, "Mallory"), conversation_id=thread.thread_id))
    assert status == 200 and body["value"]["body"][0]["style"] == "attention"
    assert "cannot decide" in str(body["value"])
    (row,) = await rows(srv.ctx.db, Proposal)
    assert row.status == "pending"
    assert not [j for j in await rows(srv.ctx.db, Job) if j.kind == "execution"]
    refused = [r for r in await rows(srv.ctx.db, AuditEvent) if r.action == "proposal.unauthorised"]
    assert len(refused) == 1 and refused[0].actor_id == STRANGER_AAD and refused[0].actor_name == "Mallory"
    assert len(connector.of_kind("update")) == updates_before


async def test_double_invoke_decides_once(srv: Served, connector: FakeBotConnector) -> None:
    inc, thread = await announced(srv, connector)
    p = await offered(srv, inc)
    act = invoke(connector.service_url, "onwatch_approve", {"proposal_id": p.id}, conversation_id=thread.thread_id)
    results = await asyncio.gather(srv.post(act), srv.post(dict(act, id="f:second")))
    texts = sorted(str(b["value"]) for _, b in results)
    assert all(status == 200 for status, _ in results)
    assert sum("Approved. onwatch is running it now." in t for t in texts) == 1
    assert sum("already approved" in t for t in texts) == 1
    assert len([j for j in await rows(srv.ctx.db, Job) if j.kind == "execution"]) == 1
    assert len([r for r in await rows(srv.ctx.db, AuditEvent) if r.action == "proposal.approved"]) == 1


@pytest.mark.parametrize("raw,ctype,status,reason", [
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"[1, 2]", "application/json", 400, "must be a JSON object"),
    (b'{"type": "message", "text": "hi"}', "application/json", 400, "serviceUrl: Field required"),
    (b'{"type": "invoke", "serviceUrl": "http://x/", "channelId": "msteams", "conversation": {"id": "c"}}',
     "application/json", 400, "an invoke needs a name"),
    (b'{"type": "message", "serviceUrl": "file:///etc/passwd", "channelId": "msteams", "conversation": {"id": "c"},'
     b' "from": {"id": "u"}}', "application/json", 400, "serviceUrl: Value error, must be an http(s) URL"),
    (b'{"type": "message"}', "text/plain", 415, "Content-Type must be application/json"),
])
async def test_malformed_activity_gets_a_clear_error_and_is_kept(
        srv: Served, raw: bytes, ctype: str, status: int, reason: str) -> None:
    got, body = await srv.post(None, raw=raw, content_type=ctype, headers={"Authorization": "Bearer secret"})
    assert got == status and reason in body["reason"]
    (dead,) = await rows(srv.ctx.db, DeadLetter)
    assert dead.source == "teams" and dead.body == raw and reason in dead.reason
    assert "Authorization" not in dead.headers  # no credential is stored
    assert not await rows(srv.ctx.db, ConversationRef)


async def test_connector_outage_is_logged_not_raised_and_retried_later(
        srv: Served, connector: FakeBotConnector, caplog: pytest.LogCaptureFixture) -> None:
    await install_in_team(srv, connector)
    inc = await make_incident(srv.ctx.db)
    connector.fail_next(503)
    with caplog.at_level(logging.WARNING):
        await srv.ctx.chat.incident_opened(inc.id)
    assert "announcing" in caplog.text and not await rows(srv.ctx.db, ChatThread)
    await srv.ctx.chat.incident_opened(inc.id)  # the claim was released: the next attempt posts
    (thread,) = await rows(srv.ctx.db, ChatThread)
    assert thread.thread_id and len(connector.of_kind("create_conversation")) == 2


async def test_no_reference_for_the_channel_yet_means_no_post(
        srv: Served, connector: FakeBotConnector, caplog: pytest.LogCaptureFixture) -> None:
    inc = await make_incident(srv.ctx.db)
    with caplog.at_level(logging.WARNING):
        await srv.ctx.chat.incident_opened(inc.id)
    assert "no conversation reference" in caplog.text
    assert not connector.calls and not await rows(srv.ctx.db, ChatThread)


async def test_with_an_app_id_a_request_without_a_token_is_refused(
        db: Database, sqlite_url: str, connector: FakeBotConnector) -> None:
    ctx = await build_context(teams_settings(sqlite_url, app_id="00000000-1111-2222-3333-444444444444",
                                             app_password="not-a-real-secret"), db)
    assert isinstance(next(a for a in ctx.chat.adapters if a.platform == "teams"), TeamsAdapter)
    async with serve(ctx) as s:
        status, body = await s.post(mention_message(connector.service_url, "help"))
        assert status == 401 and body["error"] == "unauthorized"
        status, _ = await s.post(mention_message(connector.service_url, "help"),
                                 headers={"Authorization": "Bearer forged.token.value"})
        assert status == 401
    assert not await rows(db, ConversationRef) and not connector.calls
