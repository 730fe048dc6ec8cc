"""``POST /slack/events`` through the real bolt stack on the onwatch aiohttp app, against the fake Slack API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from bot.app import context_for
from bot.chat.seen import first_time, prune
from bot.chat.slack import routes as slack_routes
from bot.chat.slack.adapter import SlackAdapter
from bot.context import AppContext
from bot.remediate.service import RemediationService
from bot.store.models import Approval, AuditEvent, ChatMessageRef, Investigation, Job, Proposal
from bot.web import create_app
from tests.fakes.slack_api import FakeSlack, action_body, command_body, event_body, sign
from tests.slack_fixtures import (
    INCIDENT_CHANNEL,
    SECRET,
    eventually,
    make_incident,
    make_proposal,
    slack_settings,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        for uid, name in (("UALICE", "alice"), ("UBOB", "bob"), ("UCAROL", "carol")):
            f.add_user(uid, name)
        f.usergroups["SONCALL"] = ["UCAROL", "UDAVE"]
        yield f


@pytest.fixture
async def sctx(fake: FakeSlack, sqlite_url: str, db: Any) -> AsyncIterator[AppContext]:
    settings = slack_settings(sqlite_url, fake.api_url)
    ctx = context_for(settings, db)
    ctx.chat.add(SlackAdapter(settings, db, debounce_s=0.05))
    ctx.remediation = RemediationService(ctx)
    yield ctx


def adapter_of(ctx: AppContext) -> SlackAdapter:
    a = ctx.chat.adapters[0]
    assert isinstance(a, SlackAdapter)
    return a


@pytest.fixture
async def client(sctx: AppContext) -> AsyncIterator[TestClient]:
    app = create_app(sctx, installers=[slack_routes.install])
    c = TestClient(TestServer(app))
    await c.start_server()
    try:
        yield c
    finally:
        await c.close()


async def send(client: TestClient, body: str, *, form: bool = False, ts: int | None = None,
               secret: str = SECRET, extra: dict[str, str] | None = None) -> Any:
    headers = sign(secret, body, ts)
    headers["Content-Type"] = "application/x-www-form-urlencoded" if form else "application/json"
    headers.update(extra or {})
    return await client.post("/slack/events", data=body.encode(), headers=headers)


# ----------------------------------------------------------------- verification


async def test_url_verification(client):
    body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "x"})
    resp = await send(client, body)
    assert resp.status == 200 and "c-123" in await resp.text()


async def test_forged_signature_stale_timestamp_and_missing_headers_are_401(client, fake):
    body = command_body("/investigate", "", "UALICE", INCIDENT_CHANNEL)
    assert (await send(client, body, form=True, secret="not-the-secret")).status == 401
    assert (await send(client, body, form=True, ts=int(time.time()) - 600)).status == 401
    resp = await client.post("/slack/events", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 401
    tampered = sign(SECRET, body)
    resp = await client.post("/slack/events", data=body.replace("UALICE", "UEVE"),
                             headers={**tampered, "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 401
    assert fake.ephemerals == [] and fake.calls_of("chat.postMessage") == []


# ----------------------------------------------------------------- /investigate and mentions


async def test_investigate_acks_fast_and_answers_ephemerally(client, fake):
    started = time.monotonic()
    resp = await send(client, command_body("/investigate", "", "UALICE", "CRANDOM"), form=True)
    assert resp.status == 200 and time.monotonic() - started < 3
    eph = await eventually(lambda: fake.ephemerals)
    assert eph[0]["user"] == "UALICE" and "Which incident?" in eph[0]["text"]


async def test_investigate_unknown_incident_id(client, fake):
    await send(client, command_body("/investigate", "INC-ABCDEF", "UALICE", "CRANDOM"), form=True)
    eph = await eventually(lambda: fake.ephemerals)
    assert "no incident INC-ABCDEF" in eph[0]["text"]


async def test_mention_status_in_incident_thread_replies_in_thread(client, fake, sctx):
    inc = await make_incident(sctx.db)
    await sctx.chat.incident_opened(inc.id)
    root = fake.messages[INCIDENT_CHANNEL][0]
    assert root["blocks"][0]["type"] == "header" and inc.id in root["blocks"][0]["text"]["text"]
    event = {"type": "app_mention", "user": "UBOB", "text": "<@UONWATCH> status", "channel": INCIDENT_CHANNEL,
             "ts": fake.next_ts(), "thread_ts": root["ts"]}
    resp = await send(client, event_body(event))
    assert resp.status == 200
    reply = await eventually(lambda: [m for m in fake.thread(INCIDENT_CHANNEL, root["ts"]) if m["ts"] != root["ts"]])
    assert reply[0]["text"].startswith(inc.id) and reply[0]["thread_ts"] == root["ts"]


async def test_mention_help_is_ephemeral(client, fake):
    event = {"type": "app_mention", "user": "UBOB", "text": "<@UONWATCH> help", "channel": "CX", "ts": fake.next_ts()}
    await send(client, event_body(event))
    eph = await eventually(lambda: fake.ephemerals)
    assert "onwatch commands" in eph[0]["text"] and eph[0]["user"] == "UBOB"


async def test_event_retries_are_handled_once(client, fake, sctx):
    inc = await make_incident(sctx.db)
    await sctx.chat.incident_opened(inc.id)
    root = fake.messages[INCIDENT_CHANNEL][0]
    event = {"type": "app_mention", "user": "UBOB", "text": "<@UONWATCH> status", "channel": INCIDENT_CHANNEL,
             "ts": fake.next_ts(), "thread_ts": root["ts"]}
    body = event_body(event, event_id="Ev0RETRY1")
    assert (await send(client, body)).status == 200
    for n in (1, 2):
        resp = await send(client, body, extra={"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"})
        assert resp.status == 200
    await eventually(lambda: len(fake.thread(INCIDENT_CHANNEL, root["ts"])) >= 2)
    await asyncio.sleep(0.5)  # give a wrongly repeated handler the chance to post
    assert len(fake.thread(INCIDENT_CHANNEL, root["ts"])) == 2


# ----------------------------------------------------------------- buttons


async def _offer(ctx: AppContext, fake: FakeSlack, risk: str = "medium") -> tuple[Proposal, dict[str, Any]]:
    inc = await make_incident(ctx.db)
    await ctx.chat.incident_opened(inc.id)
    p = await make_proposal(ctx.db, inc.id, risk=risk, runbook_id="feature-flag-off",
                            title="Turn feature flag new-checkout-flow off for checkout")
    await ctx.chat.proposals_offered(inc.id, [p.id], [])
    async with ctx.db.session() as s:
        ref = (await s.exec(select(ChatMessageRef).where(ChatMessageRef.key == f"proposal:{p.id}"))).one()
    msg = fake.find(ref.channel, ref.message_id)
    assert msg is not None
    return p, msg


def _buttons(msg: dict[str, Any]) -> list[dict[str, Any]]:
    return [el for b in msg["blocks"] if b["type"] == "actions" for el in b["elements"]]


async def test_proposal_message_has_buttons_with_opaque_id_and_confirm(client, fake, sctx):
    p, msg = await _offer(sctx, fake)
    buttons = _buttons(msg)
    assert [b["action_id"] for b in buttons] == ["onwatch_approve", "onwatch_reject"]
    assert [b["value"] for b in buttons] == [p.id, p.id]
    assert "confirm" in buttons[0]
    assert msg["thread_ts"] == fake.messages[INCIDENT_CHANNEL][0]["ts"]


async def test_authorised_click_approves_once_and_replaces_buttons(client, fake, sctx):
    p, msg = await _offer(sctx, fake)
    # a double click: two interactions, each with its own trigger id (a replay of one is tested below)
    double = [await send(client, action_body("onwatch_approve", p.id, "UALICE", INCIDENT_CHANNEL, msg["ts"],
                                             msg["thread_ts"]), form=True) for _ in range(2)]
    assert all(r.status == 200 for r in double)

    async def decided() -> bool:
        async with sctx.db.session() as s:
            row = await s.get(Proposal, p.id)
        return row is not None and row.status == "approved"

    await eventually(decided)
    await eventually(lambda: fake.ephemerals)  # the second click is told it was already decided
    assert "already" in fake.ephemerals[0]["text"] and fake.ephemerals[0]["user"] == "UALICE"
    updated = await eventually(lambda: (m := fake.find(INCIDENT_CHANNEL, msg["ts"])) and not _buttons(m) and m)
    assert "Approved by alice at" in json.dumps(updated["blocks"])
    async with sctx.db.session() as s:
        jobs = (await s.exec(select(Job).where(Job.kind == "execution"))).all()
        approvals = (await s.exec(select(Approval).where(Approval.proposal_id == p.id))).all()
    assert len(jobs) == 1 and len(approvals) == 1 and approvals[0].actor_name == "alice"


async def test_usergroup_member_is_authorised_and_membership_is_cached(client, fake, sctx):
    p1, msg1 = await _offer(sctx, fake)
    p2, msg2 = await _offer(sctx, fake)
    await send(client, action_body("onwatch_reject", p1.id, "UCAROL", INCIDENT_CHANNEL, msg1["ts"], msg1["thread_ts"]),
               form=True)
    await send(client, action_body("onwatch_approve", p2.id, "UCAROL", INCIDENT_CHANNEL, msg2["ts"], msg2["thread_ts"]),
               form=True)

    async def statuses() -> list[str]:
        async with sctx.db.session() as s:
            return [(await s.get(Proposal, pid)).status for pid in (p1.id, p2.id)]  # type: ignore[union-attr]

    await eventually(lambda: statuses_ok(statuses))
    assert len(fake.calls_of("usergroups.users.list")) == 1
    assert fake.ephemerals == []


async def statuses_ok(get: Any) -> bool:
    return await get() == ["rejected", "approved"]


async def test_unauthorised_click_is_explained_audited_and_changes_nothing(client, fake, sctx):
    p, msg = await _offer(sctx, fake)
    await send(client, action_body("onwatch_approve", p.id, "UBOB", INCIDENT_CHANNEL, msg["ts"], msg["thread_ts"]),
               form=True)
    eph = await eventually(lambda: fake.ephemerals)
    assert eph[0]["user"] == "UBOB" and "not in an approver group" in eph[0]["text"]
    assert eph[0]["thread_ts"] == msg["thread_ts"]
    async with sctx.db.session() as s:
        row = await s.get(Proposal, p.id)
        audits = (await s.exec(select(AuditEvent).where(AuditEvent.action == "proposal.unauthorised"))).all()
        jobs = (await s.exec(select(Job))).all()
    assert row is not None and row.status == "pending" and jobs == []
    assert len(audits) == 1 and audits[0].actor_id == "UBOB"
    assert _buttons(fake.find(INCIDENT_CHANNEL, msg["ts"]))  # type: ignore[arg-type]


async def test_malformed_button_value_is_refused(client, fake, sctx):
    await send(client, action_body("onwatch_approve", "x'; DROP TABLE proposal;--", "UALICE", "C1", "1.1"), form=True)
    eph = await eventually(lambda: fake.ephemerals)
    assert "malformed" in eph[0]["text"]


async def test_a_replayed_signed_investigate_runs_once(client, fake, sctx):
    """Issue 17 item 8: the same signed ``/investigate`` body sent five times in Slack's window ran five
    investigations. The trigger id is recorded in the database, so replays (on any replica) do nothing."""
    inc = await make_incident(sctx.db)
    body = command_body("/investigate", inc.id, "UALICE", "CRANDOM")
    ts = int(time.time())
    replies = await asyncio.gather(*[send(client, body, form=True, ts=ts) for _ in range(5)])
    assert [r.status for r in replies] == [200] * 5  # acknowledged (Slack must not retry), handled once
    await eventually(lambda: fake.ephemerals)
    await asyncio.sleep(0.3)
    async with sctx.db.session() as s:
        investigations = (await s.exec(select(Investigation))).all()
    assert len(investigations) == 1 and len(fake.ephemerals) == 1
    other = command_body("/investigate", inc.id, "UALICE", "CRANDOM")  # a new trigger id: a new command
    await send(client, other, form=True)
    await eventually(lambda: len(fake.ephemerals) == 2)


async def test_seen_commands_are_pruned(sctx):
    assert await first_time(sctx.db, "slack:a", now=1000.0)
    assert not await first_time(sctx.db, "slack:a", now=1001.0)
    assert await prune(sctx.db, keep_s=3600, now=1000.0 + 3601) == 1
    assert await first_time(sctx.db, "slack:a")


# ----------------------------------------------------------------- replays across restarts and replicas


async def _replica(settings: Any, url: str) -> tuple[AppContext, TestClient]:
    """One onwatch process: its own Database engine, bolt app and HTTP server over the shared database."""
    from bot.store.db import Database

    ctx = context_for(settings, Database(url))
    ctx.chat.add(SlackAdapter(settings, ctx.db, debounce_s=0.05))
    ctx.remediation = RemediationService(ctx)
    c = TestClient(TestServer(create_app(ctx, installers=[slack_routes.install])))
    await c.start_server()
    return ctx, c


async def test_replays_are_dropped_by_another_replica_and_after_a_restart(fake, anydb):
    """Issue 17: Slack's retries of an event (same ``event_id``, ``X-Slack-Retry-Num``) and a replayed click
    (same ``trigger_id``) reach another replica, or the same one restarted: the first delivery is recorded in
    the database, so every later one is acknowledged and does nothing — on SQLite and on PostgreSQL."""
    settings = slack_settings(anydb.url, fake.api_url)
    (a, ca), (b, cb) = await _replica(settings, anydb.url), await _replica(settings, anydb.url)
    try:
        inc = await make_incident(a.db)
        await a.chat.incident_opened(inc.id)
        root = fake.messages[INCIDENT_CHANNEL][0]
        event = {"type": "app_mention", "user": "UBOB", "text": "<@UONWATCH> status", "channel": INCIDENT_CHANNEL,
                 "ts": fake.next_ts(), "thread_ts": root["ts"]}
        body = event_body(event, event_id="Ev0REPLICA1")
        assert (await send(ca, body)).status == 200
        for n, replica in ((1, cb), (2, ca)):
            resp = await send(replica, body, extra={"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"})
            assert resp.status == 200
        await eventually(lambda: len(fake.thread(INCIDENT_CHANNEL, root["ts"])) >= 2)

        p, msg = await _offer(a, fake)
        click = action_body("onwatch_approve", p.id, "UALICE", INCIDENT_CHANNEL, msg["ts"], msg["thread_ts"])
        assert (await send(cb, click, form=True)).status == 200
        await eventually(lambda: statuses_of(a, p.id, "approved"))
        await cb.close()  # replica b restarts: a new process, the same database
        b2, cb = await _replica(settings, anydb.url)
        await b.db.dispose()
        b = b2
        for replica in (ca, cb):
            assert (await send(replica, click, form=True)).status == 200
        await asyncio.sleep(0.5)  # time for a wrongly repeated handler to post or decide
        assert len(fake.thread(INCIDENT_CHANNEL, root["ts"])) == 2  # the root and one status reply
        assert fake.ephemerals == []  # a replayed click is not even told "already decided": it is not handled
        async with a.db.session() as s:
            approvals = (await s.exec(select(Approval).where(Approval.proposal_id == p.id))).all()
            jobs = (await s.exec(select(Job).where(Job.kind == "execution"))).all()
        assert len(approvals) == 1 and len(jobs) == 1
        other = action_body("onwatch_approve", p.id, "UALICE", INCIDENT_CHANNEL, msg["ts"], msg["thread_ts"])
        await send(cb, other, form=True)  # a new click (new trigger id) is handled: told it is decided
        eph = await eventually(lambda: fake.ephemerals)
        assert "already" in eph[0]["text"]
    finally:
        for c, r in ((ca, a), (cb, b)):
            await c.close()
            await r.db.dispose()


async def statuses_of(ctx: AppContext, proposal_id: str, want: str) -> bool:
    async with ctx.db.session() as s:
        row = await s.get(Proposal, proposal_id)
    return row is not None and row.status == want
