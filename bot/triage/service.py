"""The triage service: a batch of alerts in, one committed transaction, incidents out; then chat.

Every source (webhooks, chat alert posts, the demo) calls ``ingest``. The batch is triaged in one
transaction on the application's engine, the same code on SQLite and PostgreSQL: on PostgreSQL under a
transaction-scoped advisory lock that serialises triage across replicas, on SQLite under the write lock its
``BEGIN IMMEDIATE`` takes. Within one process an ``asyncio.Lock`` queues the batches, so concurrent senders
wait in order instead of in SQLite's busy handler. ``ingest`` returns once the batch is committed; the caller
answers the sender then, so an acknowledged alert is stored, and one not acknowledged is sent again and
deduplicated.

Opened incidents are announced through the chat hub after the commit, in order, by one task beside the
requests (a sender is never kept waiting on Slack); flapping alerts are reported once in their thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

from sqlalchemy.orm import configure_mappers

from bot.audit import BOT, Actor
from bot.context import AppContext
from bot.investigate.service import investigation_rows, request_investigation
from bot.ports import ThreadOrigin
from bot.triage.adhoc import open_adhoc
from bot.triage.alert import AlertIn
from bot.triage.prepared import prepare
from bot.triage.store import TriageStore
from bot.triage.txn import Batch, IngestOutcome, InvestigationRows, PassResult, TriagePass

log = logging.getLogger(__name__)

__all__ = ["IngestOutcome", "TriageService"]

Announcement = tuple[list[tuple[str, ThreadOrigin | None]], list[str], list[tuple[str, str]]]


class TriageService:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.db = ctx.db
        self.settings = ctx.settings.triage
        self.clock: Callable[[], float] = time.time  # injectable for window and cool-off tests
        self._lock = asyncio.Lock()
        self._chat: asyncio.Queue[Announcement] = asyncio.Queue()
        self._announcer: asyncio.Task[None] | None = None
        self._investigation_rows: InvestigationRows = investigation_rows
        configure_mappers()  # once here, not in the first pass (building the first model row configures them)

    async def start(self) -> None:
        """Nothing runs beside the server until the first batch (kept for ``bot.app.running``)."""

    async def drained(self) -> None:
        """Wait until every announcement queued so far is posted (bound it with ``asyncio.timeout``)."""
        await self._chat.join()

    async def aclose(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await self.drained()
        if self._announcer is not None:
            self._announcer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._announcer
            self._announcer = None

    async def ingest(self, alerts: Sequence[AlertIn], *, origin: ThreadOrigin | None = None,
                     actor: Actor | None = None) -> IngestOutcome:
        """Store, dedup, suppress and group one batch; open/reopen/resolve incidents; queue the announcements.

        Returns once the batch is committed (a database failure raises, and nothing of the batch is kept)."""
        out = IngestOutcome(received=len(alerts))
        if not alerts:
            return out
        batch = Batch([prepare(a) for a in alerts], actor or BOT, out)
        async with self._lock:
            started = time.perf_counter()
            now = self.clock()
            async with self.db.engine.begin() as conn:
                result: PassResult = await conn.run_sync(
                    lambda c: TriagePass(TriageStore(c, self.db.is_postgres), self.settings, [batch], now,
                                         self._investigation_rows).run())
            self.ctx.metrics.triage_pass_seconds.observe(time.perf_counter() - started)
        for source, n in Counter(a.source for a in alerts).items():
            self.ctx.metrics.alerts.labels(source).inc(n)
        if out.opened:
            self.ctx.jobs.wakeup.set()
        if out.opened or result.updated or result.flap_notes:
            self._chat.put_nowait(([(i, origin) for i in out.opened], result.updated, result.flap_notes))
            if self._announcer is None or self._announcer.done():
                self._announcer = asyncio.create_task(self._announce_all(), name="onwatch-triage-chat")
        return out

    async def _announce_all(self) -> None:
        """Post what the commits queued, in order. Under a storm the queue is taken whole each time, so an
        incident updated by many batches is re-rendered once, not once per batch."""
        while True:
            items = [await self._chat.get()]
            while not self._chat.empty():
                items.append(self._chat.get_nowait())
            opened = [o for item in items for o in item[0]]
            just_opened = {i for i, _ in opened}
            updated = [i for i in dict.fromkeys(u for item in items for u in item[1]) if i not in just_opened]
            try:
                await self._announce(opened, updated, [f for item in items for f in item[2]])
            except Exception:  # noqa: BLE001 - chat trouble must not stop the next announcements
                log.exception("announcing triaged incidents failed")
            finally:
                for _ in items:
                    self._chat.task_done()

    async def _announce(self, opened: list[tuple[str, ThreadOrigin | None]], updated: list[str],
                        flap_notes: list[tuple[str, str]]) -> None:
        """With no chat adapter configured the hub would only load each incident to post it nowhere: skipped."""
        chat = self.ctx.chat
        adapters = getattr(chat, "adapters", None)
        if adapters is None or adapters:
            for inc_id, origin in opened:
                await chat.incident_opened(inc_id, origin)
        if adapters:
            for inc_id in updated:
                await chat.incident_updated(inc_id)
            for fp, inc_id in flap_notes:
                if inc_id:
                    await chat.notify(inc_id, f"Alert {fp} is flapping; onwatch suppresses it until it settles.")

    async def open_adhoc(self, text_: str, actor: Actor, origin: ThreadOrigin | None) -> str | None:
        return await open_adhoc(self, text_, actor, origin)

    async def start_incident(self, incident_id: str, origin: ThreadOrigin | None, requested_by: Actor) -> None:
        """Request the investigation (a durable job) and announce the incident."""
        await request_investigation(self.ctx, incident_id, requested_by)
        await self.ctx.chat.incident_opened(incident_id, origin)
