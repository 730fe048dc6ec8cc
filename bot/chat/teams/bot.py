"""The Teams bot: turns inbound activities into domain commands and decisions.

- A message (an @mention in a channel, or anything in a personal chat) is a chat command, run through
  ``bot.chat.commands.handle_command`` exactly as Slack does.
- ``conversationUpdate`` / ``installationUpdate`` / the first message store the conversation reference,
  so onwatch can post proactively later.
- ``adaptiveCard/action`` invokes (``Action.Execute``) with verbs ``onwatch_approve`` / ``onwatch_reject``
  decide a proposal through ``ctx.remediation.decide``; the caller is identified by their Entra (AAD)
  object id only, and the card data is trusted for nothing but the opaque proposal id. The invoke answer
  replaces the card (who decided and when) or shows an error card. ``onwatch_refresh`` answers the
  card's ``refresh`` with the caller's view. ``onwatch_ack`` (the incident card's Acknowledge) takes the ``ack``
  command's path and answers with the incident card naming who acknowledged. ``Action.Submit`` fallbacks arrive as messages whose
  ``value`` holds the verb and id, and take the same path.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from botbuilder.core import ActivityHandler, InvokeResponse, TurnContext, serializer_helper
from botbuilder.schema import Activity, ActivityTypes, AdaptiveCardInvokeResponse, AdaptiveCardInvokeValue

from bot.audit import Actor
from bot.chat import compose
from bot.chat.commands import CommandContext, ack_click, feedback_click, handle_command
from bot.chat.feedback import feedback_message
from bot.chat.hub import load_card
from bot.chat.seen import first_time
from bot.chat.teams import cards, refs, replays
from bot.chat.teams.adapter import approvers_lookup, card_activity, message_activity, with_approvers
from bot.context import AppContext
from bot.errors import NotFound
from bot.memory.feedback import state as feedback_state
from bot.ports import ThreadOrigin
from bot.store.models import Proposal

log = logging.getLogger(__name__)

_TAGS = re.compile(r"<[^>]+>")
_MAX_ID = 64
_SUCCESS = frozenset({"approved", "rejected", "awaiting_second_approval"})
_SHOW_STATE = frozenset({"already_decided", "expired"})


def actor_of(activity: Activity) -> Actor:
    """The sender as an onwatch actor: their Entra object id when Teams gives it, else the channel user id."""
    frm = activity.from_property
    aad = getattr(frm, "aad_object_id", None) if frm else None
    ident = aad or (frm.id if frm and frm.id else "unknown")
    return Actor("teams", str(ident), str(getattr(frm, "name", "") or ""))


def principals_of(activity: Activity) -> frozenset[str]:
    """Identities an approver policy may name. Only the Entra object id counts: it is tenant-unique and
    is what ``approvals.groups`` lists as ``teams:<aad-object-id>``."""
    frm = activity.from_property
    aad = getattr(frm, "aad_object_id", None) if frm else None
    return frozenset({f"teams:{aad}"}) if aad else frozenset()


def command_text(activity: Activity) -> str:
    """The typed command: the bot's @mention removed, HTML stripped, whitespace collapsed."""
    text = activity.text or ""
    bot_id = activity.recipient.id if activity.recipient else None
    for entity in activity.entities or []:
        if (entity.type or "").lower() != "mention":
            continue
        props = entity.additional_properties or {}
        raw = props.get("mentioned")
        mentioned: dict[str, Any] = raw if isinstance(raw, dict) else {}
        said = props.get("text")
        if bot_id and mentioned.get("id") == bot_id and isinstance(said, str) and said:
            text = text.replace(said, " ")
    text = html.unescape(_TAGS.sub(" ", text)).replace("\xa0", " ")
    return " ".join(text.split())


def thread_id_of(activity: Activity) -> str:
    """Where replies to this activity belong: the channel thread, or the chat itself."""
    conv_id = str(activity.conversation.id)
    conv_type = getattr(activity.conversation, "conversation_type", None)
    if conv_type == "channel" and refs.THREAD_SEP not in conv_id and activity.id:
        return refs.thread_of(conv_id, str(activity.id))
    return conv_id


def _proposal_id(data: Any) -> str | None:
    pid = data.get("proposal_id") if isinstance(data, dict) else None
    return pid if isinstance(pid, str) and 0 < len(pid) <= _MAX_ID else None


class OnwatchTeamsBot(ActivityHandler):
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.approvers = approvers_lookup(ctx)

    async def on_turn(self, turn_context: TurnContext) -> None:
        """A message or click delivered before (same activity id, on any replica) does not act again; a
        replayed click is answered with the card as it now stands."""
        activity = turn_context.activity
        key = replays.delivery_key(activity)
        if key is not None and not await first_time(self.ctx.db, key):
            log.info("teams: activity %s delivered again; already handled", str(activity.id)[:40])
            if replays.is_card_action(activity):
                card = await self.replay_card(activity)
                answer = AdaptiveCardInvokeResponse(status_code=200, type=cards.CARD_CONTENT_TYPE, value=card)
                await turn_context.send_activity(Activity(type=ActivityTypes.invoke_response, value=InvokeResponse(
                    status=200, body=serializer_helper(answer))))
            return
        await super().on_turn(turn_context)

    async def replay_card(self, activity: Activity) -> cards.Card:
        """What a replayed click sees: the proposal as it now stands, or a plain "already handled"."""
        action = activity.value.get("action") if isinstance(activity.value, dict) else None
        verb, data = (action.get("verb"), action.get("data")) if isinstance(action, dict) else (None, None)
        proposal_id = _proposal_id(data)
        if verb not in cards.DECISION_VERBS or proposal_id is None:
            return cards.error_card("Already handled", replays.REPLAY_NOTICE)
        try:
            _, message = await compose.proposal_status_message(self.ctx.db, proposal_id)
        except NotFound:
            return cards.error_card("Unknown proposal", f"Proposal {proposal_id} does not exist.")
        async with self.ctx.db.session() as s:
            proposal = await s.get(Proposal, proposal_id)
        status = proposal.status if proposal is not None else "decided"
        message = await with_approvers(message, self.approvers)
        return cards.render_message(message, next(iter(principals_of(activity)), None),
                                    notice=f"{replays.REPLAY_NOTICE} The proposal is already {status}.")

    # ---- conversation references

    async def remember(self, activity: Activity) -> dict[str, Any]:
        """Store the reference of this conversation (and of its channel, for a channel thread)."""
        reference = TurnContext.get_conversation_reference(activity).serialize()
        reference.pop("activityId", None)
        data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
        # botbuilder's schema maps tenant_id to "tenantID", so Teams' "tenantId" is lost: keep it ourselves
        tenant = (data.get("tenant") or {}).get("id") if isinstance(data.get("tenant"), dict) else None
        tenant = tenant or (activity.conversation.additional_properties or {}).get("tenantId")
        if tenant:
            reference.setdefault("conversation", {})["tenantId"] = str(tenant)
        conv_id = str(activity.conversation.id)
        await refs.save_reference(self.ctx.db, conv_id, reference)
        channel = refs.channel_of(conv_id)
        named = ((data.get("channel") or {}).get("id")) if isinstance(data.get("channel"), dict) else None
        for alias in {channel, named} - {conv_id, None}:
            await refs.save_reference(self.ctx.db, str(alias), refs.with_conversation(reference, str(alias)))
        return reference

    async def on_conversation_update_activity(self, turn_context: TurnContext) -> None:
        await self.remember(turn_context.activity)
        await super().on_conversation_update_activity(turn_context)

    async def on_installation_update(self, turn_context: TurnContext) -> None:
        if turn_context.activity.action in ("add", "add-upgrade", None):
            await self.remember(turn_context.activity)
        await super().on_installation_update(turn_context)

    # ---- commands

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        reference = await self.remember(activity)
        if isinstance(activity.value, dict) and activity.value.get("verb") in cards.DECISION_VERBS:
            await self._submit_fallback(turn_context, activity.value)
            return
        if isinstance(activity.value, dict) and activity.value.get("verb") == cards.VERB_FEEDBACK:
            card = await self.feedback_card(activity, activity.value)
            await turn_context.send_activity(card_activity(card, "onwatch feedback"))
            return
        if isinstance(activity.value, dict) and activity.value.get("verb") == cards.VERB_ACK:
            card = await self.ack_card(activity, activity.value)
            await turn_context.send_activity(card_activity(card, "onwatch acknowledgement"))
            return
        text = command_text(activity)
        conv_id = str(activity.conversation.id)
        thread_id = thread_id_of(activity)
        cc = CommandContext(
            actor=actor_of(activity),
            platform="teams",
            channel=refs.channel_of(conv_id),
            incident_id=await refs.incident_for_conversation(self.ctx.db, thread_id),
            origin=ThreadOrigin("teams", refs.channel_of(conv_id), thread_id,
                                refs.with_conversation(reference, thread_id)),
            principals=principals_of(activity),
        )
        reply = await handle_command(self.ctx, text, cc)
        if reply.message is not None:
            await turn_context.send_activity(message_activity(reply.message))
        else:
            await turn_context.send_activity(Activity(type=ActivityTypes.message, text=cards.escape(reply.text),
                                                      text_format="markdown"))

    # ---- decisions

    async def decision_card(self, activity: Activity, verb: str, data: Any) -> cards.Card:
        """Decide on the server and return the card the clicker should now see."""
        proposal_id = _proposal_id(data)
        if proposal_id is None:
            return cards.error_card("That button is not valid", "It does not name a proposal. Nothing was changed.")
        if self.ctx.remediation is None:
            return cards.error_card("Approvals are not available", "Remediation is not running in this process.")
        actor = actor_of(activity)
        outcome = await self.ctx.remediation.decide(proposal_id, actor, cards.DECISION_VERBS[verb],
                                                    principals_of(activity))
        status = str(outcome.status)
        if status == "unauthorised":
            return cards.error_card("You cannot decide this action", outcome.message)
        if status == "not_found":
            return cards.error_card("Unknown proposal", outcome.message)
        if status not in _SUCCESS | _SHOW_STATE:
            return cards.error_card("Not done", outcome.message)
        try:
            _, message = await compose.proposal_status_message(self.ctx.db, proposal_id)
        except NotFound:
            return cards.error_card("Unknown proposal", outcome.message)
        message = await with_approvers(message, self.approvers)
        viewer = next(iter(principals_of(activity)), None)
        if status in _SHOW_STATE:
            return cards.render_message(message, viewer, notice=outcome.message)
        card = cards.render_message(message, viewer)
        card["body"].insert(0, cards.text_block(outcome.message, color="Good", weight="Bolder"))
        return card

    async def refresh_card(self, activity: Activity, data: Any) -> cards.Card:
        proposal_id = _proposal_id(data)
        if proposal_id is None:
            return cards.error_card("That card is not valid", "It does not name a proposal.")
        try:
            _, message = await compose.proposal_status_message(self.ctx.db, proposal_id)
        except NotFound:
            return cards.error_card("Unknown proposal", f"Proposal {proposal_id} does not exist.")
        message = await with_approvers(message, self.approvers)
        return cards.render_message(message, viewer=next(iter(principals_of(activity)), ""))

    async def feedback_card(self, activity: Activity, data: Any) -> cards.Card:
        """A cause or fix button: decided and authorised by the domain; the answer is the updated feedback."""
        value = data.get("feedback") if isinstance(data, dict) else None
        cc = CommandContext(actor=actor_of(activity), platform="teams", channel="", incident_id=None, origin=None,
                            principals=principals_of(activity))
        reply = await feedback_click(self.ctx, value if isinstance(value, str) else "", cc)
        if reply.ephemeral:
            return cards.error_card("Not recorded", reply.text)
        incident_id = str(value).split("|", 1)[0].upper()
        st = await feedback_state(self.ctx.db, incident_id, self.ctx.settings.memory.edit_window_s)
        card = cards.render_message(feedback_message(st))
        card["body"].insert(0, cards.text_block(reply.text, color="Good", weight="Bolder"))
        return card

    async def ack_card(self, activity: Activity, data: Any) -> cards.Card:
        """The Acknowledge button: the ``ack`` command's domain path; the answer is the incident card as it now
        stands (who acknowledged), with the outcome on top."""
        value = data.get("incident_id") if isinstance(data, dict) else None
        cc = CommandContext(actor=actor_of(activity), platform="teams", channel="", incident_id=None, origin=None)
        reply = await ack_click(self.ctx, value if isinstance(value, str) else "", cc)
        if reply.ephemeral:
            return cards.error_card(reply.title or "Not acknowledged", reply.text)
        card = await load_card(self.ctx.db, str(value).upper(), self.ctx.settings.server.public_url)
        if card is None:
            return cards.error_card("Unknown incident", reply.text)
        out = cards.incident_card(card)
        out["body"].insert(0, cards.text_block(reply.text, color="Good", weight="Bolder"))
        return out

    async def on_adaptive_card_invoke(
        self, turn_context: TurnContext, invoke_value: AdaptiveCardInvokeValue
    ) -> AdaptiveCardInvokeResponse:
        action = invoke_value.action or {}
        verb, data = action.get("verb"), action.get("data")
        if verb in cards.DECISION_VERBS:
            card = await self.decision_card(turn_context.activity, str(verb), data)
        elif verb == cards.VERB_FEEDBACK:
            card = await self.feedback_card(turn_context.activity, data)
        elif verb == cards.VERB_ACK:
            card = await self.ack_card(turn_context.activity, data)
        elif verb == cards.VERB_REFRESH:
            card = await self.refresh_card(turn_context.activity, data)
        else:
            card = cards.error_card("Unknown action", f"onwatch does not know the action {str(verb)[:40]!r}.")
        return AdaptiveCardInvokeResponse(status_code=200, type=cards.CARD_CONTENT_TYPE, value=card)

    async def _submit_fallback(self, turn_context: TurnContext, value: dict[str, Any]) -> None:
        """An ``Action.Submit`` from a client without Universal Actions: same decision, answered as a reply."""
        card = await self.decision_card(turn_context.activity, str(value["verb"]), value)
        await turn_context.send_activity(card_activity(card, "onwatch decision"))
