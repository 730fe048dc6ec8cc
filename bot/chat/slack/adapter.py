"""``SlackAdapter``: where incidents live in Slack, and how onwatch writes there as a good citizen.

* One root message per incident (the card), edited in place. Rapid edits of one message are
  coalesced: the latest content wins and is sent after a short quiet period (``debounce_s``).
* Incidents born from an alert post are answered in that post's thread; others are announced in
  ``slack.incident_channel``. The thread is stored as a ``ChatThread`` row; messages that may be
  edited later (proposals) as ``ChatMessageRef`` rows, so any replica can edit them.
* 429s are retried after ``Retry-After`` by slack_sdk's rate-limit retry handler; connection resets
  and 5xx are retried once. A Slack failure never breaks the domain flow that caused the post: it is
  logged and counted (the database stays the source of truth).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.chat.hub import load_card
from bot.chat.slack.render import FileOut, Rendered, render_card, render_message, render_text
from bot.config import Settings
from bot.messages.model import IncidentCard, Message
from bot.ports import ThreadOrigin
from bot.store.db import Database
from bot.store.models import ChatMessageRef, ChatThread, Incident

log = logging.getLogger(__name__)

PLATFORM = "slack"
SLACK_ERRORS = (SlackApiError, SlackClientError, ClientError, TimeoutError)


def make_client(settings: Settings) -> AsyncWebClient:
    """The Web API client: ``slack.api_url`` (tests point it at a fake), 429/5xx/connection retries."""
    s = settings.slack
    token = s.bot_token.get_secret_value() if s.bot_token else None
    return AsyncWebClient(
        token=token,
        base_url=s.api_url if s.api_url.endswith("/") else s.api_url + "/",
        timeout=30,
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncConnectionErrorRetryHandler(max_retry_count=1),
            AsyncServerErrorRetryHandler(max_retry_count=1),
        ],
    )


@dataclass
class _Pending:
    channel: str
    ts: str
    rendered: Rendered


class SlackAdapter:
    """Implements ``bot.chat.hub.ChatAdapter`` for Slack."""

    platform = PLATFORM

    def __init__(self, settings: Settings, db: Database, client: AsyncWebClient | None = None,
                 debounce_s: float = 0.3) -> None:
        self.settings = settings
        self.db = db
        self.client = client or make_client(settings)
        self.debounce_s = debounce_s
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._flushers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._names: dict[str, tuple[float, str]] = {}
        self.failures = 0
        self.bolt: Any = None  # the slack_bolt AsyncApp, built once by bot.chat.slack.app.bolt_app

    # ----------------------------------------------------------------- lookups

    async def thread_for(self, incident_id: str) -> ChatThread | None:
        async with self.db.session() as s:
            return (await s.exec(select(ChatThread).where(ChatThread.platform == PLATFORM,
                                                          ChatThread.incident_id == incident_id))).first()

    async def incident_for_thread(self, channel: str, thread_ts: str | None) -> str | None:
        """The incident whose thread this is (by the thread's ts, or its root card's ts)."""
        if not thread_ts:
            return None
        async with self.db.session() as s:
            row = (await s.exec(select(ChatThread).where(
                ChatThread.platform == PLATFORM, ChatThread.channel == channel,
                (col(ChatThread.thread_id) == thread_ts) | (col(ChatThread.root_message_id) == thread_ts)))).first()
        return row.incident_id if row else None

    async def open_incidents_in(self, channel: str) -> list[str]:
        async with self.db.session() as s:
            rows = (await s.exec(select(ChatThread.incident_id).join(Incident, col(Incident.id) == ChatThread.incident_id)
                                 .where(ChatThread.platform == PLATFORM, ChatThread.channel == channel,
                                        Incident.status == "open"))).all()
        return list(rows)

    async def display_name(self, user_id: str, fallback: str = "") -> str:
        """A user's display name from ``users.info`` (cached for an hour); the fallback when Slack fails."""
        hit = self._names.get(user_id)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            resp = await self.client.users_info(user=user_id)
        except SLACK_ERRORS as exc:
            log.info("users.info %s failed: %s", user_id, exc)
            return fallback or user_id
        user = resp.get("user") or {}
        profile = user.get("profile") or {}
        name = str(profile.get("display_name") or profile.get("real_name") or user.get("name") or fallback or user_id)
        self._names[user_id] = (time.monotonic() + 3600, name)
        return name

    # ----------------------------------------------------------------- ChatAdapter

    async def announce(self, card: IncidentCard, origin: ThreadOrigin | None) -> None:
        if await self.thread_for(card.incident_id) is not None:
            await self.update_card(card)
            return
        rendered = render_card(card)
        if origin is not None and origin.platform == PLATFORM:
            channel, thread_ts = origin.channel, origin.thread_id
            ts = await self._post(channel, rendered, thread_ts=thread_ts)
        else:
            channel = self.settings.slack.incident_channel or ""
            if not channel:
                log.warning("incident %s not announced in Slack: slack.incident_channel is not set", card.incident_id)
                return
            ts = await self._post(channel, rendered)
            thread_ts = ts or ""
        if ts is None:
            return
        try:
            async with self.db.begin() as s:
                s.add(ChatThread(incident_id=card.incident_id, platform=PLATFORM, channel=channel,
                                 thread_id=thread_ts, root_message_id=ts,
                                 reference={"origin": bool(origin)}))
        except IntegrityError:
            log.info("incident %s was announced concurrently; keeping the first thread", card.incident_id)

    async def update_card(self, card: IncidentCard) -> None:
        th = await self.thread_for(card.incident_id)
        if th is None or not th.root_message_id:
            return
        self._schedule(th.channel, th.root_message_id, render_card(card))

    async def post(self, incident_id: str, message: Message) -> None:
        th = await self._ensure_thread(incident_id)
        if th is None:
            return
        if message.key:
            ref = await self._ref(message.key)
            if ref is not None:  # already posted (a re-delivery, a second replica): edit, don't repeat
                await self.replace(incident_id, message.key, message)
                return
        rendered = render_message(message)
        if message.ephemeral_to:
            await self.ephemeral(th.channel, message.ephemeral_to, rendered, thread_ts=th.thread_id)
            return
        ts: str | None = None
        if rendered.blocks:
            ts = await self._post(th.channel, rendered, thread_ts=th.thread_id)
        for f in rendered.files:
            file_id = await self.upload(th.channel, th.thread_id, f)
            ts = ts or (f"file:{file_id}" if file_id else None)  # a file-only message (a chart) is kept too
        if message.key and ts:
            try:
                async with self.db.begin() as s:
                    s.add(ChatMessageRef(platform=PLATFORM, key=message.key, incident_id=incident_id,
                                         channel=th.channel, message_id=ts))
            except IntegrityError:
                log.info("message %s was stored concurrently", message.key)

    async def replace(self, incident_id: str, key: str, message: Message) -> None:
        ref = await self._ref(key)
        if ref is None:
            await self.post(incident_id, message)
            return
        if ref.message_id.startswith("file:"):
            return  # an uploaded file (a chart) is not edited
        rendered = render_message(message)
        rendered.files.clear()  # files were uploaded with the first post
        if rendered.blocks:
            self._schedule(ref.channel, ref.message_id, rendered)

    async def post_to_channel(self, message: Message) -> bool:
        """A message for the whole incident channel, not one incident's thread (the weekly report): posted in
        ``slack.incident_channel`` with its charts uploaded right under it. False when it could not be posted."""
        channel = self.settings.slack.incident_channel
        if not channel:
            log.info("slack: %s not posted (slack.incident_channel is not set)", message.fallback[:60])
            return False
        rendered = render_message(message)
        if await self._post(channel, rendered) is None:
            return False
        for f in rendered.files:
            await self.upload(channel, None, f)
        return True

    # ----------------------------------------------------------------- writes

    async def ephemeral(self, channel: str, user: str, content: Rendered | str, thread_ts: str | None = None) -> None:
        """A reply only ``user`` sees (errors they caused, refusals, command results)."""
        rendered = content if isinstance(content, Rendered) else render_text(content)
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, text=rendered.text,
                                                 blocks=rendered.blocks, thread_ts=thread_ts)
        except SLACK_ERRORS as exc:
            self._failed("chat.postEphemeral", exc)

    async def say(self, channel: str, content: Rendered | str, thread_ts: str | None = None) -> str | None:
        rendered = content if isinstance(content, Rendered) else render_text(content)
        return await self._post(channel, rendered, thread_ts=thread_ts)

    async def upload(self, channel: str, thread_ts: str | None, f: FileOut) -> str | None:
        """Upload a file into the thread (files upload v2); its file id, or None when Slack refused."""
        try:
            resp = await self.client.files_upload_v2(channel=channel, thread_ts=thread_ts, content=f.content,
                                                     filename=f.filename, title=f.title, alt_txt=f.title[:1000])
        except SLACK_ERRORS as exc:
            self._failed("files.upload", exc)
            return None
        file = resp.get("file") or {}
        return str(file.get("id") or "") or None

    async def _post(self, channel: str, rendered: Rendered, thread_ts: str | None = None) -> str | None:
        try:
            resp = await self.client.chat_postMessage(channel=channel, text=rendered.text, blocks=rendered.blocks,
                                                      thread_ts=thread_ts, unfurl_links=False, unfurl_media=False)
        except SLACK_ERRORS as exc:
            self._failed("chat.postMessage", exc)
            return None
        return str(resp.get("ts") or "") or None

    async def _update(self, channel: str, ts: str, rendered: Rendered) -> None:
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=rendered.text, blocks=rendered.blocks)
        except SLACK_ERRORS as exc:
            self._failed("chat.update", exc)

    def _failed(self, method: str, exc: BaseException) -> None:
        self.failures += 1
        detail = exc.response.get("error") if isinstance(exc, SlackApiError) else str(exc)
        log.warning("Slack %s failed: %s", method, detail)

    # ----------------------------------------------------------------- coalescing edits

    def _schedule(self, channel: str, ts: str, rendered: Rendered) -> None:
        """Queue an edit; a burst of edits of one message becomes one ``chat.update`` with the latest content."""
        key = (channel, ts)
        self._pending[key] = _Pending(channel, ts, rendered)
        task = self._flushers.get(key)
        if task is None or task.done():
            self._flushers[key] = asyncio.create_task(self._flush_one(key), name=f"slack-edit-{ts}")

    async def _flush_one(self, key: tuple[str, str]) -> None:
        try:
            while key in self._pending:
                await asyncio.sleep(self.debounce_s)
                item = self._pending.pop(key, None)
                if item is not None:
                    await self._update(item.channel, item.ts, item.rendered)
        finally:
            self._flushers.pop(key, None)

    async def flush(self) -> None:
        """Send every queued edit now (tests; shutdown)."""
        while self._flushers:
            await asyncio.gather(*list(self._flushers.values()), return_exceptions=True)

    async def aclose(self) -> None:
        await self.flush()

    # ----------------------------------------------------------------- helpers

    async def _ref(self, key: str) -> ChatMessageRef | None:
        async with self.db.session() as s:
            return (await s.exec(select(ChatMessageRef).where(ChatMessageRef.platform == PLATFORM,
                                                              ChatMessageRef.key == key))).first()

    async def _ensure_thread(self, incident_id: str) -> ChatThread | None:
        """The incident's thread; announced now (in the incident channel) if it was never announced."""
        th = await self.thread_for(incident_id)
        if th is not None:
            return th
        card = await load_card(self.db, incident_id, self.settings.server.public_url)
        if card is None:
            return None
        await self.announce(card, None)
        return await self.thread_for(incident_id)
