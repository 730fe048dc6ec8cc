"""The lifecycle outbox: what happened to an incident, written in the same transaction as the change itself,
then handed to subscribers (the chat hub) after the commit.

The domain never calls chat. It writes an event row (``emit``) beside its change and, once committed, asks
the outbox to ``publish``: every undelivered event is claimed for a lease, given to each subscriber in ``id``
order, and marked delivered. Delivery is at least once: a process that dies after rendering but before
marking leaves the claim to expire, and another publish delivers the event again — so subscribers render
idempotently, keyed by the event id (``OutboxEvent.key``). The events rendered are marked together, at most
``mark_s`` apart, so a crash re-renders at most that much: under an alert storm every write waits its turn
behind a triage batch, and a mark per event would pace the announcements by the batches. Two publishers (two
replicas, or a request and the background loop) never deliver the same event at once: the claim is one
conditional update. A subscriber that fails leaves its event for a later publish (after ``retry_s``), up to
``max_attempts`` times.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, or_, text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.ports import ThreadOrigin
from bot.store.db import Database
from bot.store.models import LifecycleEvent

log = logging.getLogger(__name__)

KEEP_S = 7 * 86400.0  # delivered events are kept this long (what the thread was told, for an operator's look)
CLAIM_LOCK_KEY = 0x6F6E6F62  # "onob": serialises outbox claims across replicas on PostgreSQL


class EventKind(StrEnum):
    INCIDENT_OPENED = "incident.opened"  # params: origin (the chat post it was born from), if any
    INCIDENT_CHANGED = "incident.changed"  # status or phase moved (``lifecycle.transition``): from_*, to_*
    INCIDENT_UPDATED = "incident.updated"  # title, severity, services or alert count changed (triage)
    INVESTIGATION_STEPS = "investigation.steps"  # the reasoning so far: investigation_id, steps [[n, kind, text]]
    INVESTIGATION_FINISHED = "investigation.finished"  # params: investigation_id
    LLM_STEPS = "llm.steps"  # the LLM investigator's steps so far: investigation_id, steps [text]
    LLM_FINISHED = "llm.finished"  # its outcome: investigation_id, steps_shown, outcome (LlmOutcome.to_dict())
    PROPOSALS_OFFERED = "proposals.offered"  # params: proposal_ids, refused (why matches were not offered)
    PROPOSAL_CHANGED = "proposal.changed"  # a decision, expiry, execution or verification; params: proposal_id
    NOTE = "note"  # a line for the incident's thread; params: text


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    incident_id: str
    kind: EventKind
    params: Mapping[str, Any] = field(default_factory=dict)
    at: float = 0.0

    @property
    def key(self) -> str:
        """The idempotency key of whatever rendering this event posts: a re-delivery edits, never repeats."""
        return f"event:{self.id}"


Subscriber = Callable[[OutboxEvent], Awaitable[None]]


def opened_params(origin: ThreadOrigin | None) -> dict[str, Any]:
    """The params of an ``incident.opened`` event: where in chat the incident was born, if it was."""
    if origin is None:
        return {}
    return {"origin": {"platform": origin.platform, "channel": origin.channel, "thread_id": origin.thread_id,
                       "reference": dict(origin.reference)}}


def origin_of(params: Mapping[str, Any]) -> ThreadOrigin | None:
    """The chat post an ``incident.opened`` event's params name (what ``opened_params`` wrote), if any."""
    o = params.get("origin")
    if not isinstance(o, dict):
        return None
    return ThreadOrigin(str(o.get("platform", "")), str(o.get("channel", "")), str(o.get("thread_id", "")),
                        dict(o.get("reference") or {}))


def event_row(incident_id: str, kind: EventKind, params: Mapping[str, Any] | None = None,
              at: float | None = None) -> dict[str, Any]:
    """A ``lifecycle_event`` row as a column dict, for bulk inserts (triage writes its events this way)."""
    return {"incident_id": incident_id, "kind": str(kind), "params": dict(params or {}),
            "at": time.time() if at is None else at, "claimed_by": "", "claimed_until": None, "attempts": 0,
            "delivered_at": None}


async def emit(session: AsyncSession, incident_id: str, kind: EventKind,
               params: Mapping[str, Any] | None = None) -> None:
    """Add one event in ``session``'s transaction: it exists exactly when the change it reports commits."""
    session.add(LifecycleEvent(**event_row(incident_id, kind, params)))
    await session.flush()


def _event(row: LifecycleEvent) -> OutboxEvent:
    assert row.id is not None
    return OutboxEvent(row.id, row.incident_id, EventKind(row.kind), dict(row.params or {}), row.at)


class Outbox:
    """Delivers committed events to subscribers. One publish at a time per process keeps a thread in order."""

    def __init__(self, db: Database, *, owner: str | None = None, lease_s: float = 60.0, retry_s: float = 30.0,
                 batch: int = 200, max_attempts: int = 5, mark_s: float = 1.0, gather_s: float = 0.2,
                 clock: Callable[[], float] = time.time):
        self.db = db
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.lease_s, self.retry_s, self.batch, self.max_attempts = lease_s, retry_s, batch, max_attempts
        self.mark_s = mark_s
        self.gather_s = gather_s
        self.clock = clock
        self._subscribers: list[Subscriber] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def publish(self) -> int:
        """Deliver every event committed so far and not yet delivered; return how many were delivered."""
        delivered = 0
        async with self._lock:
            while True:
                token, events = await self._claim()
                if not events:
                    return delivered
                delivered += await self._deliver(token, events)

    async def flush(self) -> None:
        """``publish`` for a domain step that just committed: the thread is a side channel, so a failure here is
        logged, never raised into the step (its events stay for the next publish or the server's loop)."""
        try:
            await self.publish()
        except Exception:  # noqa: BLE001 - see above
            log.exception("publishing lifecycle events failed; they stay in the outbox")

    async def prune(self, keep_s: float = KEEP_S) -> int:
        """Delete events delivered, or given up on, more than ``keep_s`` ago (run by the leader)."""
        cutoff = self.clock() - keep_s
        given_up = (col(LifecycleEvent.attempts) >= self.max_attempts) & (col(LifecycleEvent.at) < cutoff)
        async with self.db.begin() as s:
            res = await s.exec(  # type: ignore[call-overload]
                delete(LifecycleEvent).where(or_(col(LifecycleEvent.delivered_at) < cutoff, given_up)))
        return int(res.rowcount or 0)

    def kick(self) -> None:
        """Publish in the background (a sender is not kept waiting on chat); ``idle`` waits for it."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._background(), name="onwatch-outbox")
        else:
            self._again = True

    async def idle(self) -> None:
        """Wait until the background publishing started by ``kick`` is done."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def run(self, poll_s: float = 5.0) -> None:
        """Publish forever: picks up events another replica committed, and retries failed ones."""
        while True:
            try:
                await self.publish()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the loop
                log.exception("publishing lifecycle events failed")
            await asyncio.sleep(poll_s)

    async def _background(self) -> None:
        while True:
            self._again = False
            try:
                await self.publish()
            except Exception:  # noqa: BLE001 - the next kick or the loop retries
                log.exception("publishing lifecycle events failed")
            if not self._again:
                return
            # more commits came in while publishing (a storm): let them gather, so one drain renders an
            # incident's many updates once instead of once per batch
            await asyncio.sleep(self.gather_s)

    async def _claim(self) -> tuple[str, list[OutboxEvent]]:
        now = self.clock()
        token = f"{self.owner}:{secrets.token_hex(4)}"[:100]
        free = or_(col(LifecycleEvent.claimed_until).is_(None), col(LifecycleEvent.claimed_until) < now)
        # An incident whose earlier event another publisher holds (or waits to retry) is left alone: its thread
        # gets its events in order. Claims are serialised (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE),
        # so each claim sees the ones committed before it.
        busy = select(LifecycleEvent.incident_id).where(col(LifecycleEvent.delivered_at).is_(None),
                                                        col(LifecycleEvent.claimed_until) >= now)
        async with self.db.begin() as s:
            if self.db.is_postgres:
                await s.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=CLAIM_LOCK_KEY))  # type: ignore[call-overload]
            q = (select(LifecycleEvent.id)
                 .where(col(LifecycleEvent.delivered_at).is_(None), free,
                        col(LifecycleEvent.attempts) < self.max_attempts,
                        col(LifecycleEvent.incident_id).not_in(busy))
                 .order_by(col(LifecycleEvent.id)).limit(self.batch))
            ids = list((await s.exec(q)).all())
            if not ids:
                return token, []
            await s.exec(  # type: ignore[call-overload]
                update(LifecycleEvent)
                .where(col(LifecycleEvent.id).in_(ids), col(LifecycleEvent.delivered_at).is_(None), free)
                .values(claimed_by=token, claimed_until=now + self.lease_s, attempts=col(LifecycleEvent.attempts) + 1)
            )
            rows = (await s.exec(select(LifecycleEvent).where(col(LifecycleEvent.claimed_by) == token)
                                 .order_by(col(LifecycleEvent.id)))).all()
        return token, [_event(r) for r in rows]

    async def _deliver(self, token: str, events: Sequence[OutboxEvent]) -> int:
        # An incident.updated followed by another one for the same incident in this batch says nothing the later
        # one does not: only the last is rendered (a storm updates an incident once per batch of alerts).
        last_update = {e.incident_id: e.id for e in events if e.kind == EventKind.INCIDENT_UPDATED}
        superseded = [e.id for e in events
                      if e.kind == EventKind.INCIDENT_UPDATED and last_update[e.incident_id] != e.id]
        skip = set(superseded)
        done = list(superseded)  # delivered, not yet marked
        delivered, marked_at = len(superseded), time.monotonic()
        for e in events:
            if e.id in skip:
                continue
            try:
                for sub in self._subscribers:
                    await sub(e)
            except Exception:  # noqa: BLE001 - one event's failure must not hold the others
                log.exception("rendering lifecycle event %s (%s of %s) failed", e.id, e.kind, e.incident_id)
                await self._release(token, e.id)
                continue
            done.append(e.id)
            delivered += 1
            if time.monotonic() - marked_at >= self.mark_s:
                await self._mark(token, done)
                done, marked_at = [], time.monotonic()
        await self._mark(token, done)
        return delivered

    async def _mark(self, token: str, ids: list[int]) -> None:
        if not ids:
            return
        async with self.db.begin() as s:
            await s.exec(  # type: ignore[call-overload]
                update(LifecycleEvent)
                .where(col(LifecycleEvent.id).in_(ids), col(LifecycleEvent.claimed_by) == token)
                .values(delivered_at=self.clock())
            )

    async def _release(self, token: str, event_id: int) -> None:
        async with self.db.begin() as s:
            await s.exec(  # type: ignore[call-overload]
                update(LifecycleEvent)
                .where(col(LifecycleEvent.id) == event_id, col(LifecycleEvent.claimed_by) == token)
                .values(claimed_until=self.clock() + self.retry_s)
            )
