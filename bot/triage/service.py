"""The triage service: a batch of alerts in, one committed transaction, incidents out; then chat.

Every source (webhooks, chat alert posts, the demo) calls ``ingest``. The batch is triaged in one
transaction on the application's engine, the same code on SQLite and PostgreSQL: on PostgreSQL under a
transaction-scoped advisory lock that serialises triage across replicas, on SQLite under the write lock its
``BEGIN IMMEDIATE`` takes. Within one process an ``asyncio.Lock`` queues the batches, so concurrent senders
wait in order; on SQLite a batch then queues at the database's write gate with the process's other writers
(the outbox marking what it announced), which so get their turn between two batches. ``ingest`` returns once
the batch is committed; the caller answers the sender then, so an acknowledged alert is stored, and one not
acknowledged is sent again and deduplicated.

The pass writes what chat must say (an incident opened, updated, reopened or resolved, an alert flapping) as
lifecycle outbox events in the same transaction (``bot.incidents``). After the commit the outbox is published
in the background, in order (a sender is never kept waiting on Slack); under a storm one publish takes all
that the commits queued, so an incident updated by many batches is re-rendered once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence

from bot.audit import BOT, Actor
from bot.context import AppContext
from bot.incidents.outbox import EventKind, emit, opened_params
from bot.investigate.requests import request_investigation
from bot.ports import ThreadOrigin
from bot.triage.adhoc import open_adhoc
from bot.triage.alert import AlertIn
from bot.triage.txn import IngestOutcome, TriagePass

__all__ = ["IngestOutcome", "TriageService"]


class TriageService:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.db = ctx.db
        self.settings = ctx.settings.triage
        self.clock: Callable[[], float] = time.time  # injectable for window and cool-off tests
        self._lock = asyncio.Lock()

    async def drained(self) -> None:
        """Wait until every announcement committed so far is posted (bound it with ``asyncio.timeout``)."""
        await self.ctx.outbox.idle()

    async def aclose(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await self.drained()

    async def ingest(self, alerts: Sequence[AlertIn], *, origin: ThreadOrigin | None = None,
                     actor: Actor | None = None) -> IngestOutcome:
        """Store, dedup, suppress and group one batch; open/reopen/resolve incidents; queue the announcements.

        Returns once the batch is committed (a database failure raises, and nothing of the batch is kept)."""
        if not alerts:
            return IngestOutcome()
        async with self._lock:
            started = time.perf_counter()
            async with self.db.transaction() as conn:
                triage = TriagePass(conn, self.db.is_postgres, self.settings, self.clock(), actor or BOT,
                                    opened_params(origin))
                out = await triage.run(alerts)
            self.ctx.metrics.triage_pass_seconds.observe(time.perf_counter() - started)
        for source, n in Counter(a.source for a in alerts).items():
            self.ctx.metrics.alerts.labels(source).inc(n)
        if out.opened:
            self.ctx.jobs.wakeup.set()
        if triage.events:
            self.ctx.outbox.kick()
        return out

    async def open_adhoc(self, text_: str, actor: Actor, origin: ThreadOrigin | None) -> str | None:
        return await open_adhoc(self, text_, actor, origin)

    async def start_incident(self, incident_id: str, origin: ThreadOrigin | None, requested_by: Actor) -> None:
        """Announce the incident (an ``incident.opened`` event) and request its investigation (a durable job)."""
        async with self.db.begin() as s:
            await emit(s, incident_id, EventKind.INCIDENT_OPENED, opened_params(origin))
        await request_investigation(self.ctx, incident_id, requested_by)
        await self.ctx.outbox.flush()
