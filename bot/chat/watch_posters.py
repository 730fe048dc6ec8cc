"""The chat edge of the watch: a ``WatchPoster`` per platform over the adapter the application already runs.

Slack: a new message in ``slack.incident_channel`` (Block Kit from the same renderer as every message), its
chart uploaded into that message's thread, replies in the thread. Teams: a new post in ``teams.channel``
(an Adaptive Card, the chart inline) whose thread takes the replies; in a group chat, messages in the chat.
A platform without an incident channel gets no poster. Delivery failures are logged by the adapters and
come back as "not posted", never as an exception.

The watch (``bot.watch``) knows no platform; this edge does, and the composition root builds the
posters (``watch_posters``) and hands them to ``WatchService``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.chat.notes import incident_channels
from bot.chat.slack.adapter import SlackAdapter
from bot.chat.slack.render import render_message
from bot.chat.teams import refs
from bot.chat.teams.adapter import TeamsAdapter, TeamsDeliveryError, is_channel, message_activity, prepared
from bot.config import Settings
from bot.messages.model import Message
from bot.watch.model import PostRef
from bot.watch.posting import WatchPoster

log = logging.getLogger(__name__)


class SlackWatchPoster:
    platform = "slack"

    def __init__(self, adapter: SlackAdapter, channel: str):
        self.adapter = adapter
        self.channel = channel

    async def _send(self, channel: str, message: Message, thread: str | None) -> str | None:
        rendered = render_message(message)
        ts = await self.adapter.say(channel, rendered, thread_ts=thread)
        if ts is not None:
            for f in rendered.files:  # the chart (and any overflow) under the post, in its thread
                await self.adapter.upload(channel, thread or ts, f)
        return ts

    async def start(self, message: Message) -> PostRef | None:
        ts = await self._send(self.channel, message, None)
        return PostRef(self.platform, self.channel, ts) if ts else None

    async def reply(self, ref: PostRef, message: Message) -> bool:
        return await self._send(ref.channel, message, ref.thread) is not None


class TeamsWatchPoster:
    platform = "teams"

    def __init__(self, adapter: TeamsAdapter, channel: str):
        self.adapter = adapter
        self.channel = channel

    async def start(self, message: Message) -> PostRef | None:
        stored = await refs.load_reference(self.adapter.db, self.channel)
        if stored is None:
            log.warning("teams: early warning not posted: no conversation reference for %s yet (install the app "
                        "in that team, or mention the bot there once)", self.channel[:100])
            return None
        activity = message_activity(await prepared(message, None))
        try:
            if is_channel(stored):
                thread, _ = await self.adapter.new_channel_thread(stored, self.channel, activity)
            else:  # a group chat: the chat is the thread
                await self.adapter.send(stored, self.channel, activity)
                thread = self.channel
        except TeamsDeliveryError as exc:
            log.warning("teams: posting an early warning failed: %s", exc)
            return None
        return PostRef(self.platform, self.channel, thread)

    async def reply(self, ref: PostRef, message: Message) -> bool:
        stored = await refs.load_reference(self.adapter.db, ref.channel)
        if stored is None:
            return False
        try:
            await self.adapter.send(stored, ref.thread, message_activity(await prepared(message, None)))
        except TeamsDeliveryError as exc:
            log.warning("teams: replying under an early warning failed: %s", exc)
            return False
        return True


def watch_posters(adapters: Iterable[object], settings: Settings) -> list[WatchPoster]:
    """A poster for each running Slack or Teams adapter whose platform has an incident channel."""
    channels = incident_channels(settings)
    out: list[WatchPoster] = []
    for a in adapters:
        if isinstance(a, SlackAdapter) and channels.get("slack"):
            out.append(SlackWatchPoster(a, str(channels["slack"])))
        elif isinstance(a, TeamsAdapter) and channels.get("teams"):
            out.append(TeamsWatchPoster(a, str(channels["teams"])))
    return out
