"""Durable jobs: exactly-once across replicas, resumed investigations, executions left `unknown`."""

from __future__ import annotations

import asyncio
import collections

from bot.app import context_for, running
from bot.config import Settings
from bot.jobs import JobQueue, JobRunner
from bot.store.db import Database
from bot.store.models import Job


async def test_enqueue_with_dedup_key_is_idempotent(anydb: Database) -> None:
    q = JobQueue(anydb)
    first = await q.enqueue("investigation", {"investigation_id": "inv_1"}, dedup_key="investigation:inv_1")
    again = await q.enqueue("investigation", {"investigation_id": "inv_1"}, dedup_key="investigation:inv_1")
    assert first is not None and again is None
    assert (await q.counts()) == {"queued": 1}


async def test_two_app_instances_run_each_job_exactly_once(pg_db: Database, settings: Settings) -> None:
    settings.server.lease_s = 5
    settings.server.workers = 3
    other = Database(pg_db.url)
    ran: list[tuple[int, str]] = []

    def handler_for(name: str):  # type: ignore[no-untyped-def]
        async def handle(job: Job) -> None:
            await asyncio.sleep(0.01)
            assert job.id is not None
            ran.append((job.id, name))
        return handle

    ctx_a = context_for(settings, pg_db)
    ctx_b = context_for(settings, other)
    n = 60
    for i in range(n):
        await ctx_a.jobs.enqueue("investigation", {"i": i})
    try:
        async with running(ctx_a, "127.0.0.1", 0, {"investigation": handler_for("a")}), \
                running(ctx_b, "127.0.0.1", 0, {"investigation": handler_for("b")}):
            for _ in range(300):
                if (await ctx_a.jobs.counts()).get("done", 0) == n:
                    break
                await asyncio.sleep(0.05)
    finally:
        await other.dispose()
    counts = collections.Counter(job_id for job_id, _ in ran)
    assert len(counts) == n and set(counts.values()) == {1}, counts
    assert {name for _, name in ran} == {"a", "b"}, "both replicas should have taken work"
    assert (await ctx_a.jobs.counts()) == {"done": n}


async def test_crashed_investigation_is_resumed_and_execution_becomes_unknown(anydb: Database) -> None:
    q = JobQueue(anydb)
    inv = await q.enqueue("investigation", {"investigation_id": "inv_x"})
    exe = await q.enqueue("execution", {"proposal_id": "p1"})
    assert inv is not None and exe is not None

    # Replica A claims both jobs and dies before finishing (no cleanup at all).
    crashed = JobRunner(anydb, q, handlers={"investigation": _never, "execution": _never}, lease_s=0.2)
    assert (await crashed.claim()) is not None
    assert (await crashed.claim()) is not None
    await asyncio.sleep(0.3)

    ran: list[str] = []
    lost: list[int] = []

    async def run_inv(job: Job) -> None:
        ran.append(f"investigation:{job.payload['investigation_id']}")

    async def run_exe(job: Job) -> None:
        ran.append("execution")

    async def on_lost(job: Job) -> None:
        assert job.id is not None
        lost.append(job.id)

    survivor = JobRunner(anydb, q, handlers={"investigation": run_inv, "execution": run_exe},
                         on_lost={"execution": on_lost}, lease_s=5)
    assert await survivor.run_until_idle() == 1
    assert ran == ["investigation:inv_x"], "the investigation resumes; the execution is never re-run"
    assert lost == [exe.id]
    got = await q.get(exe.id)  # type: ignore[arg-type]
    assert got is not None and got.status == "unknown" and "not re-run" in got.error
    got_inv = await q.get(inv.id)  # type: ignore[arg-type]
    assert got_inv is not None and got_inv.status == "done" and got_inv.attempts == 2
    # A later reap must not touch the unknown execution again.
    assert await survivor.reap_expired() == []
    assert await survivor.run_until_idle() == 0


async def test_failed_handler_is_recorded(db: Database) -> None:
    q = JobQueue(db)
    await q.enqueue("investigation", {})

    async def boom(job: Job) -> None:
        raise ValueError("bad payload")

    r = JobRunner(db, q, handlers={"investigation": boom})
    await r.run_until_idle()
    async with db.session() as s:
        job = await s.get(Job, 1)
    assert job is not None and job.status == "failed" and "ValueError: bad payload" in job.error


async def test_graceful_stop_lets_inflight_finish(db: Database) -> None:
    q = JobQueue(db)
    await q.enqueue("investigation", {})
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.set()

    r = JobRunner(db, q, handlers={"investigation": slow}, poll_s=0.05)
    r.start()
    await asyncio.wait_for(started.wait(), 5)
    await r.stop(grace_s=5)
    assert finished.is_set()
    assert (await q.counts()) == {"done": 1}


async def test_shutdown_past_grace_hands_investigation_back(db: Database) -> None:
    q = JobQueue(db)
    await q.enqueue("investigation", {})
    started = asyncio.Event()

    async def hang(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    r = JobRunner(db, q, handlers={"investigation": hang}, poll_s=0.05)
    r.start()
    await asyncio.wait_for(started.wait(), 5)
    await r.stop(grace_s=0.1)
    assert (await q.counts()) == {"queued": 1}


async def _never(job: Job) -> None:  # pragma: no cover - never called: the crashed replica runs nothing
    raise AssertionError("not reached")
