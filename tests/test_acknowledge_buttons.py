"""The Acknowledge button on an incident's root message, and the link to the incident's web page.

Slack: the real slack-bolt app over HTTP with signed requests, against the local fake Slack API. Teams: activities
POSTed to ``/api/messages`` on the real onwatch app (botbuilder's CloudAdapter), cards landing on a fake Bot
Connector. Both go through the ``ack`` command's domain path: one acknowledgement per person, audited."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError
from sqlmodel import col, select

from bot.app import build_context, context_for
from bot.audit import verify_chain
from bot.chat import compose
from bot.chat.hub import card_for
from bot.chat.slack import routes as slack_routes
from bot.chat.slack.adapter import SlackAdapter
from bot.chat.slack.render import render_card
from bot.chat.teams.cards import incident_card, render_message
from bot.config import Settings
from bot.context import AppContext
from bot.messages.model import incident_page
from bot.store.db import Database
from bot.store.models import Acknowledgement, AuditEvent, ChatThread, Incident
from bot.web import create_app
from tests.fakes.slack_api import FakeSlack, action_body, sign
from tests.slack_fixtures import (
    INCIDENT_CHANNEL,
    SECRET,
    eventually,
    make_incident,
    make_investigation,
    slack_settings,
)
from tests.teams_fixtures import (
    APPROVER_AAD,
    BOT_ID,
    STRANGER_AAD,
    Served,
    activity,
    invoke,
    serve,
    shown,
    teams_settings,
    user,
    write_runbooks,
)

PUBLIC = "https://onwatch.acme.internal"


def _shown(card: dict[str, Any]) -> str:
    """The text of a card as Teams shows it (escapes removed)."""
    return shown(" ".join(t["text"] for t in _blocks(card) if t.get("type") == "TextBlock")
                 + " " + " ".join(f"{f['title']}: {f['value']}" for t in _blocks(card) for f in t.get("facts", [])))


def _blocks(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [b for n in node for b in _blocks(n)]
    if isinstance(node, dict):
        return [node] + [b for v in node.values() for b in _blocks(v)]
    return []


async def _acks(db: Database) -> list[tuple[str, bool]]:
    async with db.session() as s:
        rows = (await s.exec(select(AuditEvent).where(AuditEvent.action == "incident.acknowledged")
                             .order_by(col(AuditEvent.seq)))).all()
    return [(r.actor_id, bool(r.params["first"])) for r in rows]


# ----------------------------------------------------------------- Slack


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        f.add_user("UALICE", "alice")
        f.add_user("UBOB", "bob")
        yield f


async def _slack(fake: FakeSlack, sqlite_url: str, db: Database, **server: Any) -> AppContext:
    settings = slack_settings(sqlite_url, fake.api_url)
    for k, v in server.items():
        setattr(settings.server, k, v)
    ctx = context_for(settings, db)
    ctx.chat.add(SlackAdapter(settings, db, debounce_s=0.05))
    return ctx


async def _send(client: TestClient, body: str) -> None:
    headers = sign(SECRET, body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    resp = await client.post("/slack/events", data=body.encode(), headers=headers)
    assert resp.status == 200


def _ack_button(msg: dict[str, Any]) -> dict[str, Any] | None:
    for b in msg.get("blocks") or []:
        for e in b.get("elements", []) if b.get("type") == "actions" else []:
            if e["action_id"] == "onwatch_ack":
                return dict(e)
    return None


async def test_slack_acknowledge_button_once_per_person_audited_and_shown(fake, sqlite_url, db) -> None:
    ctx = await _slack(fake, sqlite_url, db, public_url=PUBLIC)
    client = TestClient(TestServer(create_app(ctx, installers=[slack_routes.install])))
    await client.start_server()
    try:
        inc = await make_incident(db)
        await ctx.chat.incident_opened(inc.id)
        root = fake.messages[INCIDENT_CHANNEL][0]
        button = _ack_button(root)
        assert button is not None and button["value"] == inc.id and button["text"]["text"] == "Acknowledge"
        assert f"<{PUBLIC}/ui/incidents/{inc.id}|incident page>" in json.dumps(root["blocks"])

        await _send(client, action_body("onwatch_ack", inc.id, "UALICE", INCIDENT_CHANNEL, root["ts"]))
        said = await eventually(lambda: [m for m in fake.thread(INCIDENT_CHANNEL, root["ts"])
                                         if m["ts"] != root["ts"]])
        assert said[0]["text"] == f"alice acknowledged {inc.id} (first)."
        # the root message is edited to name who acknowledged
        await eventually(lambda: "Acknowledged by alice" in json.dumps(fake.find(INCIDENT_CHANNEL, root["ts"])))

        # the same person again: nothing new, told so privately
        await _send(client, action_body("onwatch_ack", inc.id, "UALICE", INCIDENT_CHANNEL, root["ts"]))
        eph = await eventually(lambda: [e for e in fake.ephemerals if e["user"] == "UALICE"])
        assert "already acknowledged" in eph[0]["text"]

        await _send(client, action_body("onwatch_ack", inc.id, "UBOB", INCIDENT_CHANNEL, root["ts"]))
        await eventually(lambda: "Acknowledged by alice, bob" in json.dumps(fake.find(INCIDENT_CHANNEL, root["ts"])))
        assert any(m["text"] == f"bob acknowledged {inc.id}." for m in fake.thread(INCIDENT_CHANNEL, root["ts"]))

        # a forged value changes nothing
        await _send(client, action_body("onwatch_ack", "INC-1|<!channel>", "UBOB", INCIDENT_CHANNEL, root["ts"]))
        eph = await eventually(lambda: [e for e in fake.ephemerals if e["user"] == "UBOB"])
        assert "malformed" in eph[0]["text"]
    finally:
        await client.close()
    assert await _acks(db) == [("UALICE", True), ("UBOB", False)]
    async with db.session() as s:
        assert len((await s.exec(select(Acknowledgement))).all()) == 2
    assert (await verify_chain(db)).ok


async def test_slack_root_message_without_public_url_has_no_link(fake, sqlite_url, db) -> None:
    ctx = await _slack(fake, sqlite_url, db)
    inc = await make_incident(db)
    await ctx.chat.incident_opened(inc.id)
    root = fake.messages[INCIDENT_CHANNEL][0]
    assert "/ui/incidents" not in json.dumps(root) and _ack_button(root) is not None


async def test_the_summary_links_to_the_incident_page(fake, sqlite_url, db) -> None:
    ctx = await _slack(fake, sqlite_url, db, public_url=PUBLIC)
    inc = await make_incident(db)
    await ctx.chat.incident_opened(inc.id)
    inv = await make_investigation(db, inc.id)
    await ctx.chat.investigation_finished(inc.id, inv.id)
    page = f"<{PUBLIC}/ui/incidents/{inc.id}|Open the incident page>"
    summary = await eventually(lambda: [m for m in fake.messages[INCIDENT_CHANNEL] if "Likely causes" in json.dumps(m)])
    assert page in json.dumps(summary[0]["blocks"])
    # the reasoning and the chart do not repeat it; the status answer has it too
    assert sum(page in json.dumps(m.get("blocks")) for m in fake.messages[INCIDENT_CHANNEL]) == 1
    status = await compose.status_message(db, inc.id, PUBLIC)
    assert status is not None and status.page_url == f"{PUBLIC}/ui/incidents/{inc.id}"

    msgs = await compose.investigation_messages(db, inv.id, PUBLIC)
    card = render_message(msgs[-1])
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open the incident page",
                                "url": f"{PUBLIC}/ui/incidents/{inc.id}"}]
    assert all(not m.page_url for m in await compose.investigation_messages(db, inv.id))
    assert "actions" not in render_message((await compose.investigation_messages(db, inv.id))[-1])


def test_no_acknowledge_button_once_resolved_and_links_are_safe() -> None:
    inc = Incident(id="INC-ABC123", title="<!channel> [x](javascript:alert(1))", severity="critical",
                   services=["checkout"], status="resolved")
    card = card_for(inc, ("<@U1> & co",), PUBLIC + "/")
    assert card.url == f"{PUBLIC}/ui/incidents/INC-ABC123"
    blocks = render_card(card).blocks
    slack = json.dumps(blocks)
    assert "onwatch_ack" not in slack and "&lt;@U1&gt; &amp; co" in slack
    mrkdwn = [t for t in _texts(blocks) if t["type"] == "mrkdwn"]  # plain_text (the header) is never parsed
    assert mrkdwn and not any("<!channel>" in t["text"] or "<@U1>" in t["text"] for t in mrkdwn)
    assert f"<{PUBLIC}/ui/incidents/INC-ABC123|incident page>" in mrkdwn[-1]["text"]
    teams = incident_card(card)
    assert [a["type"] for a in teams["actions"]] == ["Action.OpenUrl"]
    assert teams["actions"][0]["url"] == f"{PUBLIC}/ui/incidents/INC-ABC123"
    assert "\\[x\\]\\(javascript:alert\\(1\\)\\)" in teams["body"][0]["items"][0]["text"]
    assert "actions" not in incident_card(card_for(inc))
    assert incident_page(None, "INC-1") == "" and incident_page("", "INC-1") == ""


def _texts(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [t for n in node for t in _texts(n)]
    if isinstance(node, dict):
        own = [node] if node.get("type") in ("mrkdwn", "plain_text") else []
        return own + [t for v in node.values() for t in _texts(v)]
    return []


@pytest.mark.parametrize("bad", ["javascript:alert(1)", "ftp://x", "https://", "https://a b", "onwatch.acme",
                                 "https://x/<script>", "https://x/?q=1", "https://x/#frag"])
def test_public_url_must_be_a_plain_http_url(bad: str) -> None:
    with pytest.raises(ValidationError, match="server.public_url"):
        Settings(server={"public_url": bad})  # type: ignore[arg-type]


def test_public_url_is_normalised() -> None:
    assert Settings(server={"public_url": "https://onwatch.acme/base/"}).server.public_url == "https://onwatch.acme/base"  # type: ignore[arg-type]


# ----------------------------------------------------------------- Teams


@pytest.fixture
async def srv(db: Database, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    settings = teams_settings(sqlite_url, runbooks_dir=write_runbooks(tmp_path))
    settings.server.public_url = PUBLIC
    ctx = await build_context(settings, db)
    async with serve(ctx) as s:
        yield s


async def test_teams_acknowledge_action_once_per_person_audited_and_shown(srv: Served, connector) -> None:
    status, _ = await srv.post(activity("conversationUpdate", connector.service_url, membersAdded=[{"id": BOT_ID}]))
    assert status == 201
    inc = await make_incident(srv.ctx.db)
    await srv.ctx.chat.incident_opened(inc.id)
    (create,) = connector.of_kind("create_conversation")
    card = create.body["activity"]["attachments"][0]["content"]
    execute, page = card["actions"]
    assert execute["type"] == "Action.Execute" and execute["verb"] == "onwatch_ack"
    assert execute["data"] == {"incident_id": inc.id} and execute["fallback"]["type"] == "Action.Submit"
    assert page == {"type": "Action.OpenUrl", "title": "Open the incident page", "url": f"{PUBLIC}/ui/incidents/{inc.id}"}
    async with srv.ctx.db.session() as s:
        thread = (await s.exec(select(ChatThread))).one()

    def click(sender: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return invoke(connector.service_url, "onwatch_ack", data, sender=sender, conversation_id=thread.thread_id,
                      reply_to=thread.root_message_id)

    status, body = await srv.post(click(user(APPROVER_AAD, "Alice Approver"), {"incident_id": inc.id}))
    assert status == 200 and body["statusCode"] == 200
    text = _shown(body["value"])
    assert f"Alice Approver acknowledged {inc.id} (first)." in text and "Acknowledged by" in text
    # every viewer's root card is edited to name who acknowledged
    assert "Alice Approver" in json.dumps(connector.message(thread.thread_id, thread.root_message_id))

    status, body = await srv.post(click(user(APPROVER_AAD, "Alice Approver"), {"incident_id": inc.id}))
    assert "Already acknowledged" in _shown(body["value"])
    status, body = await srv.post(click(user(STRANGER_AAD, "Sam"), {"incident_id": inc.id.lower()}))
    assert f"Sam acknowledged {inc.id}." in _shown(body["value"])
    status, body = await srv.post(click(user(STRANGER_AAD, "Sam"), {"incident_id": ["INC-1"]}))
    assert "malformed" in _shown(body["value"])
    assert await _acks(srv.ctx.db) == [(APPROVER_AAD, True), (STRANGER_AAD, False)]
    assert (await verify_chain(srv.ctx.db)).ok
