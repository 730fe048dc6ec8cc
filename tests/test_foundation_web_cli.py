"""Server health endpoints and the CLI's one-line failures for bad settings and bad databases."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import context_for, web_app
from bot.audit import BOT, audit
from bot.cli import main
from bot.context import AppContext
from bot.store.db import Database
from bot.store.migrate import upgrade


async def test_health_ready_metrics(ctx: AppContext) -> None:
    await ctx.jobs.enqueue("investigation", {})
    async with TestClient(TestServer(web_app(ctx))) as client:
        assert (await client.get("/healthz")).status == 200
        r = await client.get("/readyz")
        assert r.status == 200, await r.text()
        body = await (await client.get("/metrics")).text()
        assert 'onwatch_jobs{state="queued"} 1.0' in body
        assert "onwatch_http_requests_total" in body
        assert "onwatch_investigation_duration_seconds_bucket" in body


async def test_readyz_fails_when_schema_is_behind(tmp_path: Path, ctx: AppContext) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    await asyncio.to_thread(upgrade, url, "0001")
    old = Database(url)
    try:
        behind = context_for(ctx.settings, old)
        async with TestClient(TestServer(web_app(behind))) as client:
            r = await client.get("/readyz")
            assert r.status == 503
            assert "onwatch migrate" in (await r.json())["reason"]
    finally:
        await old.dispose()


def _run(args: list[str], env_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setenv("ONWATCH_DATABASE__URL", env_url)
    rc = main(args)
    return rc, capsys.readouterr().err


def test_unreachable_database(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _run(["migrate"], "postgresql://postgres@127.0.0.1:1/nothing", monkeypatch, capsys)
    assert rc == 3 and "unreachable" in err and "Traceback" not in err


def test_corrupted_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 200)
    rc, err = _run(["incidents", "list"], f"sqlite:///{bad}", monkeypatch, capsys)
    assert rc == 3 and "corrupted" in err


def test_schema_behind_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    rc, err = _run(["audit", "verify"], url, monkeypatch, capsys)
    assert rc == 3 and "onwatch migrate" in err
    rc, _ = _run(["migrate"], url, monkeypatch, capsys)
    assert rc == 0
    rc, _ = _run(["audit", "verify"], url, monkeypatch, capsys)
    assert rc == 0


def test_unsupported_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _run(["migrate"], "mysql://root@localhost/x", monkeypatch, capsys)
    assert rc == 3 and "unsupported backend" in err


def test_incidents_list_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    con = sqlite3.connect(tmp_path / "x.db")
    con.execute("INSERT INTO incident (id, title, status, phase, severity, services, group_key, owner, source, alert_count, opened_at, updated_at, summary) "
                "VALUES ('INC-1', 'Latency on checkout', 'open', 'new', 'high', '[\"checkout\"]', '', '', 'alertmanager', 2, 1700000000.0, 1700000000.0, '')")
    con.commit()
    con.close()
    monkeypatch.setenv("ONWATCH_DATABASE__URL", url)
    assert main(["incidents", "list", "--json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"id": "INC-1", "title": "Latency on checkout", "status": "open", "severity": "high",
                     "services": ["checkout"], "alert_count": 2, "opened_at": 1700000000.0,
                     "opened": "2023-11-14T22:13:20+00:00"}]


def test_serve_starts_and_stops_gracefully(tmp_path: Path) -> None:
    """`onwatch serve` as a real process: ready on /readyz, then SIGTERM ends it with exit 0."""
    import os
    import signal
    import socket
    import time
    import urllib.request

    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "ONWATCH_DATABASE__URL": url, "ONWATCH_SERVER__PORT": str(port),
           "ONWATCH_SERVER__HOST": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--json-logs"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        ok = False
        while time.time() < deadline and not ok:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    ok = r.status == 200
            except OSError:
                time.sleep(0.2)
        assert ok, proc.stderr.read1().decode() if proc.stderr else ""  # type: ignore[union-attr]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        logs = proc.stderr.read().decode() if proc.stderr else ""
        assert '"msg": "shutting down' in logs
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_audit_rows_from_the_bot(db: Database) -> None:
    row = await audit(db, BOT, "incident.opened", incident_id="INC-1", params={"a": 1})
    assert row.seq == 1 and len(row.hash) == 64


def test_noise_report_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import time as _time

    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    day = _time.strftime("%Y-%m-%d", _time.gmtime())
    con = sqlite3.connect(tmp_path / "n.db")
    for name, value in (("received", 120), ("duplicates", 40), ("suppressed", 10), ("incidents", 3),
                        ("pages", 3), ("pages@0", 3)):
        con.execute("INSERT INTO noise_counter (day, name, value) VALUES (?, ?, ?)", (day, name, value))
    con.commit()
    con.close()
    monkeypatch.setenv("ONWATCH_DATABASE__URL", url)
    assert main(["noise", "--json"]) == 0
    days = json.loads(capsys.readouterr().out)
    assert days[0]["day"] == day and days[0]["received"] == 120 and days[0]["shifts_over_budget"] == 1
    assert main(["noise"]) == 0
    assert "120" in capsys.readouterr().out
