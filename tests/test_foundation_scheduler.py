"""Periodic jobs run on one leader replica, chosen by a PostgreSQL advisory lock."""

from __future__ import annotations

import asyncio

from bot.scheduler import LeaderElection, LeaderScheduler
from bot.store.db import Database


async def test_single_leader_on_postgres_and_failover(pg_db: Database) -> None:
    other = Database(pg_db.url)
    a, b = LeaderElection(pg_db), LeaderElection(other)
    try:
        assert await a.try_acquire() is True
        assert await b.try_acquire() is False
        await a.release()  # the leader goes away: the next tick of another replica takes over
        assert await b.try_acquire() is True
        assert await a.try_acquire() is False
    finally:
        await a.release()
        await b.release()
        await other.dispose()


async def test_scheduler_runs_jobs_only_on_the_leader(pg_db: Database) -> None:
    other = Database(pg_db.url)
    runs = {"a": 0, "b": 0}

    def counter(name: str):  # type: ignore[no-untyped-def]
        async def tick() -> None:
            runs[name] += 1
        return tick

    sa, sb = LeaderScheduler(pg_db), LeaderScheduler(other)
    sa.every(0.1, "tick", counter("a"))
    sb.every(0.1, "tick", counter("b"))
    try:
        sa.start()
        await asyncio.sleep(0.35)
        sb.start()
        await asyncio.sleep(0.6)
    finally:
        await sa.stop()
        await sb.stop()
        await other.dispose()
    assert runs["a"] >= 3 and runs["b"] == 0, runs


async def test_sqlite_process_is_always_leader(db: Database) -> None:
    assert await LeaderElection(db).try_acquire() is True
