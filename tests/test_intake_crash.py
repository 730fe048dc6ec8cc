"""Exactly-once triage across a hard kill, on the one path and both databases: ``onwatch serve`` is killed
(SIGKILL) in the middle of a storm, started again, and every batch not answered 200 is sent again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from sqlmodel import select

from bot.audit import verify_chain
from bot.store.db import Database
from bot.store.models import Investigation
from tests.integrations_fixtures import free_port
from tests.triage_fixtures import TOKEN, alerts, am_alert, am_payload, incidents, jobs

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


async def _serve(url: str, port: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "ONWATCH_DATABASE__URL": url, "ONWATCH_SERVER__PORT": str(port),
           "ONWATCH_SERVER__HOST": "127.0.0.1", "ONWATCH_WEBHOOKS__TOKEN": TOKEN, "ONWATCH_SERVER__WORKERS": "0"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "serve", env=env, cwd=ROOT,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    async with aiohttp.ClientSession() as s:
        for _ in range(200):
            try:
                async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    await proc.wait()
    pytest.fail("onwatch serve did not become ready")


async def _send(port: int, bodies: list[dict], acked: asyncio.Event | None = None) -> set[int]:
    """Post every batch (4 at a time); return the indexes answered 200. ``acked`` is set after the 5th 200."""
    done: set[int] = set()
    todo = list(range(len(bodies)))

    async def sender(s: aiohttp.ClientSession) -> None:
        while todo:
            i = todo.pop(0)
            try:
                async with s.post(f"http://127.0.0.1:{port}/webhooks/alertmanager", json=bodies[i],
                                  headers=HEADERS) as r:
                    if r.status == 200:
                        done.add(i)
                        if acked is not None and len(done) >= 5:
                            acked.set()
            except aiohttp.ClientError:
                pass

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        await asyncio.gather(*(sender(s) for _ in range(4)))
    return done


async def test_a_killed_server_loses_nothing_acknowledged_and_triages_each_alert_once(anydb: Database) -> None:
    bodies = [am_payload(*[am_alert("HighLatency", f"svc-{b % 5}", pod=f"p{b}-{k}") for k in range(50)])
              for b in range(40)]
    port = free_port()
    proc = await _serve(anydb.url, port)
    try:
        acked = asyncio.Event()
        sending = asyncio.create_task(_send(port, bodies, acked))
        await asyncio.wait_for(acked.wait(), 60)  # kill once some batches are in, however fast the machine
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        acked_before = await sending
        assert len(acked_before) < len(bodies)  # the kill landed mid-storm
        stored_before = {a.fingerprint for a in await alerts(anydb)}
        proc = await _serve(anydb.url, port)
        retry = [i for i in range(len(bodies)) if i not in acked_before]
        assert await _send(port, [bodies[i] for i in retry]) == set(range(len(retry)))
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    rows = await alerts(anydb)
    assert len(rows) == 40 * 50 == len({a.fingerprint for a in rows})  # every alert once
    assert stored_before <= {a.fingerprint for a in rows}
    incs = await incidents(anydb)
    assert len(incs) == 1 and incs[0].alert_count == 2000  # one family in one namespace: one incident, not two
    async with anydb.session() as session:
        invs = (await session.exec(select(Investigation))).all()
    per_incident = Counter(inv.incident_id for inv in invs)  # one investigation (and one job) per incident
    assert sorted(per_incident) == sorted(i.id for i in incs) and set(per_incident.values()) == {1}
    assert sorted(j.payload["investigation_id"] for j in await jobs(anydb)) == sorted(inv.id for inv in invs)
    assert (await verify_chain(anydb)).ok
