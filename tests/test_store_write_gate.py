"""SQLite's write gate (``bot.store.db.WriteGate``): writers of one process take turns in arrival order, a write
nested in one that holds the gate passes through, reads never wait for a writer; PostgreSQL has no gate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from bot.store.db import Database

GUARD_S = 20  # a deadlock fails the test instead of hanging it (SQLite's own busy timeout is 60 s)


@pytest.fixture
async def sdb(sqlite_url: str) -> AsyncIterator[Database]:
    d = Database(sqlite_url)
    async with d.transaction() as conn:
        await conn.execute(text("CREATE TABLE t (who TEXT)"))
    try:
        yield d
    finally:
        await d.dispose()


async def _rows(db: Database) -> list[str]:
    async with db.session() as s:
        return [w for (w,) in await s.execute(text("SELECT who FROM t ORDER BY rowid"))]


async def test_a_writer_waiting_behind_triage_goes_before_triages_next_batch(sdb: Database) -> None:
    """Triage commits a batch and takes the lock again at once; the writer that queued during the batch (the
    outbox marking an announcement) has its turn first. Without the gate it sleeps in SQLite's busy handler
    and the next batch wins."""
    batch_open, batch_done = asyncio.Event(), asyncio.Event()

    async def triage() -> None:
        async with sdb.transaction() as conn:
            await conn.execute(text("INSERT INTO t VALUES ('batch 1')"))
            batch_open.set()
            await batch_done.wait()
        async with sdb.transaction() as conn:  # the next batch, right after the commit
            await conn.execute(text("INSERT INTO t VALUES ('batch 2')"))

    async def outbox() -> None:
        async with sdb.begin() as s:
            await s.execute(text("INSERT INTO t VALUES ('mark')"))

    async with asyncio.timeout(GUARD_S):
        first = asyncio.create_task(triage())
        await batch_open.wait()
        waiting = asyncio.create_task(outbox())
        await asyncio.sleep(0.05)  # let it queue (without the gate: reach SQLite's busy handler)
        batch_done.set()
        await asyncio.gather(first, waiting)
    assert await _rows(sdb) == ["batch 1", "mark", "batch 2"]


async def test_writers_queued_at_once_go_in_arrival_order(sdb: Database) -> None:
    release = asyncio.Event()

    async def holder() -> None:
        async with sdb.transaction() as conn:
            await conn.execute(text("INSERT INTO t VALUES ('holder')"))
            await release.wait()

    async def writer(name: str) -> None:
        async with sdb.begin() as s:
            await s.execute(text("INSERT INTO t VALUES (:w)"), {"w": name})

    async with asyncio.timeout(GUARD_S):
        tasks = [asyncio.create_task(holder())]
        await asyncio.sleep(0)
        for name in ("w1", "w2", "w3", "w4"):
            tasks.append(asyncio.create_task(writer(name)))
            await asyncio.sleep(0)  # each reaches the gate before the next is started
        release.set()
        await asyncio.gather(*tasks)
    assert await _rows(sdb) == ["holder", "w1", "w2", "w3", "w4"]


async def test_a_write_nested_in_one_holding_the_gate_passes_through(sdb: Database) -> None:
    """Before its first statement the outer transaction holds the gate but not SQLite's lock: an inner write (in
    the same task, or in a task it starts and awaits) runs instead of waiting for the gate forever."""

    async def inner(name: str) -> None:
        async with sdb.begin() as s:
            await s.execute(text("INSERT INTO t VALUES (:w)"), {"w": name})

    async with asyncio.timeout(GUARD_S):
        async with sdb.begin() as outer:
            await inner("same task")
            await asyncio.create_task(inner("child task"))
            await outer.execute(text("INSERT INTO t VALUES ('outer')"))
        await inner("after")  # the gate was given back
    assert await _rows(sdb) == ["same task", "child task", "outer", "after"]


async def test_a_failed_write_gives_the_gate_back(sdb: Database) -> None:
    with pytest.raises(RuntimeError):
        async with sdb.begin() as s:
            await s.execute(text("INSERT INTO t VALUES ('rolled back')"))
            raise RuntimeError("boom")
    async with asyncio.timeout(GUARD_S), sdb.transaction() as conn:
        await conn.execute(text("INSERT INTO t VALUES ('next')"))
    assert await _rows(sdb) == ["next"]


async def test_a_read_does_not_wait_for_a_writer(sdb: Database) -> None:
    """A read is a WAL snapshot (plain BEGIN): it sees what was committed, while a writer holds the lock."""
    async with sdb.begin() as s:
        await s.execute(text("INSERT INTO t VALUES ('committed')"))
    async with sdb.begin() as s:
        await s.execute(text("INSERT INTO t VALUES ('uncommitted')"))
        async with asyncio.timeout(GUARD_S):
            assert await _rows(sdb) == ["committed"]


async def test_postgres_writers_are_not_queued_in_process(pg_db: Database) -> None:
    """Two write transactions open at once on PostgreSQL (row locks and advisory locks order them there)."""
    both_open = asyncio.Barrier(2)

    async def writer() -> None:
        async with pg_db.begin() as s:
            await s.execute(text("SELECT 1"))
            await both_open.wait()

    async with asyncio.timeout(GUARD_S):
        await asyncio.gather(writer(), writer())
