"""The slack-bolt ``AsyncApp``: alert posts → triage, ``/investigate`` and mentions → commands, buttons → decisions.

Every listener acks first (Slack wants an answer within 3 seconds) and does the work after. A
delivery seen before — an event re-delivered with ``X-Slack-Retry-Num`` (same ``event_id``), a button
click or slash command replayed (same ``trigger_id``) — is acknowledged and not handled again: its key is
recorded in the database (``bot.chat.seen``), so a restart or another replica drops it too. The domain
is idempotent underneath anyway (alert dedup by fingerprint, one conditional update per decision).
Nothing a user types is executed: it is parsed into a verb by ``bot.chat.commands``. Button values are
opaque proposal ids; everything else is looked up and the clicker is authorised on the server by the
remediation service.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.audit import Actor
from bot.chat.commands import (
    FEEDBACK_VERBS,
    SILENCE_VERBS,
    CommandContext,
    CommandReply,
    ack_click,
    feedback_click,
    handle_command,
)
from bot.chat.seen import command_key, first_time
from bot.chat.slack.adapter import SlackAdapter
from bot.chat.slack.principals import UserGroupCache
from bot.chat.slack.render import Rendered, render_message
from bot.context import AppContext
from bot.intake.posts import ChatPost, parse_alert_post
from bot.ports import DecisionVerb, ThreadOrigin
from bot.store.models import Proposal

log = logging.getLogger(__name__)

PROPOSAL_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MENTION = re.compile(r"<@[A-Z0-9]+(\|[^>]*)?>")
# message subtypes that are edits, deletions or housekeeping, never a new alert post
IGNORED_SUBTYPES = frozenset({"message_changed", "message_deleted", "message_replied", "channel_join",
                              "channel_leave", "channel_topic", "channel_purpose", "channel_name",
                              "thread_broadcast", "bot_add", "bot_remove", "pinned_item", "unpinned_item"})


def delivery_key(body: dict[str, Any], signature: str) -> str | None:
    """What identifies one Slack delivery, so its replays can be recognised; None when nothing does.

    An event's ``event_id`` stays the same across Slack's retries; every click, slash command and
    shortcut gets its own ``trigger_id`` (two clicks are two triggers, one click replayed is one). A slash
    command without a trigger id (not seen from Slack, but possible from a hand-made request) falls back
    to its signature, which the 5-minute window makes unique enough."""
    if body.get("type") == "event_callback":
        event_id = body.get("event_id")
        return command_key("slack", f"event:{event_id}") if event_id else None
    trigger = body.get("trigger_id")
    if trigger:
        return command_key("slack", f"trigger:{trigger}")
    if body.get("command") and signature:
        return command_key("slack", f"signature:{signature}")
    return None


def _reply_rendered(reply: CommandReply) -> Rendered | str:
    return render_message(reply.message) if reply.message is not None else reply.text


def bolt_app(ctx: AppContext, adapter: SlackAdapter) -> AsyncApp:
    """The adapter's bolt app, built once and shared by the HTTP route and Socket Mode."""
    if adapter.bolt is None:
        adapter.bolt = build_app(ctx, adapter)
    app: AsyncApp = adapter.bolt
    return app


def build_app(ctx: AppContext, adapter: SlackAdapter) -> AsyncApp:
    s = ctx.settings.slack
    secret = s.signing_secret.get_secret_value() if s.signing_secret else ""
    app = AsyncApp(
        client=adapter.client,
        signing_secret=secret,
        request_verification_enabled=bool(secret),  # Socket Mode has no signatures; HTTP mode always does
        name="onwatch",
        process_before_response=False,
    )
    groups = UserGroupCache(adapter.client, s.usergroup_cache_s)
    alert_channels = set(s.alert_channels)

    @app.middleware
    async def drop_redeliveries(body: dict[str, Any], req: AsyncBoltRequest,
                                next: Any) -> BoltResponse | None:  # noqa: A002 - bolt's name
        # runs after bolt's signature check, so an unsigned request cannot mark an id as seen
        signature = str((req.headers.get("x-slack-signature") or [""])[0])
        key = delivery_key(body, signature)
        if key is not None and not await first_time(ctx.db, key):
            retry = (req.headers.get("x-slack-retry-num") or [""])[0]
            log.info("Slack delivered %s again%s; already handled", key[:24], f" (retry {retry})" if retry else "")
            return BoltResponse(status=200, body="")
        await next()
        return None

    # ------------------------------------------------------------- alert posts

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        channel = str(event.get("channel", ""))
        if channel not in alert_channels or event.get("subtype") in IGNORED_SUBTYPES:
            return
        ts = str(event.get("ts", ""))
        if event.get("thread_ts") and event.get("thread_ts") != ts:
            return  # a reply in a thread is conversation, not a new alert
        if ctx.triage is None:
            log.warning("alert post in %s ignored: triage is not running", channel)
            return
        post = ChatPost(platform="slack", channel=channel, ts=ts, user=str(event.get("user") or ""),
                        bot_id=str(event.get("bot_id") or ""), username=str(event.get("username") or ""),
                        text=str(event.get("text") or ""), attachments=list(event.get("attachments") or []),
                        blocks=list(event.get("blocks") or []))
        alerts = parse_alert_post(post)
        if not alerts:
            return
        await ctx.triage.ingest(alerts, origin=ThreadOrigin("slack", channel, ts))

    # ------------------------------------------------------------- mentions and /investigate

    def approval_identities() -> set[str]:
        return set(ident for members in ctx.settings.approvals.groups.values() for ident in members)

    async def run_command(text: str, user: str, user_name: str, channel: str, thread_ts: str | None,
                          origin: ThreadOrigin | None) -> CommandReply:
        incident_id = await adapter.incident_for_thread(channel, thread_ts)
        if incident_id is None and thread_ts is None:
            open_here = await adapter.open_incidents_in(channel)
            if len(open_here) == 1:
                incident_id = open_here[0]
        actor = Actor("slack", user, user_name)
        verb = text.split(maxsplit=1)[0].lower() if text.strip() else ""
        principals = await groups.principals(user, approval_identities()) \
            if verb in FEEDBACK_VERBS or verb in SILENCE_VERBS else frozenset()
        cc = CommandContext(actor=actor, platform="slack", channel=channel, incident_id=incident_id, origin=origin,
                            principals=principals)
        return await handle_command(ctx, text, cc)

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any]) -> None:
        channel, user = str(event.get("channel", "")), str(event.get("user", ""))
        ts = str(event.get("ts", ""))
        thread_ts = str(event["thread_ts"]) if event.get("thread_ts") else None
        text = MENTION.sub("", str(event.get("text") or "")).strip()
        name = await adapter.display_name(user) if user else ""
        reply = await run_command(text, user, name, channel, thread_ts,
                                  ThreadOrigin("slack", channel, thread_ts or ts))
        if reply.ephemeral:
            await adapter.ephemeral(channel, user, _reply_rendered(reply), thread_ts=thread_ts)
        else:
            await adapter.say(channel, _reply_rendered(reply), thread_ts=thread_ts or ts)

    @app.command("/investigate")
    async def on_investigate(ack: Any, command: dict[str, Any]) -> None:
        await ack()  # within 3 s; a replay never gets here (drop_redeliveries)
        channel, user = str(command.get("channel_id", "")), str(command.get("user_id", ""))
        text = str(command.get("text") or "").strip()
        reply = await run_command(f"investigate {text}".strip(), user, str(command.get("user_name") or ""),
                                  channel, None, None)
        await adapter.ephemeral(channel, user, _reply_rendered(reply))

    # ------------------------------------------------------------- Approve / Reject

    async def decide(body: dict[str, Any], action: dict[str, Any], decision: DecisionVerb) -> None:
        user_id, user_name, channel, thread_ts = _clicker(body)
        proposal_id = str(action.get("value") or "")
        if not PROPOSAL_ID.match(proposal_id):
            await adapter.ephemeral(channel, user_id, "That button is malformed; ask for the proposal again with "
                                    "`@onwatch status`.", thread_ts=thread_ts)
            return
        if ctx.remediation is None:
            await adapter.ephemeral(channel, user_id, "Remediation is not running in this onwatch; nothing was "
                                    "decided.", thread_ts=thread_ts)
            return
        name = await adapter.display_name(user_id, user_name)
        candidates = set(ident for members in ctx.settings.approvals.groups.values() for ident in members)
        candidates |= await _proposal_approvers(ctx, proposal_id)
        principals = await groups.principals(user_id, candidates)
        outcome = await ctx.remediation.decide(proposal_id, Actor("slack", user_id, name), decision, principals)
        if outcome.status not in ("approved", "rejected"):
            await adapter.ephemeral(channel, user_id, outcome.message or f"Nothing changed ({outcome.status}).",
                                    thread_ts=thread_ts)

    @app.action("onwatch_approve")
    async def on_approve(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await decide(body, action, "approve")

    @app.action("onwatch_reject")
    async def on_reject(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await decide(body, action, "reject")

    # ------------------------------------------------------------- cause and fix feedback

    @app.action(re.compile(r"^onwatch_feedback_\d{1,2}$"))
    async def on_feedback(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user_id, user_name, channel, thread_ts = _clicker(body)
        name = await adapter.display_name(user_id, user_name)
        principals = await groups.principals(user_id, approval_identities())
        cc = CommandContext(actor=Actor("slack", user_id, name), platform="slack", channel=channel,
                            incident_id=None, origin=None, principals=principals)
        reply = await feedback_click(ctx, str(action.get("value") or ""), cc)
        await adapter.ephemeral(channel, user_id, reply.text, thread_ts=thread_ts)

    # ------------------------------------------------------------- Acknowledge (the incident's root message)

    @app.action("onwatch_ack")
    async def on_ack(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user_id, user_name, channel, thread_ts = _clicker(body)
        name = await adapter.display_name(user_id, user_name)
        cc = CommandContext(actor=Actor("slack", user_id, name), platform="slack", channel=channel,
                            incident_id=None, origin=None)
        reply = await ack_click(ctx, str(action.get("value") or ""), cc)
        if reply.ephemeral:
            await adapter.ephemeral(channel, user_id, reply.text, thread_ts=thread_ts)
        else:
            await adapter.say(channel, reply.text, thread_ts=thread_ts)

    return app


def _clicker(body: dict[str, Any]) -> tuple[str, str, str, str | None]:
    """Who clicked a button, as Slack names them, and where: (user id, user name, channel, thread ts)."""
    user = body.get("user") or {}
    channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
    message = body.get("message") or {}
    return (str(user.get("id", "")), str(user.get("username") or user.get("name") or ""), channel,
            message.get("thread_ts") or message.get("ts"))


async def _proposal_approvers(ctx: AppContext, proposal_id: str) -> set[str]:
    """The proposal's own approver identities (to know which user groups to look up)."""
    async with ctx.db.session() as s:
        proposal = await s.get(Proposal, proposal_id)
    if proposal is None:
        return set()
    approvers_for = getattr(ctx.remediation, "approvers_for", None)
    return set(approvers_for(proposal)) if approvers_for is not None else set()
