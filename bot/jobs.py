"""Durable background work: an investigation or an execution is a row before it is a task.

Workers claim jobs with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises writers with
BEGIN IMMEDIATE). A running job renews its lease. When a lease expires (the worker crashed), a resumable
job (investigation, verification) is queued again, while any other job (an execution) becomes ``unknown``
and is never re-run by itself: the ``on_lost`` hook lets the domain record that and tell the thread.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.store.db import Database
from bot.store.models import Job

log = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[None]]
LostHook = Callable[[Job], Awaitable[None]]

RESUMABLE_KINDS = frozenset({"investigation", "verification"})


class JobQueue:
    """Enqueue and inspect jobs. Enqueue with a ``dedup_key`` is idempotent (a redelivery adds nothing)."""

    def __init__(self, db: Database):
        self.db = db
        self.wakeup = asyncio.Event()

    async def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        dedup_key: str | None = None,
        delay_s: float = 0.0,
        max_attempts: int = 3,
        session: AsyncSession | None = None,
    ) -> Job | None:
        """Add a job; return it, or None when a job with the same ``dedup_key`` already exists."""
        job = Job(kind=kind, payload=payload, dedup_key=dedup_key, available_at=time.time() + delay_s,
                  max_attempts=max_attempts)
        if session is not None:
            if dedup_key and (await session.exec(select(Job).where(Job.dedup_key == dedup_key))).first():
                return None
            session.add(job)
            await session.flush()
        else:
            try:
                async with self.db.begin() as s:
                    if dedup_key and (await s.exec(select(Job).where(Job.dedup_key == dedup_key))).first():
                        return None
                    s.add(job)
            except IntegrityError:
                return None
        self.wakeup.set()
        return job

    async def counts(self) -> dict[str, int]:
        async with self.db.session() as s:
            rows = (await s.exec(select(Job.status, func.count()).group_by(Job.status))).all()
        return {status: n for status, n in rows}

    async def get(self, job_id: int) -> Job | None:
        async with self.db.session() as s:
            return await s.get(Job, job_id)


@dataclass
class JobRunner:
    """Claims and runs jobs of the registered kinds with ``concurrency`` parallel slots."""

    db: Database
    queue: JobQueue
    handlers: dict[str, Handler]
    on_lost: dict[str, LostHook] = field(default_factory=dict)
    concurrency: int = 2
    lease_s: float = 60.0
    poll_s: float = 0.5
    worker_id: str = field(default_factory=lambda: f"w-{secrets.token_hex(4)}")
    on_state: Callable[[str, str], None] | None = None  # (kind, state) for metrics

    def __post_init__(self) -> None:
        self._stopping = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- claiming

    async def claim(self) -> Job | None:
        now = time.time()
        kinds = sorted(self.handlers)
        async with self.db.begin() as s:
            q = (
                select(Job)
                .where(Job.status == "queued", col(Job.available_at) <= now, col(Job.kind).in_(kinds))
                .order_by(col(Job.id))
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            job = (await s.exec(q)).first()
            if job is None:
                return None
            res = await s.exec(  # type: ignore[call-overload]
                update(Job)
                .where(col(Job.id) == job.id, col(Job.status) == "queued")
                .values(status="running", lease_owner=self.worker_id, lease_expires=now + self.lease_s,
                        attempts=Job.attempts + 1, updated_at=now)
            )
            if res.rowcount != 1:
                return None
        async with self.db.session() as s:
            return await s.get(Job, job.id)

    async def _finish(self, job: Job, status: str, error: str = "") -> bool:
        now = time.time()
        async with self.db.begin() as s:
            res = await s.exec(  # type: ignore[call-overload]
                update(Job)
                .where(col(Job.id) == job.id, col(Job.status) == "running", col(Job.lease_owner) == self.worker_id)
                .values(status=status, error=error[:4000], lease_owner="", lease_expires=None, updated_at=now)
            )
            return bool(res.rowcount == 1)

    async def _renew(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            async with self.db.begin() as s:
                await s.exec(  # type: ignore[call-overload]
                    update(Job)
                    .where(col(Job.id) == job.id, col(Job.lease_owner) == self.worker_id, col(Job.status) == "running")
                    .values(lease_expires=time.time() + self.lease_s)
                )

    async def release(self, job: Job) -> None:
        """Hand a resumable job back to the queue (used at shutdown when it could not finish in time)."""
        async with self.db.begin() as s:
            await s.exec(  # type: ignore[call-overload]
                update(Job)
                .where(col(Job.id) == job.id, col(Job.lease_owner) == self.worker_id, col(Job.status) == "running")
                .values(status="queued", lease_owner="", lease_expires=None, attempts=Job.attempts - 1)
            )

    # ----------------------------------------------------------------- recovery

    async def reap_expired(self) -> list[Job]:
        """Requeue expired resumable jobs; mark other expired jobs ``unknown`` and call their ``on_lost`` hook."""
        now = time.time()
        async with self.db.session() as s:
            expired = (
                await s.exec(select(Job).where(Job.status == "running", col(Job.lease_expires) < now))
            ).all()
        touched: list[Job] = []
        for job in expired:
            resumable = job.kind in RESUMABLE_KINDS
            if resumable and job.attempts < job.max_attempts:
                new_status, err = "queued", f"lease of {job.lease_owner} expired; resumed"
            elif resumable:
                new_status, err = "failed", f"lease expired after {job.attempts} attempts"
            else:
                new_status, err = "unknown", f"lease of {job.lease_owner} expired mid-run; not re-run"
            async with self.db.begin() as s:
                res = await s.exec(  # type: ignore[call-overload]
                    update(Job)
                    .where(col(Job.id) == job.id, col(Job.status) == "running", col(Job.lease_expires) < now)
                    .values(status=new_status, lease_owner="", lease_expires=None, error=err, updated_at=now)
                )
            if res.rowcount != 1:
                continue
            job.status = new_status
            touched.append(job)
            log.warning("job %s (%s) %s", job.id, job.kind, err)
            hook = self.on_lost.get(job.kind)
            if new_status == "unknown" and hook is not None:
                await hook(job)
        if touched:
            self.queue.wakeup.set()
        return touched

    # ----------------------------------------------------------------- running

    async def run_one(self, job: Job) -> None:
        handler = self.handlers[job.kind]
        renew = asyncio.create_task(self._renew(job))
        self._state(job.kind, "running")
        try:
            await handler(job)
        except asyncio.CancelledError:
            renew.cancel()
            if job.kind in RESUMABLE_KINDS:
                await asyncio.shield(self.release(job))
            raise
        except Exception as exc:  # noqa: BLE001 - a handler's failure is recorded on its job, never lost
            log.exception("job %s (%s) failed", job.id, job.kind)
            renew.cancel()
            await self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
            self._state(job.kind, "failed")
            return
        renew.cancel()
        await self._finish(job, "done")
        self._state(job.kind, "done")

    def _state(self, kind: str, state: str) -> None:
        if self.on_state is not None:
            self.on_state(kind, state)

    async def run_until_idle(self, max_jobs: int = 1000) -> int:
        """Run queued jobs one after another until none is left (for the CLI, demo and tests)."""
        n = 0
        while n < max_jobs:
            await self.reap_expired()
            job = await self.claim()
            if job is None:
                return n
            await self.run_one(job)
            n += 1
        return n

    async def _loop(self) -> None:
        last_reap = 0.0
        while not self._stopping.is_set():
            if time.monotonic() - last_reap > max(1.0, self.lease_s / 4):
                await self.reap_expired()
                last_reap = time.monotonic()
            if len(self._inflight) < self.concurrency:
                job = await self.claim()
                if job is not None and job.id is not None:
                    task = asyncio.create_task(self.run_one(job), name=f"job-{job.id}")
                    self._inflight[job.id] = task
                    task.add_done_callback(self._forget(job.id))
                    continue
            self.queue.wakeup.clear()
            try:
                await asyncio.wait_for(self.queue.wakeup.wait(), timeout=self.poll_s)
            except TimeoutError:
                pass

    def _forget(self, job_id: int) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._inflight.pop(job_id, None)

        return done

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name=f"jobrunner-{self.worker_id}")

    async def stop(self, grace_s: float = 20.0) -> None:
        """Stop claiming; let in-flight jobs finish within ``grace_s``; hand back what is left."""
        self._stopping.set()
        self.queue.wakeup.set()
        if self._loop_task is not None:
            await self._loop_task
        pending = list(self._inflight.values())
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace_s)
            for t in still:
                t.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    @property
    def inflight(self) -> Iterable[int]:
        return tuple(self._inflight)
