"""``onwatch bench ingest``: alert-storm throughput through the real webhook endpoint vs a bare handler.

Both servers run in this process on loopback ports and receive the same storm: Alertmanager v4 batches
(default 100 alerts) with realistic label cardinality (services, pods, clusters, namespaces, alertnames),
a third of the alerts being re-sends of alerts already sent. The bare handler only reads the body and parses
it with the stdlib's ``json.loads`` (what aiohttp's ``request.json()`` does); onwatch authenticates, parses and
validates (pydantic-core), fingerprints, journals the batch and acknowledges it (202), and its grouper process
dedups, suppresses, groups and persists, and queues an investigation for every incident it opens. onwatch's
alerts per second count until the grouper has triaged the last batch (``TriageService.drained``), not until
the last acknowledgement; p50/p99 are the acknowledgements'. ``lost`` is unique alerts sent minus alerts
stored, in the worst run, and must be 0.

One run of either server is at the mercy of a slow spell of a shared machine, so the runs are interleaved
(bare, onwatch, bare, onwatch, ...; onwatch on a fresh database each time) and each figure is the median of
its runs, all of which are reported. Each server first takes one unmeasured storm of its own (a different
seed), so neither is measured on code paths it runs for the first time in the process. Peak memory is the process's peak RSS (client included): the bare figure
is taken after the bare warm-up, before onwatch first ran (its modules loaded), so it is the lower bound
of the shared process; the grouper process's own memory is not in either.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import resource
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

TOKEN = "bench-token"
BASELINE_RUNS = 5
ONWATCH_RUNS = 3
WARMUP_ALERTS = 1000
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


@dataclass
class Phase:
    alerts_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    peak_rss_mb: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024, 1) if sys.platform != "darwin" else round(kb / 1024 / 1024, 1)


async def _drive(url: str, bodies: list[bytes], per_batch: int, total: int, concurrency: int,
                 settle: Callable[[], Awaitable[None]] | None = None) -> Phase:
    """Send the storm; the figure counts until the last answer, and then until ``settle`` returns (onwatch's
    grouper has triaged every journaled batch)."""
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while not queue.empty():
            body = queue.get_nowait()
            t = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as r:
                await r.read()
                if r.status not in (200, 202):
                    errors += 1
            latencies.append(time.perf_counter() - t)

    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker(session))
        if settle is not None:
            await settle()
        elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Phase(total / elapsed, statistics.median(latencies) * 1000, p99 * 1000, errors, _peak_rss_mb())


async def _serve(app: web.Application, body: Callable[[str], Awaitable[Phase]]) -> Phase:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        return await body(f"http://127.0.0.1:{port}/webhooks/alertmanager")
    finally:
        await runner.cleanup()


def _bare_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        return web.json_response({"status": "ok", "received": len(data.get("alerts", []))})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/webhooks/alertmanager", handle)
    return app


async def _onwatch_once(bodies: list[bytes], total: int, batch: int,
                        concurrency: int) -> tuple[Phase, int, int, float]:
    """One storm through onwatch on a fresh SQLite database: the phase, alerts stored, incidents opened, and
    the seconds the grouper spent in its passes (how much of the run it was busy)."""
    from sqlmodel import func, select

    from bot.config import Settings
    from bot.context import AppContext
    from bot.intake import routes
    from bot.store.db import Database
    from bot.store.migrate import upgrade
    from bot.store.models import Alert, Incident
    from bot.triage.service import TriageService
    from bot.web import create_app

    with tempfile.TemporaryDirectory(prefix="onwatch-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        try:
            settings = Settings(database={"url": url},  # type: ignore[arg-type]
                                webhooks={"token": TOKEN, "max_body_bytes": 16 * 1024 * 1024})
            ctx = AppContext.for_db(settings, db)
            ctx.triage = TriageService(ctx)
            app = create_app(ctx, installers=[routes.install])
            try:
                await ctx.triage.start()  # as ``onwatch serve`` does before it takes requests
                phase = await _serve(app, lambda url: _drive(url, bodies, batch, total, concurrency,
                                                             ctx.triage.drained))
            finally:
                await ctx.triage.aclose()
            busy = ctx.metrics.registry.get_sample_value("onwatch_triage_pass_duration_seconds_sum") or 0.0
            async with db.session() as s:
                stored = int((await s.exec(select(func.count()).select_from(Alert))).one())
                incidents = int((await s.exec(select(func.count()).select_from(Incident))).one())
        finally:
            await db.dispose()
    return phase, stored, incidents, busy


def _median(phases: list[Phase]) -> Phase:
    return sorted(phases, key=lambda ph: ph.alerts_per_s)[len(phases) // 2]


async def run(total: int, batch: int, concurrency: int = 4, onwatch_runs: int = ONWATCH_RUNS) -> dict[str, Any]:
    # Both servers run in the same process state: onwatch's modules are loaded before the first run of either
    # (a process holding more objects pays more per garbage collection, whichever server runs).
    import bot.store.migrate  # noqa: F401
    import bot.triage.service  # noqa: F401
    import bot.web  # noqa: F401

    bodies, unique = storm(total, batch)
    # One unmeasured run of each first, on a storm of its own: the figures are those of running servers,
    # not of code paths taken for the first time in this process.
    warm_n = min(WARMUP_ALERTS, total)
    warm, _ = storm(warm_n, batch, seed=11)
    bare_rss = (await _serve(_bare_app(), lambda url: _drive(url, warm, batch, warm_n, concurrency))).peak_rss_mb
    await _onwatch_once(warm, warm_n, batch, concurrency)
    bare: list[Phase] = []
    ours: list[tuple[Phase, int, int, float]] = []
    for i in range(max(BASELINE_RUNS, onwatch_runs)):
        if i < BASELINE_RUNS:
            bare.append(await _serve(_bare_app(), lambda url: _drive(url, bodies, batch, total, concurrency)))
        if i < onwatch_runs:
            ours.append(await _onwatch_once(bodies, total, batch, concurrency))
    baseline = _median(bare)
    onwatch = _median([ph for ph, _, _, _ in ours])
    _, stored, incidents, busy = next(r for r in ours if r[0] is onwatch)
    return {
        "database": "sqlite",
        "alerts_sent": total, "unique_alerts": unique, "batch": batch, "batches": len(bodies),
        "concurrency": concurrency,
        "onwatch_alerts_per_s": round(onwatch.alerts_per_s, 1),
        "baseline_alerts_per_s": round(baseline.alerts_per_s, 1),
        "onwatch_runs_alerts_per_s": [round(ph.alerts_per_s, 1) for ph, _, _, _ in ours],
        "baseline_runs_alerts_per_s": [round(ph.alerts_per_s, 1) for ph in bare],
        "ratio": round(onwatch.alerts_per_s / baseline.alerts_per_s, 3),
        "onwatch_p50_ms": round(onwatch.p50_ms, 2), "onwatch_p99_ms": round(onwatch.p99_ms, 2),
        "baseline_p50_ms": round(baseline.p50_ms, 2), "baseline_p99_ms": round(baseline.p99_ms, 2),
        "onwatch_peak_rss_mb": max(ph.peak_rss_mb for ph, _, _, _ in ours), "baseline_peak_rss_mb": bare_rss,
        "onwatch_elapsed_ms": round(total / onwatch.alerts_per_s * 1000, 1),
        "onwatch_grouper_busy_ms": round(busy * 1000, 1),
        "stored": stored, "incidents": incidents, "lost": max(unique - n for _, n, _, _ in ours),
        "errors": sum(ph.errors for ph, _, _, _ in ours) + sum(ph.errors for ph in bare),
    }


def main(args: argparse.Namespace) -> int:
    total = int(getattr(args, "alerts", 5000))
    batch = int(getattr(args, "batch", 100))
    concurrency = int(getattr(args, "concurrency", 4))
    if total < 1 or batch < 1 or concurrency < 1:
        print("onwatch bench ingest: --alerts, --batch and --concurrency must be positive", file=sys.stderr)
        return 2
    result = asyncio.run(run(total, batch, concurrency))
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        print(f"onwatch : {result['onwatch_alerts_per_s']:>10.1f} alerts/s  p50 {result['onwatch_p50_ms']} ms  "
              f"p99 {result['onwatch_p99_ms']} ms  peak RSS {result['onwatch_peak_rss_mb']} MB")
        print(f"baseline: {result['baseline_alerts_per_s']:>10.1f} alerts/s  p50 {result['baseline_p50_ms']} ms  "
              f"p99 {result['baseline_p99_ms']} ms  peak RSS {result['baseline_peak_rss_mb']} MB")
        print(f"ratio {result['ratio']}  lost {result['lost']}  stored {result['stored']}/{result['unique_alerts']}"
              f"  incidents {result['incidents']}  errors {result['errors']}")
    return 0 if result["lost"] == 0 and result["errors"] == 0 else 1
