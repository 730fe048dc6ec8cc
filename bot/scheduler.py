"""Periodic jobs (expire proposals, reap leases, noise roll-ups) run by one leader among the replicas.

Leadership is a PostgreSQL session advisory lock held on a dedicated connection; with SQLite there is a
single process, which is always the leader. APScheduler triggers the jobs; each run first checks, and if
needed tries to take, the lock, so a crashed leader's role passes to another replica on its next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.store.db import Database

log = logging.getLogger(__name__)
LEADER_LOCK_KEY = 0x6F6E6C64  # "onld"

Periodic = Callable[[], Awaitable[object]]


class LeaderElection:
    def __init__(self, db: Database, key: int = LEADER_LOCK_KEY):
        self.db = db
        self.key = key
        self._conn: AsyncConnection | None = None
        self.is_leader = db.is_sqlite

    async def try_acquire(self) -> bool:
        if self.db.is_sqlite or self.is_leader:
            return self.is_leader
        if self._conn is None:
            self._conn = await self.db.engine.connect()
        got = (await self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})).scalar()
        await self._conn.commit()
        self.is_leader = bool(got)
        if self.is_leader:
            log.info("this replica is the scheduler leader")
        return self.is_leader

    async def release(self) -> None:
        if self._conn is not None:
            if self.is_leader:
                await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                await self._conn.commit()
            await self._conn.close()
            self._conn = None
        self.is_leader = self.db.is_sqlite


class LeaderScheduler:
    """APScheduler whose jobs run only on the replica holding the leader lock."""

    def __init__(self, db: Database):
        self.election = LeaderElection(db)
        self._scheduler = AsyncIOScheduler(timezone="UTC")

    def every(self, seconds: float, name: str, func: Periodic) -> None:
        async def _run() -> None:
            if await self.election.try_acquire():
                await func()

        self._scheduler.add_job(_run, "interval", seconds=seconds, id=name, name=name,
                                max_instances=1, coalesce=True)

    def weekly(self, name: str, day: str, at: str, tz: str, func: Periodic) -> None:
        """Run ``func`` each week on ``day`` (mon..sun) at local ``at`` (HH:MM) in zone ``tz``: wall-clock time,
        so it keeps its hour across daylight-saving changes. A tick missed by up to an hour (a restart) still runs."""
        hour, minute = (int(x) for x in at.split(":"))

        async def _run() -> None:
            if await self.election.try_acquire():
                await func()

        trigger = CronTrigger(day_of_week=day, hour=hour, minute=minute, timezone=ZoneInfo(tz))
        self._scheduler.add_job(_run, trigger, id=name, name=name, max_instances=1, coalesce=True,
                                misfire_grace_time=3600)

    def next_run(self, name: str) -> datetime | None:
        """When the named job fires next (None before ``start`` or for an unknown name)."""
        job = self._scheduler.get_job(name)
        when = getattr(job, "next_run_time", None) if job is not None else None
        return when if isinstance(when, datetime) else None

    def start(self) -> None:
        self._scheduler.start()

    async def stop(self) -> None:
        self._scheduler.shutdown(wait=False)
        await self.election.release()
