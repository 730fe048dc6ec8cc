"""Cause and fix feedback from Slack (the real bolt stack over HTTP), Teams (botbuilder's TestAdapter) and the
CLI: who may answer, the audit trail of each answer and edit, the thread message, and closed incidents."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount, ConversationAccount
from sqlmodel import col, select

from bot.app import context_for
from bot.audit import verify_chain
from bot.chat.slack import routes as slack_routes
from bot.chat.slack.adapter import SlackAdapter
from bot.chat.teams.bot import OnwatchTeamsBot
from bot.cli import main as cli_main
from bot.context import AppContext
from bot.memory.store import remember
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import AuditEvent, Execution, Incident, IncidentFeedback, Memory, Proposal
from bot.web import create_app
from tests.fakes.slack_api import FakeSlack, action_body, event_body, sign
from tests.slack_fixtures import (
    INCIDENT_CHANNEL,
    SECRET,
    eventually,
    make_incident,
    make_investigation,
    slack_settings,
)
from tests.teams_fixtures import APPROVER_AAD, BOT_ID, BOT_NAME, CHANNEL, STRANGER_AAD, teams_settings


async def _audit(db: Database, prefix: str = "memory.") -> list[AuditEvent]:
    async with db.session() as s:
        return list((await s.exec(select(AuditEvent).where(col(AuditEvent.action).startswith(prefix))
                                  .order_by(col(AuditEvent.seq)))).all())


async def _feedback(db: Database, incident_id: str) -> IncidentFeedback | None:
    async with db.session() as s:
        return await s.get(IncidentFeedback, incident_id)


async def _with_fix(db: Database, incident_id: str) -> Proposal:
    p = Proposal(incident_id=incident_id, runbook_id="rollback", title="Roll back checkout", status="succeeded",
                 expires_at=time.time() + 60)
    async with db.begin() as s:
        s.add(p)
        await s.flush()
        s.add(Execution(proposal_id=p.id, incident_id=incident_id, status="succeeded"))
    return p


# ----------------------------------------------------------------- Slack


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        for uid, name in (("UALICE", "alice"), ("UBOB", "bob"), ("UCAROL", "carol")):
            f.add_user(uid, name)
        f.usergroups["SONCALL"] = ["UCAROL"]
        yield f


@pytest.fixture
async def sctx(fake: FakeSlack, sqlite_url: str, db: Database) -> AsyncIterator[AppContext]:
    settings = slack_settings(sqlite_url, fake.api_url)
    ctx = context_for(settings, db)
    ctx.chat.add(SlackAdapter(settings, db, debounce_s=0.05))
    yield ctx


@pytest.fixture
async def client(sctx: AppContext) -> AsyncIterator[TestClient]:
    c = TestClient(TestServer(create_app(sctx, installers=[slack_routes.install])))
    await c.start_server()
    try:
        yield c
    finally:
        await c.close()


async def _send(client: TestClient, body: str, form: bool = True) -> None:
    headers = sign(SECRET, body)
    headers["Content-Type"] = "application/x-www-form-urlencoded" if form else "application/json"
    resp = await client.post("/slack/events", data=body.encode(), headers=headers)
    assert resp.status == 200


def _feedback_msg(fake: FakeSlack) -> dict[str, Any]:
    for m in fake.messages[INCIDENT_CHANNEL]:
        if any(b.get("block_id", "").startswith("feedback:") for b in m.get("blocks") or []):
            return m
    raise AssertionError("no feedback message")


def _buttons(msg: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """label -> (action_id, value)"""
    out = {}
    for b in msg["blocks"]:
        if b.get("type") == "actions":
            for e in b["elements"]:
                out[e["text"]["text"]] = (e["action_id"], e["value"])
    return out


async def test_slack_feedback_buttons_authorised_audited_edited_and_shown(client, fake, sctx):
    inc = await make_incident(sctx.db)
    await sctx.chat.incident_opened(inc.id)
    root = fake.messages[INCIDENT_CHANNEL][0]
    await make_investigation(sctx.db, inc.id, rows=True)
    fix = await _with_fix(sctx.db, inc.id)
    await sctx.chat.feedback_changed(inc.id)
    msg = await eventually(lambda: _feedback_msg(fake))
    buttons = _buttons(msg)
    confirm = next(v for k, v in buttons.items() if k.startswith("Confirm cause"))
    second = next(v for k, v in buttons.items() if k.startswith("Wrong cause — it was #2"))
    fixed = buttons["Fixed by: Roll back checkout"]
    assert len({a for a, _ in buttons.values()}) == len(buttons), "action ids are unique within the block"
    assert confirm[1] == f"{inc.id}|confirm" and fixed[1] == f"{inc.id}|fix|{fix.id}"

    # bob is in no approvals group: refused, nothing stored, nothing audited
    await _send(client, action_body(confirm[0], confirm[1], "UBOB", INCIDENT_CHANNEL, msg["ts"], root["ts"]))
    eph = await eventually(lambda: [e for e in fake.ephemerals if e["user"] == "UBOB"])
    assert "Only members of" in eph[0]["text"]
    assert await _feedback(sctx.db, inc.id) is None and await _audit(sctx.db) == []

    # alice (a listed user) confirms; carol (through the SONCALL user group) corrects it to the #2 cause
    await _send(client, action_body(confirm[0], confirm[1], "UALICE", INCIDENT_CHANNEL, msg["ts"], root["ts"]))
    await eventually(lambda: _audit(sctx.db))
    fb = await _feedback(sctx.db, inc.id)
    assert fb is not None and (fb.cause_service, fb.cause_choice, fb.cause_by) == ("checkout", "confirmed", "slack:UALICE")
    await _send(client, action_body(second[0], second[1], "UCAROL", INCIDENT_CHANNEL, msg["ts"], root["ts"]))

    async def corrected() -> bool:
        f = await _feedback(sctx.db, inc.id)
        return f is not None and f.cause_choice == "ranked"

    await eventually(corrected)
    fb = await _feedback(sctx.db, inc.id)
    assert fb is not None and (fb.cause_service, fb.cause_by) == ("payments", "slack:UCAROL")
    await _send(client, action_body(fixed[0], fixed[1], "UALICE", INCIDENT_CHANNEL, msg["ts"], root["ts"]))

    async def three() -> list[AuditEvent]:
        rows = await _audit(sctx.db)
        return rows if len(rows) == 3 else []

    rows = await eventually(three)
    assert [r.action for r in rows] == ["memory.cause_confirmed", "memory.cause_corrected", "memory.fix_recorded"]
    assert rows[1].params["previous"] == {"service": "checkout", "kind": "deploy regression", "by": "slack:UALICE"}
    assert rows[2].params["proposal_id"] == fix.id and rows[2].actor_id == "UALICE"

    # the thread message is edited in place to show who said what
    async def shown() -> bool:
        m = fake.find(INCIDENT_CHANNEL, msg["ts"])
        text = json.dumps(m["blocks"]) if m else ""
        return "Cause corrected by carol" in text and "Fixed by: Roll back checkout" in text

    await eventually(shown)
    assert (await verify_chain(sctx.db)).ok


async def test_slack_text_commands_name_a_cause_and_a_fix(client, fake, sctx):
    inc = await make_incident(sctx.db)
    await sctx.chat.incident_opened(inc.id)
    root = fake.messages[INCIDENT_CHANNEL][0]

    async def say(user: str, text: str) -> None:
        event = {"type": "app_mention", "user": user, "text": f"<@UONWATCH> {text}", "channel": INCIDENT_CHANNEL,
                 "ts": fake.next_ts(), "thread_ts": root["ts"]}
        await _send(client, event_body(event), form=False)

    await say("UCAROL", "cause payments-api deploy the v42 migration locked the orders table")
    await eventually(lambda: _feedback(sctx.db, inc.id))
    await say("UALICE", "fixed rolled back payments-api to v41")

    async def both() -> IncidentFeedback | None:
        f = await _feedback(sctx.db, inc.id)
        return f if f is not None and f.fix else None

    fb = await eventually(both)
    assert (fb.cause_service, fb.cause_kind, fb.cause_choice) == ("payments-api", "deploy", "free")
    assert fb.cause_note == "the v42 migration locked the orders table" and fb.fix == "rolled back payments-api to v41"
    await say("UBOB", "cause redis network_saturation")
    eph = await eventually(lambda: [e for e in fake.ephemerals if e["user"] == "UBOB"])
    assert "Only members of" in eph[0]["text"]
    await say("UALICE", "cause payments-api <script>")
    eph = await eventually(lambda: [e for e in fake.ephemerals if e["user"] == "UALICE"])
    assert "not a cause kind" in eph[0]["text"]
    fb2 = await _feedback(sctx.db, inc.id)
    assert fb2 is not None and fb2.cause_kind == "deploy", "a refused edit changes nothing"


async def test_slack_closed_incident_refuses_edits(client, fake, sctx):
    inc = await make_incident(sctx.db, status="resolved", resolved_at=time.time() - 8 * 86400)
    await make_investigation(sctx.db, inc.id, rows=True)
    await _send(client, action_body("onwatch_feedback_0", f"{inc.id}|confirm", "UALICE", INCIDENT_CHANNEL, "1.1"))
    eph = await eventually(lambda: fake.ephemerals)
    assert "is closed" in eph[0]["text"]
    assert await _feedback(sctx.db, inc.id) is None
    # a forged value is refused before anything is looked up
    await _send(client, action_body("onwatch_feedback_1", "INC-ABCDEF|rm -rf", "UALICE", INCIDENT_CHANNEL, "1.1"))
    eph = await eventually(lambda: fake.ephemerals[1:])
    assert "malformed" in eph[0]["text"]


# ----------------------------------------------------------------- Teams

THREAD = f"{CHANNEL};messageid=1700000000001"


def _teams_adapter(aad: str) -> TestAdapter:
    return TestAdapter(template_or_conversation=Activity(
        channel_id="msteams", service_url="https://smba.example/amer/",
        from_property=ChannelAccount(id="29:1user", name="Alice", aad_object_id=aad),
        recipient=ChannelAccount(id=BOT_ID, name=BOT_NAME),
        conversation=ConversationAccount(id=THREAD, conversation_type="channel", is_group=True)))


def _execute(value: str) -> Activity:
    return Activity(type=ActivityTypes.invoke, name="adaptiveCard/action",
                    value={"action": {"type": "Action.Execute", "verb": "onwatch_feedback", "data": {"feedback": value}},
                           "trigger": "manual"})


def _invoke_card(adapter: TestAdapter) -> dict[str, Any]:
    (resp,) = [a for a in adapter.activity_buffer if a.type == ActivityTypes.invoke_response]
    assert resp.value.status == 200
    return resp.value.body["value"]


async def test_teams_feedback_invokes_authorised_audited_and_edited(db: Database, sqlite_url: str) -> None:
    ctx = context_for(teams_settings(sqlite_url), db)
    inc = await make_incident(db)
    await make_investigation(db, inc.id, rows=True)
    fix = await _with_fix(db, inc.id)

    stranger = _teams_adapter(STRANGER_AAD)
    await stranger.process_activity(_execute(f"{inc.id}|confirm"), OnwatchTeamsBot(ctx).on_turn)
    card = _invoke_card(stranger)
    assert "Not recorded" in json.dumps(card) and "Only members of" in json.dumps(card)
    assert await _feedback(db, inc.id) is None

    approver = _teams_adapter(APPROVER_AAD)
    await approver.process_activity(_execute(f"{inc.id}|confirm"), OnwatchTeamsBot(ctx).on_turn)
    card = _invoke_card(approver)
    text = json.dumps(card)
    assert "cause confirmed: deploy regression in checkout" in text and "Cause confirmed by Alice" in text
    verbs = [a["verb"] for a in card["body"][1]["items"][-2]["actions"]]
    assert set(verbs) == {"onwatch_feedback"}

    edit = _teams_adapter(APPROVER_AAD)
    await edit.process_activity(_execute(f"{inc.id}|cause|2"), OnwatchTeamsBot(ctx).on_turn)
    assert "Cause corrected by Alice" in json.dumps(_invoke_card(edit))
    fixer = _teams_adapter(APPROVER_AAD)
    await fixer.process_activity(_execute(f"{inc.id}|fix|{fix.id}"), OnwatchTeamsBot(ctx).on_turn)
    assert "Fixed by: Roll back checkout" in json.dumps(_invoke_card(fixer))
    rows = await _audit(db)
    assert [(r.action, r.actor_platform, r.actor_id) for r in rows] == [
        ("memory.cause_confirmed", "teams", APPROVER_AAD), ("memory.cause_corrected", "teams", APPROVER_AAD),
        ("memory.fix_recorded", "teams", APPROVER_AAD)]
    assert rows[1].params["previous"]["service"] == "checkout"

    # a fix that did not run for this incident is refused
    other = _teams_adapter(APPROVER_AAD)
    await other.process_activity(_execute(f"{inc.id}|fix|not-a-run"), OnwatchTeamsBot(ctx).on_turn)
    assert "did not run" in json.dumps(_invoke_card(other))


async def test_teams_feedback_group_is_configurable(db: Database, sqlite_url: str) -> None:
    settings = teams_settings(sqlite_url)
    settings.approvals.groups["postmortem-crew"] = [f"teams:{STRANGER_AAD}"]
    settings.memory.feedback_groups = ["postmortem-crew"]
    ctx = context_for(settings, db)
    inc = await make_incident(db)
    await make_investigation(db, inc.id, rows=True)
    approver = _teams_adapter(APPROVER_AAD)  # an approver of runbooks, but not in the feedback group
    await approver.process_activity(_execute(f"{inc.id}|confirm"), OnwatchTeamsBot(ctx).on_turn)
    assert "Only members of postmortem-crew" in json.dumps(_invoke_card(approver))
    crew = _teams_adapter(STRANGER_AAD)
    await crew.process_activity(_execute(f"{inc.id}|confirm"), OnwatchTeamsBot(ctx).on_turn)
    assert "cause confirmed" in json.dumps(_invoke_card(crew))


# ----------------------------------------------------------------- CLI and memory


async def test_feedback_confirms_the_memory_and_survives_remembering_again(db: Database, sqlite_url: str,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    inc = await make_incident(db, status="resolved", resolved_at=time.time())
    await make_investigation(db, inc.id, rows=True)
    mem = await remember(db, inc.id)
    assert mem is not None and (mem.cause_service, mem.grade) == ("checkout", "unconfirmed")
    env = {"ONWATCH_DATABASE__URL": sqlite_url}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert await asyncio.to_thread(cli_main, [
            "incidents", "correct", inc.id, "--service", "payments", "--kind", "dependency_failure",
            "--fix", "raised the pool size", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cause_service"] == "payments" and out["cause_choice"] == "free" and out["fix"] == "raised the pool size"
    await remember(db, inc.id)  # the periodic job again: the person's word stands
    async with db.session() as s:
        row = (await s.exec(select(Memory).where(Memory.incident_id == inc.id))).one()
    assert (row.cause_service, row.cause_kind, row.grade, row.fix) == (
        "payments", "dependency_failure", "confirmed", "raised the pool size")
    assert row.graded_by.startswith("cli:")
    async with db.begin() as s:
        i = await s.get(Incident, inc.id)
        assert i is not None
        i.resolved_at = time.time() - 30 * 86400
        s.add(i)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ONWATCH_DATABASE__URL", sqlite_url)
        assert await asyncio.to_thread(cli_main, ["incidents", "confirm", inc.id]) == 1
    assert "is closed" in capsys.readouterr().err


def test_cli_confirm_without_ranked_causes_says_what_to_do(sqlite_url: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    upgrade(sqlite_url)

    async def setup() -> str:
        d = Database(sqlite_url)
        try:
            return (await make_incident(d)).id
        finally:
            await d.dispose()

    inc_id = asyncio.run(setup())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ONWATCH_DATABASE__URL", sqlite_url)
        assert cli_main(["incidents", "confirm", inc_id]) == 1
    assert "no ranked cause #1" in capsys.readouterr().err
