"""``onwatch bench ingest``: an alert storm as a user feels it, on SQLite and on PostgreSQL in one run.

Each database gets a fresh, migrated copy and one onwatch webhook server on a loopback port (the real
endpoint: auth, parse, validate, one triage transaction, answer), with a recording chat adapter in the hub.
The storm: ``--alerts`` Alertmanager v4 alerts (realistic label cardinality) in batches of ``--batch``, a
third of them re-sends of earlier alerts, sent by ``--concurrency`` senders with one request in flight each;
a refused request is sent again, as Alertmanager does. Per database:

* ``alerts_per_s``: alerts sent / seconds from the first request until the last alert is triaged (acknowledged)
* ``ack_p50_ms`` / ``ack_p99_ms``: request to answer
* ``lost``: unique alerts sent minus alert rows stored (must be 0); ``incidents``: incidents opened
* ``alert_to_thread_p50_s``: from the request that opened an incident to its root message in the recording
  adapter (the hub's announcement, after the commit)

PostgreSQL is reached at ``--postgres`` (an admin URL; a database is created and dropped); when it cannot be
reached its entry says why instead of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

from bot.app import context_for
from bot.config import Settings
from bot.intake import routes
from bot.messages.model import IncidentCard, Message
from bot.ports import ThreadOrigin
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import Alert, Incident
from bot.triage.service import TriageService
from bot.web import create_app

TOKEN = "bench-token"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
SERVICES = [f"svc-{i:02d}" for i in range(40)]
ALERTNAMES = ["HighLatency", "HighErrorRate", "PodCrashLooping", "KubePodNotReady", "CPUThrottlingHigh",
              "MemoryPressure", "KafkaConsumerLag", "TargetDown"]
CLUSTERS = ["prod-eu", "prod-us", "prod-ap"]
NAMESPACES = ["shop", "payments", "search", "platform", "data"]


def _alert(rng: random.Random, k: int) -> dict[str, Any]:
    svc = rng.choice(SERVICES)
    labels = {
        "alertname": rng.choice(ALERTNAMES), "service": svc, "cluster": rng.choice(CLUSTERS),
        "namespace": NAMESPACES[SERVICES.index(svc) % len(NAMESPACES)], "pod": f"{svc}-{k:06d}",
        "severity": rng.choice(["critical", "warning", "warning", "info"]), "job": "kubernetes-pods",
        "instance": f"10.0.{k // 250}.{k % 250}:8080",
    }
    fp = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "status": "firing", "labels": labels,
        "annotations": {"summary": f"{labels['alertname']} on {svc}",
                        "description": f"{labels['alertname']} for pod {labels['pod']} above threshold for 5m",
                        "runbook_url": f"https://runbooks.example/{labels['alertname']}"},
        "startsAt": "2024-05-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": f"http://prometheus:9090/graph?g0.expr=up%7Bpod%3D%22{labels['pod']}%22%7D",
        "fingerprint": fp,
    }


def storm(total: int, batch: int, seed: int = 7) -> tuple[list[bytes], int]:
    """Serialized webhook bodies and the number of unique alerts in them (a third are re-sends)."""
    rng = random.Random(seed)
    sent: list[dict[str, Any]] = []
    seq: list[dict[str, Any]] = []
    for k in range(total):
        if k % 3 == 2 and sent:
            seq.append(rng.choice(sent))
        else:
            a = _alert(rng, k)
            sent.append(a)
            seq.append(a)
    bodies = []
    for i in range(0, total, batch):
        alerts = seq[i:i + batch]
        bodies.append(json.dumps({
            "version": "4", "groupKey": f"{{}}:{{batch=\"{i}\"}}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "onwatch", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": alerts,
        }).encode())
    return bodies, len(sent)


class RecordingAdapter:
    """A chat adapter that only notes when each incident's root message would have been posted."""

    platform = "bench"

    def __init__(self) -> None:
        self.announced: dict[str, float] = {}

    async def announce(self, card: IncidentCard, origin: ThreadOrigin | None) -> None:
        self.announced.setdefault(card.incident_id, time.perf_counter())

    async def update_card(self, card: IncidentCard) -> None:
        return None

    async def post(self, incident_id: str, message: Message) -> None:
        return None

    async def replace(self, incident_id: str, key: str, message: Message) -> None:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else 0.0


async def _storm_once(url: str, bodies: list[bytes], unique: int, per_batch: int, concurrency: int) -> dict[str, Any]:
    settings = Settings(database={"url": url}, webhooks={"token": TOKEN,  # type: ignore[arg-type]
                                                         "max_body_bytes": 4 * 1_048_576})
    db = Database(url, pool_size=concurrency + 2)
    ctx = context_for(settings, db)
    ctx.triage = TriageService(ctx)
    chat = RecordingAdapter()
    ctx.chat.add(chat)
    runner = web.AppRunner(create_app(ctx, installers=[routes.install]), access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    queue = list(reversed(bodies))
    acks: list[float] = []
    opened_at: dict[str, float] = {}
    retries = 0
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal retries
        while queue:
            body = queue.pop()
            while True:
                sent = time.perf_counter()
                async with session.post(f"http://127.0.0.1:{port}/webhooks/alertmanager", data=body,
                                        headers=headers) as r:
                    answer = await r.json()
                if r.status == 200:
                    break
                retries += 1
                await asyncio.sleep(0.05)
            acks.append(time.perf_counter() - sent)
            for inc in answer["opened"]:
                opened_at[inc] = sent

    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            started = time.perf_counter()
            await asyncio.gather(*(sender(session) for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        async with asyncio.timeout(120):
            await ctx.triage.drained()
        async with db.session() as s:
            stored = (await s.execute(select(func.count()).select_from(Alert))).scalar_one()
            incidents = (await s.execute(select(func.count()).select_from(Incident))).scalar_one()
    finally:
        await runner.cleanup()
        await ctx.triage.aclose()
        await db.dispose()
    to_thread = [chat.announced[i] - t for i, t in opened_at.items() if i in chat.announced]
    return {
        "alerts_per_s": round(len(bodies) * per_batch / elapsed, 1),
        "ack_p50_ms": round(statistics.median(acks) * 1000, 1), "ack_p99_ms": round(_pct(acks, 0.99) * 1000, 1),
        "lost": unique - int(stored), "incidents": int(incidents), "stored": int(stored), "unique_alerts": unique,
        "retries": retries, "alert_to_thread_p50_s": round(statistics.median(to_thread), 3) if to_thread else None,
        "announced": len(to_thread),
    }


def _pg_database(admin: str) -> tuple[str, str]:
    import psycopg

    name = f"onwatch_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin.rsplit("/", 1)[0] + f"/{name}", name


def _drop_pg(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def run(total: int, batch: int, concurrency: int = 4, pg_admin: str | None = None) -> dict[str, Any]:
    bodies, unique = storm(total, batch)
    per_batch = batch if total % batch == 0 else total / len(bodies)
    out: dict[str, Any] = {"alerts": total, "batch": batch, "senders": concurrency}
    with tempfile.TemporaryDirectory(prefix="onwatch-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        await asyncio.to_thread(upgrade, url)
        out["sqlite"] = await _storm_once(url, bodies, unique, int(per_batch), concurrency)
    admin = pg_admin or os.environ.get("ONWATCH_BENCH_PG") or DEFAULT_PG
    try:
        pg_url, name = await asyncio.to_thread(_pg_database, admin)
    except Exception as exc:  # noqa: BLE001 - any reason PostgreSQL is unusable is reported, not raised
        out["postgresql"] = {"skipped": f"PostgreSQL not reachable at {admin.split('@')[-1]}: {type(exc).__name__}"}
        return out
    try:
        await asyncio.to_thread(upgrade, pg_url)
        out["postgresql"] = await _storm_once(pg_url, bodies, unique, int(per_batch), concurrency)
    finally:
        await asyncio.to_thread(_drop_pg, admin, name)
    return out


def main(args: argparse.Namespace) -> int:
    total, batch, concurrency = int(args.alerts), int(args.batch), int(args.concurrency)
    if total < 1 or batch < 1 or concurrency < 1:
        print("onwatch bench ingest: --alerts, --batch and --concurrency must be positive", file=sys.stderr)
        return 2
    result = asyncio.run(run(total, batch, concurrency, getattr(args, "postgres", None)))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name in ("sqlite", "postgresql"):
            r = result[name]
            if "skipped" in r:
                print(f"{name:<10}: skipped ({r['skipped']})")
                continue
            print(f"{name:<10}: {r['alerts_per_s']:>8.1f} alerts/s  ack p50 {r['ack_p50_ms']} ms  p99 {r['ack_p99_ms']}"
                  f" ms  lost {r['lost']}  incidents {r['incidents']}  alert->thread p50 {r['alert_to_thread_p50_s']} s")
    lost = [r["lost"] for r in (result["sqlite"], result["postgresql"]) if "lost" in r]
    return 0 if not any(lost) else 1
