"""A real Alertmanager (Debian ``prometheus-alertmanager``) delivers to onwatch through its own webhook.

Alerts pushed to Alertmanager's API arrive as v4 webhooks with the bearer token, become one incident per
group, and resolving them in Alertmanager resolves the incidents.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.intake import routes
from bot.web import create_app
from tests.integrations_fixtures import free_port
from tests.triage_fixtures import TOKEN, alerts, dead_letters, incidents, make_ctx

AM_BIN = "/usr/bin/prometheus-alertmanager"

pytestmark = pytest.mark.alertmanager


@pytest.fixture
async def onwatch(db) -> AsyncIterator[tuple[object, int]]:
    ctx = make_ctx(db)
    runner = web.AppRunner(create_app(ctx, installers=[routes.install]), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield ctx, port
    finally:
        await runner.cleanup()
        await ctx.triage.aclose()


@pytest.fixture
async def alertmanager(onwatch, tmp_path: Path) -> AsyncIterator[str]:
    if not shutil.which(AM_BIN):
        pytest.skip(f"{AM_BIN} not installed (Debian package prometheus-alertmanager)")
    _ctx, onwatch_port = onwatch
    port = free_port()
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(f"""
route:
  receiver: onwatch
  group_by: [alertname, service]
  group_wait: 200ms
  group_interval: 500ms
  repeat_interval: 1h
receivers:
  - name: onwatch
    webhook_configs:
      - url: http://127.0.0.1:{onwatch_port}/webhooks/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials: {TOKEN}
""")
    proc = await asyncio.create_subprocess_exec(
        AM_BIN, f"--config.file={cfg}", f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 5
            while True:
                try:
                    async with s.get(f"{url}/-/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline or proc.returncode is not None:
                    err = (await proc.stderr.read()).decode() if proc.returncode is not None and proc.stderr else ""
                    pytest.fail(f"alertmanager did not become ready: {err[-2000:]}")
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def am_alert(name: str, service: str, namespace: str, ends: datetime | None = None, **labels: str) -> dict:
    a = {
        "labels": {"alertname": name, "service": service, "namespace": namespace, "severity": "critical", **labels},
        "annotations": {"summary": f"{name} on {service}"},
        "startsAt": (datetime.now(UTC) - timedelta(minutes=2)).isoformat(),
        "generatorURL": "http://prometheus.local/graph",
    }
    if ends is not None:
        a["endsAt"] = ends.isoformat()
    return a


async def wait_for(pred, within_s: float = 7.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within_s
    while True:
        value = await pred()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


async def test_alertmanager_groups_become_incidents_and_resolve(db, onwatch, alertmanager):
    group_a = [am_alert("HighLatency", "checkout", "shop", pod="checkout-1"),
               am_alert("HighLatency", "checkout", "shop", pod="checkout-2")]
    group_b = [am_alert("DiskFull", "ledger", "finance")]
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{alertmanager}/api/v2/alerts", json=group_a + group_b) as r:
            assert r.status == 200, await r.text()

        async def two_incidents():  # type: ignore[no-untyped-def]
            incs = await incidents(db)
            return incs if len(incs) == 2 and sum(i.alert_count for i in incs) == 3 else None

        incs = await wait_for(two_incidents)
        assert incs, f"incidents: {await incidents(db)}; dead letters: {[d.reason for d in await dead_letters(db)]}"
        by_service = {i.services[0]: i for i in incs}
        assert by_service["checkout"].alert_count == 2 and by_service["ledger"].alert_count == 1
        assert by_service["checkout"].severity == "critical"
        stored = await alerts(db)
        assert all(a.fingerprint.startswith("alertmanager:") and ":h:" not in a.fingerprint for a in stored)

        past = datetime.now(UTC) - timedelta(seconds=5)
        resolved = [am_alert(a["labels"]["alertname"], a["labels"]["service"], a["labels"]["namespace"], ends=past,
                             **{k: v for k, v in a["labels"].items() if k == "pod"}) for a in group_a + group_b]
        async with s.post(f"{alertmanager}/api/v2/alerts", json=resolved) as r:
            assert r.status == 200

        async def all_resolved():  # type: ignore[no-untyped-def]
            incs = await incidents(db)
            return incs if incs and all(i.status == "resolved" for i in incs) else None

        done = await wait_for(all_resolved)
        assert done, [(i.id, i.status) for i in await incidents(db)]
    assert await dead_letters(db) == []
