"""The Teams bot on botbuilder's TestAdapter: commands, conversation references, Action.Execute invokes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount, ConversationAccount, Entity
from sqlmodel import select

from bot.app import context_for
from bot.chat.teams.bot import OnwatchTeamsBot, command_text, thread_id_of
from bot.context import AppContext
from bot.store.models import Approval, AuditEvent, ConversationRef, Job, Proposal
from tests.teams_fixtures import (
    APPROVER_AAD,
    BOT_ID,
    BOT_NAME,
    CHANNEL,
    STRANGER_AAD,
    TENANT,
    make_incident,
    make_proposal,
    remediation_for,
    shown,
    teams_settings,
)

THREAD = f"{CHANNEL};messageid=1700000000001"


def adapter_for(aad: str | None = APPROVER_AAD, conversation_id: str = THREAD, conv_type: str = "channel") -> TestAdapter:
    template = Activity(
        channel_id="msteams", service_url="https://smba.example/amer/",
        from_property=ChannelAccount(id="29:1user", name="Alice", aad_object_id=aad),
        recipient=ChannelAccount(id=BOT_ID, name=BOT_NAME),
        conversation=ConversationAccount(id=conversation_id, conversation_type=conv_type, is_group=True),
    )
    return TestAdapter(template_or_conversation=template)


@pytest.fixture
def tctx(db: Any, sqlite_url: str, tmp_path: Path) -> AppContext:
    ctx = context_for(teams_settings(sqlite_url), db)
    ctx.remediation = remediation_for(ctx, tmp_path)
    return ctx


def mention(text: str) -> Activity:
    at = f"<at>{BOT_NAME}</at>"
    return Activity(type=ActivityTypes.message, text=f"{at} {text}", channel_data={"tenant": {"id": TENANT}},
                    entities=[Entity(type="mention").deserialize(
                        {"type": "mention", "text": at, "mentioned": {"id": BOT_ID, "name": BOT_NAME}})])


def execute(verb: str, data: Any) -> Activity:
    return Activity(type=ActivityTypes.invoke, name="adaptiveCard/action",
                    value={"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"})


def invoke_body(adapter: TestAdapter) -> dict[str, Any]:
    responses = [a for a in adapter.activity_buffer if a.type == ActivityTypes.invoke_response]
    assert len(responses) == 1
    assert responses[0].value.status == 200
    return responses[0].value.body


def test_command_text_strips_only_the_bots_mention_and_html() -> None:
    a = mention("investigate&nbsp;<b>checkout</b>  is slow")
    a.recipient = ChannelAccount(id=BOT_ID)
    assert command_text(a) == "investigate checkout is slow"
    other = Activity(type="message", text="<at>Bob</at> status", recipient=ChannelAccount(id=BOT_ID),
                     entities=[Entity(type="mention").deserialize(
                         {"type": "mention", "text": "<at>Bob</at>", "mentioned": {"id": "29:bob", "name": "Bob"}})])
    assert command_text(other) == "Bob status"


def test_thread_of_a_new_channel_post_is_derived_from_its_id() -> None:
    a = Activity(id="1700000000009", conversation=ConversationAccount(id=CHANNEL, conversation_type="channel"))
    assert thread_id_of(a) == f"{CHANNEL};messageid=1700000000009"
    a.conversation.id = THREAD
    assert thread_id_of(a) == THREAD
    personal = Activity(id="x", conversation=ConversationAccount(id="a:1personal", conversation_type="personal"))
    assert thread_id_of(personal) == "a:1personal"


async def test_help_by_mention_replies_and_stores_the_conversation(tctx: AppContext) -> None:
    adapter = adapter_for()
    await adapter.process_activity(mention("help"), OnwatchTeamsBot(tctx).on_turn)
    replies = [a for a in adapter.activity_buffer if a.type == "message"]
    assert len(replies) == 1 and "investigate" in replies[0].text and "status" in replies[0].text
    async with tctx.db.session() as s:
        rows = {r.conversation_id: r.reference for r in (await s.exec(select(ConversationRef))).all()}
    assert set(rows) == {THREAD, CHANNEL}  # the thread, and its channel for later announcements
    assert rows[CHANNEL]["conversation"]["id"] == CHANNEL
    assert rows[CHANNEL]["serviceUrl"] == "https://smba.example/amer/"
    assert rows[CHANNEL]["conversation"]["tenantId"] == TENANT


async def test_status_in_an_incident_thread_targets_that_incident(tctx: AppContext) -> None:
    from bot.chat.teams import refs

    inc = await make_incident(tctx.db)
    assert await refs.claim_thread(tctx.db, inc.id, CHANNEL)
    await refs.complete_thread(tctx.db, inc.id, THREAD, "1700000000001", {})
    adapter = adapter_for()
    await adapter.process_activity(mention("status"), OnwatchTeamsBot(tctx).on_turn)
    (reply,) = [a for a in adapter.activity_buffer if a.type == "message"]
    card = reply.attachments[0].content
    assert inc.id in str(card) and "checkout 5xx errors" in str(card)


async def test_unknown_verb_gets_the_help(tctx: AppContext) -> None:
    adapter = adapter_for()
    await adapter.process_activity(mention("deploy everything"), OnwatchTeamsBot(tctx).on_turn)
    (reply,) = [a for a in adapter.activity_buffer if a.type == "message"]
    assert "I don't know `deploy`" in shown(reply.text)


async def test_conversation_update_stores_a_reference(tctx: AppContext) -> None:
    adapter = adapter_for(conversation_id=CHANNEL)
    act = Activity(type=ActivityTypes.conversation_update, members_added=[ChannelAccount(id=BOT_ID)],
                   channel_data={"tenant": {"id": TENANT}, "team": {"id": CHANNEL}})
    await adapter.process_activity(act, OnwatchTeamsBot(tctx).on_turn)
    async with tctx.db.session() as s:
        row = (await s.exec(select(ConversationRef))).one()
    assert row.conversation_id == CHANNEL and row.reference["bot"]["id"] == BOT_ID


async def test_installation_update_stores_a_reference(tctx: AppContext) -> None:
    adapter = adapter_for(conversation_id="a:1personal", conv_type="personal")
    act = Activity(type=ActivityTypes.installation_update, action="add")
    await adapter.process_activity(act, OnwatchTeamsBot(tctx).on_turn)
    async with tctx.db.session() as s:
        assert (await s.exec(select(ConversationRef.conversation_id))).all() == ["a:1personal"]


async def test_approve_by_an_approver_replaces_the_card_with_who_and_when(tctx: AppContext) -> None:
    inc = await make_incident(tctx.db)
    p = await make_proposal(tctx.db, inc.id)
    adapter = adapter_for()
    await adapter.process_activity(execute("onwatch_approve", {"proposal_id": p.id}), OnwatchTeamsBot(tctx).on_turn)
    body = invoke_body(adapter)
    assert body["statusCode"] == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
    text = str(body["value"])
    assert "Approved by" in text and "UTC" in text and "Action.Execute" not in text
    async with tctx.db.session() as s:
        row = await s.get(Proposal, p.id)
        approvals = (await s.exec(select(Approval))).all()
    assert row is not None and row.status == "approved"
    assert [a.actor for a in approvals] == [f"teams:{APPROVER_AAD}"]


async def test_reject_records_the_rejection(tctx: AppContext) -> None:
    inc = await make_incident(tctx.db)
    p = await make_proposal(tctx.db, inc.id)
    adapter = adapter_for()
    await adapter.process_activity(execute("onwatch_reject", {"proposal_id": p.id}), OnwatchTeamsBot(tctx).on_turn)
    assert "Rejected by" in str(invoke_body(adapter)["value"])
    async with tctx.db.session() as s:
        assert (await s.get(Proposal, p.id)).status == "rejected"  # type: ignore[union-attr]


async def test_stranger_gets_an_error_card_and_the_attempt_is_audited(tctx: AppContext) -> None:
    inc = await make_incident(tctx.db)
    p = await make_proposal(tctx.db, inc.id)
    adapter = adapter_for(aad=STRANGER_AAD)
    await adapter.process_activity(execute("onwatch_approve", {"proposal_id": p.id}), OnwatchTeamsBot(tctx).on_turn)
    card = invoke_body(adapter)["value"]
    assert card["body"][0]["style"] == "attention" and "cannot decide" in str(card)
    async with tctx.db.session() as s:
        assert (await s.get(Proposal, p.id)).status == "pending"  # type: ignore[union-attr]
        audit_rows = (await s.exec(select(AuditEvent).where(AuditEvent.action == "proposal.unauthorised"))).all()
    assert len(audit_rows) == 1 and audit_rows[0].actor_id == STRANGER_AAD


async def test_no_aad_object_id_means_no_authority(tctx: AppContext) -> None:
    inc = await make_incident(tctx.db)
    p = await make_proposal(tctx.db, inc.id)
    adapter = adapter_for(aad=None)
    await adapter.process_activity(execute("onwatch_approve", {"proposal_id": p.id}), OnwatchTeamsBot(tctx).on_turn)
    assert "cannot decide" in str(invoke_body(adapter)["value"])


async def test_payload_with_approver_id_in_data_is_not_trusted(tctx: AppContext) -> None:
    inc = await make_incident(tctx.db)
    p = await make_proposal(tctx.db, inc.id)
    adapter = adapter_for(aad=STRANGER_AAD)
    data = {"proposal_id": p.id, "aadObjectId": APPROVER_AAD, "user": f"teams:{APPROVER_AAD}"}
    await adapter.process_activity(execute("onwatch_approve", data), OnwatchTeamsBot(tctx).on_turn)
    async with tctx.db.session() as s:
        assert (await s.get(Proposal, p.id)).status == "pending"  # type: ignore[union-attr]


async def test_double_invoke_decides_once(tctx: AppContext) -> None:
    inc = await make_incident(tctx.db)
    p = await make_proposal(tctx.db, inc.id)
    bot = OnwatchTeamsBot(tctx)
    first, second = adapter_for(), adapter_for()
    await first.process_activity(execute("onwatch_approve", {"proposal_id": p.id}), bot.on_turn)
    await second.process_activity(execute("onwatch_approve", {"proposal_id": p.id}), bot.on_turn)
    assert "already approved" in str(invoke_body(second)["value"])
    async with tctx.db.session() as s:
        approved = (await s.exec(select(AuditEvent).where(AuditEvent.action == "proposal.approved"))).all()
        jobs = (await s.exec(select(Job).where(Job.kind == "execution"))).all()
    assert len(approved) == 1 and len(jobs) == 1


async def test_malformed_invoke_data_changes_nothing(tctx: AppContext) -> None:
    for data in (None, {}, {"proposal_id": 7}, {"proposal_id": "x" * 500}, "tok"):
        adapter = adapter_for()
        await adapter.process_activity(execute("onwatch_approve", data), OnwatchTeamsBot(tctx).on_turn)
        assert "not valid" in str(invoke_body(adapter)["value"])


async def test_unknown_proposal_and_unknown_verb(tctx: AppContext) -> None:
    adapter = adapter_for()
    await adapter.process_activity(execute("onwatch_approve", {"proposal_id": "nope"}), OnwatchTeamsBot(tctx).on_turn)
    assert "Unknown proposal" in str(invoke_body(adapter)["value"])
    adapter = adapter_for()
    await adapter.process_activity(execute("rm_rf", {"proposal_id": "nope"}), OnwatchTeamsBot(tctx).on_turn)
    assert "Unknown action" in str(invoke_body(adapter)["value"])


async def test_refresh_gives_approvers_buttons_and_others_a_read_only_view(tctx: AppContext) -> None:
    inc = await make_incident(tctx.db)
    p = await make_proposal(tctx.db, inc.id, preview={"target": "shop/checkout"})  # approvers from the policy
    bot = OnwatchTeamsBot(tctx)
    mine, theirs = adapter_for(), adapter_for(aad=STRANGER_AAD)
    await mine.process_activity(execute("onwatch_refresh", {"proposal_id": p.id}), bot.on_turn)
    await theirs.process_activity(execute("onwatch_refresh", {"proposal_id": p.id}), bot.on_turn)
    card = invoke_body(mine)["value"]
    assert "onwatch_approve" in str(card["body"])
    assert card["refresh"]["userIds"] == [f"8:orgid:{APPROVER_AAD}"]
    assert "onwatch_approve" not in str(invoke_body(theirs)["value"]["body"])


async def test_submit_fallback_decides_through_the_same_path(tctx: AppContext) -> None:
    inc = await make_incident(tctx.db)
    p = await make_proposal(tctx.db, inc.id)
    adapter = adapter_for()
    submit = Activity(type=ActivityTypes.message, value={"verb": "onwatch_approve", "proposal_id": p.id})
    await adapter.process_activity(submit, OnwatchTeamsBot(tctx).on_turn)
    (reply,) = [a for a in adapter.activity_buffer if a.type == "message"]
    assert "Approved by" in str(reply.attachments[0].content)
    async with tctx.db.session() as s:
        assert (await s.get(Proposal, p.id)).status == "approved"  # type: ignore[union-attr]


async def test_submit_fallback_from_a_stranger_is_refused(tctx: AppContext) -> None:
    inc = await make_incident(tctx.db)
    p = await make_proposal(tctx.db, inc.id)
    adapter = adapter_for(aad=STRANGER_AAD)
    submit = Activity(type=ActivityTypes.message, value={"verb": "onwatch_reject", "proposal_id": p.id})
    await adapter.process_activity(submit, OnwatchTeamsBot(tctx).on_turn)
    (reply,) = [a for a in adapter.activity_buffer if a.type == "message"]
    assert "cannot decide" in str(reply.attachments[0].content)
    async with tctx.db.session() as s:
        assert (await s.get(Proposal, p.id)).status == "pending"  # type: ignore[union-attr]

