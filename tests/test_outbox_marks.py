"""When the outbox marks what it delivered: together, at most ``mark_s`` apart, so a storm's announcements are
not paced by one write (one turn at SQLite's lock) each; and what a crash re-renders is bounded by it."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import col, select

from bot.incidents.outbox import EventKind, Outbox, OutboxEvent, emit
from bot.store.db import Database
from bot.store.models import Incident, LifecycleEvent


async def _notes(db: Database, n: int) -> None:
    async with db.begin() as s:
        s.add(Incident(id="INC-MK0001", title="checkout errors"))
        await s.flush()
        for i in range(n):
            await emit(s, "INC-MK0001", EventKind.NOTE, {"text": f"note {i}"})


async def _delivered(db: Database) -> int:
    async with db.session() as s:
        rows = (await s.exec(select(LifecycleEvent).where(col(LifecycleEvent.delivered_at).is_not(None)))).all()
    return len(rows)


async def _seen_delivered(db: Database, box: Outbox) -> list[int]:
    """Publish; for each event, how many events were marked delivered when it was rendered."""
    seen: list[int] = []

    async def sub(event: OutboxEvent) -> None:
        seen.append(await _delivered(db))

    box.subscribe(sub)
    assert await box.publish() == 4
    assert await _delivered(db) == 4
    return seen


async def test_events_rendered_within_mark_s_are_marked_together(anydb: Database) -> None:
    await _notes(anydb, 4)
    assert await _seen_delivered(anydb, Outbox(anydb, mark_s=3600)) == [0, 0, 0, 0]


async def test_with_mark_s_zero_each_event_is_marked_as_it_goes(anydb: Database) -> None:
    await _notes(anydb, 4)
    assert await _seen_delivered(anydb, Outbox(anydb, mark_s=0)) == [0, 1, 2, 3]


@pytest.mark.parametrize(("mark_s", "again"), [(0.0, 1), (3600.0, 3)])
async def test_a_crash_re_renders_what_was_not_marked(anydb: Database, mark_s: float, again: int) -> None:
    await _notes(anydb, 3)
    now = [1000.0]
    first = Outbox(anydb, owner="first", mark_s=mark_s, clock=lambda: now[0])
    rendered: list[int] = []

    async def killed_on_third(event: OutboxEvent) -> None:
        if len(rendered) == 2:
            raise asyncio.CancelledError  # the process stops while rendering the third
        rendered.append(event.id)

    first.subscribe(killed_on_third)
    with pytest.raises(asyncio.CancelledError):
        await first.publish()
    now[0] += 61  # the claim's lease ran out
    heir = Outbox(anydb, owner="heir", mark_s=mark_s, clock=lambda: now[0])
    assert await heir.publish() == again


async def test_commits_after_a_publish_gather_before_the_next_drain(db: Database) -> None:
    """A storm commits update after update: once a publish has drained what there was, the publisher lets the
    next commits gather for ``gather_s``, so the next drain renders an incident's last update once."""
    async with db.begin() as s:
        s.add(Incident(id="INC-MK0002", title="checkout errors"))
        await s.flush()
        await emit(s, "INC-MK0002", EventKind.NOTE, {"text": "opened"})
    box = Outbox(db, gather_s=1.0)
    rendered: list[EventKind] = []
    seen = {EventKind.NOTE: asyncio.Event(), EventKind.INCIDENT_UPDATED: asyncio.Event()}

    async def sub(event: OutboxEvent) -> None:
        rendered.append(event.kind)
        seen[event.kind].set()

    async def update() -> None:
        async with db.begin() as s:
            await emit(s, "INC-MK0002", EventKind.INCIDENT_UPDATED, None)
        box.kick()

    box.subscribe(sub)
    box.kick()
    await seen[EventKind.NOTE].wait()
    await update()  # while the first publish runs: it drains this one too
    await seen[EventKind.INCIDENT_UPDATED].wait()
    await asyncio.sleep(0.1)  # that publish is over; the publisher now waits for more
    await update()
    await asyncio.sleep(0.1)  # without gathering, this one would be drained on its own by now
    await update()
    await box.idle()
    assert rendered == [EventKind.NOTE, EventKind.INCIDENT_UPDATED, EventKind.INCIDENT_UPDATED]
    assert await _delivered(db) == 4
