"""``TeamsAdapter``: the hub's chat adapter for Microsoft Teams (proactive posts and card updates).

An incident is announced as a new post in the ``teams.channel`` channel (``POST /v3/conversations`` with
the channel in ``channelData``), which opens a thread whose conversation id is
``<channel>;messageid=<root id>``; replies go to that conversation and cards are edited in place with
``PUT .../activities/<id>``. An incident born from a Teams message (``investigate ...``) lives in that
message's thread instead. Every call goes through ``CloudAdapter`` (``continue_conversation`` /
``create_conversation``) so tokens and service URLs are the SDK's business.

A failed delivery is logged and never raised into the domain: chat is an edge, and an investigation
or an approval must not fail because Teams was unreachable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from botbuilder.core import TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    Attachment,
    ChannelAccount,
    ConversationParameters,
    ConversationReference,
)
from msrest.exceptions import ClientRequestError, HttpOperationError

from bot.chat.teams import cards, images, refs
from bot.config import TeamsSettings
from bot.context import AppContext
from bot.errors import OnwatchError
from bot.messages.model import Chart, IncidentCard, Message, ProposalBlock
from bot.ports import ThreadOrigin
from bot.store.db import Database
from bot.store.models import Proposal

log = logging.getLogger(__name__)

T = TypeVar("T")
ApproverLookup = Callable[[str], Awaitable[tuple[str, ...]]]
DELIVERY_ERRORS = (ClientRequestError, HttpOperationError, aiohttp.ClientError, TimeoutError)


class TeamsDeliveryError(OnwatchError):
    """The Bot Connector refused or did not answer a proactive call."""


def card_activity(card: cards.Card, summary: str = "") -> Activity:
    return Activity(
        type=ActivityTypes.message,
        attachments=[Attachment(content_type=cards.CARD_CONTENT_TYPE, content=card)],
        summary=cards.escape(summary[:300]) or None,
    )


def message_activity(message: Message, viewer: str | None = None, notice: str = "") -> Activity:
    """A neutral message as a Teams activity: markdown text when it is only text, otherwise one card."""
    if cards.is_plain(message) and not notice:
        return Activity(type=ActivityTypes.message, text=cards.plain_text(message), text_format="markdown")
    return card_activity(cards.render_message(message, viewer, notice), message.fallback)


def approvers_lookup(ctx: AppContext) -> ApproverLookup:
    """Who may decide a proposal (``ctx.remediation.approvers_for``), for the cards' ``refresh.userIds``."""

    async def lookup(proposal_id: str) -> tuple[str, ...]:
        approvers_for = getattr(ctx.remediation, "approvers_for", None)
        if approvers_for is None:
            return ()
        async with ctx.db.session() as s:
            proposal = await s.get(Proposal, proposal_id)
        return tuple(approvers_for(proposal)) if proposal is not None else ()

    return lookup


async def prepared(message: Message, lookup: ApproverLookup | None) -> Message:
    """A message ready for Teams: proposal approvers filled in, charts small enough to travel inline."""
    message = await with_approvers(message, lookup)
    if message.attachments or any(isinstance(b, Chart) for b in message.blocks):
        message = await asyncio.to_thread(images.fit_message, message)
    return message


async def with_approvers(message: Message, lookup: ApproverLookup | None) -> Message:
    """Fill in the approvers of pending proposal blocks that do not name them."""
    if lookup is None or not any(isinstance(b, ProposalBlock) and b.actions and not b.approvers
                                 for b in message.blocks):
        return message
    blocks = []
    for b in message.blocks:
        if isinstance(b, ProposalBlock) and b.actions and not b.approvers:
            b = dataclasses.replace(b, approvers=await lookup(b.proposal_id))
        blocks.append(b)
    return dataclasses.replace(message, blocks=tuple(blocks))


def is_channel(reference: dict[str, Any]) -> bool:
    conv = reference.get("conversation") or {}
    if conv.get("conversationType"):
        return str(conv["conversationType"]) == "channel"
    cid = str(conv.get("id", ""))
    return cid.startswith("19:") and ("@thread.tacv2" in cid or "@thread.skype" in cid)


class TeamsAdapter:
    """Implements ``bot.chat.hub.ChatAdapter`` for Teams."""

    platform = "teams"

    def __init__(self, db: Database, settings: TeamsSettings, cloud: CloudAdapter, *, timeout_s: float = 20.0,
                 approvers: ApproverLookup | None = None):
        self.db = db
        self.settings = settings
        self.cloud = cloud
        self.timeout_s = timeout_s
        self.approvers = approvers

    # ---- the SDK calls

    def _check_service_url(self, url: str | None) -> None:
        """Only Bot Framework hosts are called, whatever a stored reference says (``teams.allows_service_host``)."""
        host = urlsplit(url or "").hostname or ""
        if not self.settings.allows_service_host(host):
            raise TeamsDeliveryError(f"refusing to call serviceUrl host {host[:100]!r}: not a Bot Framework host")

    async def _continue(self, reference: dict[str, Any], logic: Callable[[TurnContext], Awaitable[T]]) -> T:
        result: list[T] = []

        async def callback(turn: TurnContext) -> None:
            result.append(await logic(turn))

        ref = ConversationReference().deserialize(reference)
        self._check_service_url(ref.service_url)
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.cloud.continue_conversation(ref, callback, bot_app_id=self.settings.app_id)
        except DELIVERY_ERRORS as exc:
            raise TeamsDeliveryError(f"Teams call to {ref.service_url} failed: {exc}") from exc
        if not result:
            raise TeamsDeliveryError("the proactive turn did not run")
        return result[0]

    async def send(self, reference: dict[str, Any], conversation_id: str, activity: Activity) -> str:
        """Post ``activity`` into ``conversation_id`` (a chat, or a channel thread); return its id."""

        async def logic(turn: TurnContext) -> str:
            TurnContext.apply_conversation_reference(activity, TurnContext.get_conversation_reference(turn.activity))
            activity.reply_to_id = None
            client = turn.turn_state[self.cloud.BOT_CONNECTOR_CLIENT_KEY]
            resp = await client.conversations.send_to_conversation(conversation_id, activity)
            return str(getattr(resp, "id", "") or "")

        return await self._continue(refs.with_conversation(reference, conversation_id), logic)

    async def update(self, reference: dict[str, Any], conversation_id: str, message_id: str, activity: Activity) -> None:
        async def logic(turn: TurnContext) -> None:
            activity.id = message_id
            await turn.update_activity(activity)

        await self._continue(refs.with_conversation(reference, conversation_id), logic)

    async def new_channel_thread(self, reference: dict[str, Any], channel_id: str, activity: Activity) -> tuple[str, str]:
        """Start a new post in a channel; return (thread conversation id, root message id)."""
        conv = reference.get("conversation") or {}
        tenant = conv.get("tenantId") or self.settings.tenant_id
        bot = reference.get("bot") or {}
        params = ConversationParameters(
            is_group=True,
            bot=ChannelAccount(id=bot.get("id"), name=bot.get("name")),
            channel_data={"channel": {"id": channel_id}, **({"tenant": {"id": tenant}} if tenant else {})},
            activity=activity,
            tenant_id=tenant,
        )
        created: list[tuple[str, str]] = []
        self._check_service_url(reference.get("serviceUrl"))

        async def callback(turn: TurnContext) -> None:
            thread_id = str(turn.activity.conversation.id)
            _, _, from_id = thread_id.partition(refs.THREAD_SEP)
            created.append((thread_id, from_id or str(turn.activity.id)))

        try:
            async with asyncio.timeout(self.timeout_s):
                await self.cloud.create_conversation(
                    self.settings.app_id, callback, params, channel_id=reference.get("channelId") or "msteams",
                    service_url=reference.get("serviceUrl"),
                )
        except DELIVERY_ERRORS as exc:
            raise TeamsDeliveryError(f"creating a Teams channel post failed: {exc}") from exc
        if not created:
            raise TeamsDeliveryError("the Bot Connector did not return the new conversation")
        thread_id, root_id = created[0]
        if refs.THREAD_SEP not in thread_id:  # some connectors answer with the bare channel id
            thread_id = refs.thread_of(channel_id, root_id)
        return thread_id, root_id

    async def post_to_channel(self, message: Message) -> bool:
        """A message for the whole incident channel (the weekly report): a new post in ``teams.channel``, charts
        inline. False when it could not be posted (no channel, no stored reference, a delivery error)."""
        channel = self.settings.channel
        stored = await refs.load_reference(self.db, channel) if channel else None
        if not channel or stored is None:
            log.warning("teams: %s not posted: teams.channel is not set or has no conversation reference yet",
                        message.fallback[:60])
            return False
        activity = message_activity(await prepared(message, None))  # the chart shrunk to travel inline
        try:
            if is_channel(stored):
                await self.new_channel_thread(stored, channel, activity)
            else:
                await self.send(stored, channel, activity)
        except TeamsDeliveryError as exc:
            log.warning("teams: posting %s failed: %s", message.fallback[:60], exc)
            return False
        return True

    async def say(self, channel: str, content: str) -> str | None:
        """A plain note (escaped text) as a new post in a channel, or a message in a chat; its id, or None
        when it could not be posted (no stored reference for ``channel`` yet, or Teams refused)."""
        base = await refs.load_reference(self.db, channel)
        if base is None:
            log.warning("teams: note not posted: no conversation reference for %s yet (install the app in that "
                        "team, or mention the bot there once)", channel[:100])
            return None
        activity = Activity(type=ActivityTypes.message, text=cards.escape(content), text_format="markdown")
        try:
            if is_channel(base):
                _, root_id = await self.new_channel_thread(base, channel, activity)
                return root_id
            return await self.send(base, channel, activity) or None
        except TeamsDeliveryError as exc:
            log.warning("teams: posting a note to %s failed: %s", channel[:100], exc)
            return None

    # ---- ChatAdapter

    async def announce(self, card: IncidentCard, origin: ThreadOrigin | None) -> None:
        if await refs.thread_for_incident(self.db, card.incident_id) is not None:
            await self.update_card(card)
            return
        activity = card_activity(cards.incident_card(card), f"{card.incident_id}: {card.title}")
        if origin is not None and origin.platform == self.platform and origin.reference:
            base, channel, thread = dict(origin.reference), origin.channel, origin.thread_id
        else:
            channel_opt = self.settings.channel
            if not channel_opt:
                log.info("teams: %s not announced (teams.channel is not set)", card.incident_id)
                return
            channel, thread = channel_opt, ""
            stored = await refs.load_reference(self.db, channel)
            if stored is None:
                log.warning("teams: cannot announce %s: no conversation reference for teams.channel %s yet "
                            "(install the app in that team, or mention the bot there once)", card.incident_id, channel)
                return
            base = stored
        if not await refs.claim_thread(self.db, card.incident_id, channel):
            return  # another task or replica is announcing it
        try:
            if thread:
                posted_in = thread
                root_id = await self.send(base, thread, activity)
            elif is_channel(base):
                thread, root_id = await self.new_channel_thread(base, channel, activity)
                posted_in = thread
            else:  # a group or personal chat: the chat itself is the incident's thread
                thread = posted_in = channel
                root_id = await self.send(base, channel, activity)
        except TeamsDeliveryError as exc:
            await refs.release_thread(self.db, card.incident_id)
            log.warning("teams: announcing %s failed: %s", card.incident_id, exc)
            return
        await refs.complete_thread(self.db, card.incident_id, thread, root_id, refs.with_conversation(base, thread))
        await refs.remember_message(self.db, f"incident:{card.incident_id}", card.incident_id, posted_in, root_id)

    async def update_card(self, card: IncidentCard) -> None:
        thread = await refs.thread_for_incident(self.db, card.incident_id)
        ref = await refs.find_message(self.db, f"incident:{card.incident_id}")
        if thread is None or ref is None:
            return
        activity = card_activity(cards.incident_card(card), f"{card.incident_id}: {card.title}")
        try:
            await self.update(thread.reference, ref.channel, ref.message_id, activity)
        except TeamsDeliveryError as exc:
            log.warning("teams: updating the card of %s failed: %s", card.incident_id, exc)

    async def post(self, incident_id: str, message: Message) -> None:
        if message.ephemeral_to:
            return  # Teams has no ephemeral channel messages; command replies answer the asker directly
        thread = await refs.thread_for_incident(self.db, incident_id)
        if thread is None:
            log.debug("teams: %s has no Teams thread; message not posted", incident_id)
            return
        if message.key and await refs.find_message(self.db, message.key) is not None:
            await self.replace(incident_id, message.key, message)  # posted before: edit, don't repeat
            return
        try:
            activity = message_activity(await prepared(message, self.approvers))
            message_id = await self.send(thread.reference, thread.thread_id, activity)
        except TeamsDeliveryError as exc:
            log.warning("teams: posting to %s failed: %s", incident_id, exc)
            return
        if message.key and message_id:
            await refs.remember_message(self.db, message.key, incident_id, thread.thread_id, message_id)

    async def replace(self, incident_id: str, key: str, message: Message) -> None:
        ref = await refs.find_message(self.db, key)
        thread = await refs.thread_for_incident(self.db, incident_id)
        if ref is None or thread is None:
            await self.post(incident_id, message)
            return
        try:
            activity = message_activity(await prepared(message, self.approvers))
            await self.update(thread.reference, ref.channel, ref.message_id, activity)
        except TeamsDeliveryError as exc:
            log.warning("teams: updating %s in %s failed: %s", key, incident_id, exc)
