"""``WatchService``: takes the findings of the proactive checks and keeps one watch item per condition.

``observe`` opens an item once per key (held while it lasts, silenced, or rate-limited per service) and posts
it once to the incident channel of every chat platform with its chart, the changes near its start and its
look-alikes; ``recover``/``close`` close items whose condition no longer holds, with a reply under the post;
``escalate`` (the investigation's ``EarlyWarnings`` hook) joins open items to an incident being investigated
and hands them to it as evidence. Every change is an audit row; see ``bot.watch.store`` for why two replicas
cannot open one key twice.

The item is committed before it is posted (the decision is the database's); a crash between the two leaves an
item that was never posted, logged, rather than a post about nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bot.audit import BOT, Actor
from bot.config import MemorySettings, WatchSettings
from bot.messages.model import Message
from bot.store.db import Database
from bot.store.models import WatchItem
from bot.triage.silences import active as active_silences
from bot.triage.suppress import Window
from bot.watch import compose
from bot.watch.context import gather
from bot.watch.model import PostRef, WatchFinding, WatchKind, WatchOutcome
from bot.watch.posting import WatchPoster
from bot.watch.store import (
    claim,
    close_item,
    escalate_items,
    live_item_by_id,
    live_items,
    silence_windows,
    update_detail,
)
from integrations.base import Sources

log = logging.getLogger(__name__)


class WatchService:
    def __init__(self, settings: WatchSettings, db: Database, posters: Sequence[WatchPoster] = (),
                 sources_factory: Callable[[], Sources] | None = None, memory: MemorySettings | None = None,
                 clock: Callable[[], float] = time.time, maintenance: Sequence[Window] = ()):
        self.settings = settings
        self.maintenance = list(maintenance)  # triage.maintenance: planned work mutes its early warnings too
        self.db = db
        self.posters = list(posters)
        self.sources_factory = sources_factory
        self.memory = memory or MemorySettings()
        self.clock = clock

    # ------------------------------------------------------------------ findings in

    async def observe(self, finding: WatchFinding) -> WatchOutcome:
        """Hold, silence, rate-limit or open (audit, post once) the warning ``finding`` describes."""
        if not self.settings.enabled:
            return WatchOutcome.DISABLED
        now = self.clock()
        windows = [*silence_windows(await active_silences(self.db, now)), *self.maintenance]
        decided = await claim(self.db, finding, self.settings, windows, now)
        if decided.outcome == WatchOutcome.SILENCED:
            log.info("watch: %s not posted: %s", finding.key, decided.suppressed_by)
        if decided.outcome == WatchOutcome.OPENED and decided.item is not None:
            await self._announce(decided.item, finding, now)
        return decided.outcome

    async def recover(self, keys_still_holding: Iterable[str], kind: WatchKind | str,
                      judged: Iterable[str] | None = None) -> list[str]:
        """Close every live item of ``kind`` whose key is not in ``keys_still_holding``; the keys closed here.

        With ``judged`` (the keys the check actually looked at this tick), only those can recover: an item whose
        series was not read (its service no longer reports, or left the check's settings) stays open, since
        no data is not health; ``onwatch watch close`` ends it by hand."""
        holding = set(keys_still_holding)
        looked = None if judged is None else set(judged)
        closed = []
        for item in await live_items(self.db, kind=str(WatchKind(kind))):
            if item.key in holding or (looked is not None and item.key not in looked):
                continue
            if await self._close(item, "recovered"):
                closed.append(item.key)
        return closed

    async def close(self, key: str, reason: str = "recovered", actor: Actor = BOT) -> bool:
        """Close the live item of ``key``; False when there is none (never opened, or closed already)."""
        items = await live_items(self.db, key=key)
        return bool(items) and await self._close(items[0], reason, actor)

    async def close_by_hand(self, item_id: int, reason: str, actor: Actor) -> WatchItem | None:
        """An operator ends a live item (``onwatch watch close``): audited as theirs, a reply says so; the item,
        or None when no live item has that id."""
        item = await live_item_by_id(self.db, item_id)
        if item is None or not await self._close(item, reason, actor):
            return None
        return item

    # ------------------------------------------------------------------ incidents

    async def escalate(self, incident_id: str, services: Sequence[str]) -> list[dict[str, Any]]:
        """The investigation's ``EarlyWarnings`` hook: the open items of ``services`` become escalated to
        ``incident_id`` (audited, "Early warning since ..." in the incident's thread, a reply under each
        item's post), and every item escalated to this incident is returned as evidence."""
        if not services:
            return []
        now_escalated, linked = await escalate_items(self.db, incident_id, sorted(set(services)), self.clock(),
                                                     compose.early_warning_line)
        for item in now_escalated:
            await self._reply(item, compose.escalated_message(item))
        return [compose.evidence_of(item) for item in linked]

    # ------------------------------------------------------------------ chat

    async def _announce(self, item: WatchItem, finding: WatchFinding, now: float) -> None:
        assert item.id is not None
        ctx = await gather(self.db, finding, now, self.settings, self.memory, self.sources_factory)
        message = await compose.opened_message(item, finding, ctx)
        posts: list[PostRef] = []
        for poster in self.posters:
            ref = await poster.start(message)
            if ref is not None:
                posts.append(ref)
        if self.posters and not posts:
            log.warning("watch: item %s (%s) was opened but no chat platform took its post", item.id, item.key)
        await update_detail(self.db, item.id, ctx.to_detail(), [p.to_dict() for p in posts])
        item.posts = [p.to_dict() for p in posts]

    async def _close(self, item: WatchItem, reason: str, actor: Actor = BOT) -> bool:
        assert item.id is not None
        now = self.clock()
        closed = await close_item(self.db, item.id, now, reason, actor)
        if closed is None:
            return False  # another replica (or an earlier call) closed it and replied
        message = (compose.recovered_message(closed, now, reason) if actor == BOT
                   else compose.closed_by_hand_message(closed, now, reason, actor.name or actor.key))
        await self._reply(closed, message)
        return True

    async def _reply(self, item: WatchItem, message: Message) -> None:
        refs = [r for r in (PostRef.from_dict(p) for p in item.posts) if r is not None]
        for poster in self.posters:
            for ref in refs:
                if ref.platform == poster.platform:
                    await poster.reply(ref, message)
