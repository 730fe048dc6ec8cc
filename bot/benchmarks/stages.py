"""``onwatch bench ingest-stages``: what each step of alert intake costs per alert, next to the bare handler.

``onwatch bench ingest`` says how far onwatch is from the issue's aim (ratio 0.25); this says why, and what
any design could reach on the machine it runs on. It times, on the same storm as ``bench ingest`` and in
one process:

* ``bare_request``: a whole request to the bare handler (client, HTTP, ``json.loads``, the reply), per alert;
* ``empty_request``: the same with no parse at all (the client's and HTTP's share, which no design avoids);
* ``read_alerts``: authenticating aside, parsing and validating a body into ``AlertIn``s (pydantic-core);
* ``prepare``: fingerprint, content hash, canonical JSON and grouping identity of those ``AlertIn``s;
* ``read_prepared``: the two in one, as the journaled path does them (no ``AlertIn`` in between);
* ``journal_record``: encoding a prepared batch as an intake-journal record;
* ``pass_small``: the triage pass on a fresh SQLite file in groups of ``concurrency`` batches, what the
  acknowledge-after-commit path gets with that many requests in flight;
* ``pass_large``: the pass over the whole storm in one group, the cheapest a backlog drained in bulk gets.

From those it derives two ceilings of the ratio, each an upper bound that leaves out every overhead:

* ``serial``: acknowledge after the commit (onwatch on PostgreSQL, or ``triage.journal: off``); one process,
  so the steps add up: ``empty_request + read_alerts + prepare + pass_small``;
* ``overlapped``: acknowledge once the prepared batch is journaled and triage the backlog in bulk in a second
  process on another core, as onwatch does on SQLite; the slower side bounds it:
  ``max(empty_request + read_prepared + journal_record, pass_large)`` (the write itself, the grouper's reading
  and decoding, and the per-group costs of groups smaller than the storm are left out).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.benchmarks import ingest

AIM = 0.25
REPEATS = 5


def _per_alert_us(fn: Callable[[], object], alerts: int, repeats: int) -> float:
    """Median over ``repeats`` of ``fn``'s cost per alert, each timed after a full collection."""
    runs = []
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) / alerts * 1e6)
    return statistics.median(runs)


def _empty_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"status": "ok", "bytes": len(body)})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/webhooks/alertmanager", handle)
    return app


async def _request_us(make_app: Callable[[], web.Application], bodies: list[bytes], total: int, batch: int,
                      concurrency: int, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        phase = await ingest._serve(make_app(), lambda url: ingest._drive(url, bodies, batch, total, concurrency))
        runs.append(1e6 / phase.alerts_per_s)
    return statistics.median(runs)


def _one_pass(store: Any, settings: Any, group: list[Any], now: float, investigation_rows: Any) -> object:
    from bot.triage.txn import TriagePass

    return TriagePass(store, settings, group, now, investigation_rows).run()


def _pass_us(prepared: list[list[Any]], per_group: int, repeats: int) -> float:
    """The triage pass alone, on a fresh migrated SQLite file per run, ``per_group`` batches per transaction."""
    from bot.audit import BOT
    from bot.config import TriageSettings
    from bot.investigate.service import investigation_rows
    from bot.store.migrate import upgrade
    from bot.triage.store import SqliteWriter
    from bot.triage.txn import Batch, IngestOutcome

    settings = TriageSettings()
    total = sum(len(p) for p in prepared)
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="onwatch-stages-") as tmp:
            path = Path(tmp) / "stages.db"
            upgrade(f"sqlite:///{path}")
            writer = SqliteWriter(str(path))
            try:
                now = time.time()
                gc.collect()
                t = time.perf_counter()
                for i in range(0, len(prepared), per_group):
                    group = [Batch(p, BOT, IngestOutcome(received=len(p))) for p in prepared[i:i + per_group]]
                    writer.run(functools.partial(_one_pass, settings=settings, group=group, now=now,
                                                 investigation_rows=investigation_rows))
                runs.append((time.perf_counter() - t) / total * 1e6)
            finally:
                writer.close()
    return statistics.median(runs)


async def run(total: int = 5000, batch: int = 100, concurrency: int = 4, repeats: int = REPEATS) -> dict[str, Any]:
    from bot.audit import BOT
    from bot.intake.payloads import PAYLOADS
    from bot.intake.routes import read_alerts, read_prepared
    from bot.triage.grouper import encode_record
    from bot.triage.prepared import prepare

    model = PAYLOADS["alertmanager"]
    bodies, _ = ingest.storm(total, batch)
    alerts = [read_alerts(model, b) for b in bodies]
    prepared = [[prepare(a) for a in batch_alerts] for batch_alerts in alerts]

    def each(fn: Callable[[Any], object], items: list[Any]) -> Callable[[], None]:
        def go() -> None:
            for item in items:  # each result dropped at once, as a request's are
                fn(item)
        return go

    us = {
        "bare_request": await _request_us(ingest._bare_app, bodies, total, batch, concurrency, repeats),
        "empty_request": await _request_us(_empty_app, bodies, total, batch, concurrency, repeats),
        "json_loads": _per_alert_us(each(json.loads, bodies), total, repeats),
        "read_alerts": _per_alert_us(each(lambda b: read_alerts(model, b), bodies), total, repeats),
        "prepare": _per_alert_us(each(lambda al: [prepare(a) for a in al], alerts), total, repeats),
        "read_prepared": _per_alert_us(each(lambda b: read_prepared(model, b), bodies), total, repeats),
        "journal_record": _per_alert_us(each(lambda p: encode_record("alertmanager", BOT, 0.0, p), prepared),
                                        total, repeats),
    }
    passes = await asyncio.to_thread(lambda: (_pass_us(prepared, concurrency, repeats),
                                              _pass_us(prepared, len(prepared), repeats)))
    us["pass_small"], us["pass_large"] = passes
    serial_us = us["empty_request"] + us["read_alerts"] + us["prepare"] + us["pass_small"]
    intake = us["empty_request"] + us["read_prepared"] + us["journal_record"]
    serial = us["bare_request"] / serial_us
    overlapped = us["bare_request"] / max(intake, us["pass_large"])
    return {
        "alerts": total, "batch": batch, "concurrency": concurrency, "repeats": repeats,
        "us_per_alert": {k: round(v, 2) for k, v in us.items()},
        "intake_us_per_alert": round(intake, 2),
        "ceiling_serial": round(serial, 3),
        "ceiling_overlapped": round(overlapped, 3),
        "aim": AIM,
        "bound_by": "intake" if intake >= us["pass_large"] else "triage pass",
    }


def main(args: argparse.Namespace) -> int:
    total = int(getattr(args, "alerts", 5000))
    batch = int(getattr(args, "batch", 100))
    concurrency = int(getattr(args, "concurrency", 4))
    repeats = int(getattr(args, "repeats", REPEATS))
    if min(total, batch, concurrency, repeats) < 1:
        print("onwatch bench ingest-stages: --alerts, --batch, --concurrency and --repeats must be positive",
              file=sys.stderr)
        return 2
    result = asyncio.run(run(total, batch, concurrency, repeats))
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
        return 0
    for name, value in result["us_per_alert"].items():
        print(f"{name:>14}: {value:8.2f} µs/alert")
    print(f"ceiling, acknowledge after the commit (one core): {result['ceiling_serial']}")
    print(f"ceiling, acknowledge before triage (two cores, free journal): {result['ceiling_overlapped']} "
          f"(bound by the {result['bound_by']})")
    print(f"aim: {result['aim']}")
    return 0
