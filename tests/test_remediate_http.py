"""The HTTP executor: the documented example runbook end to end with a signed body, the feature-flag
runbook, timeouts (unknown) and refused signatures."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestServer
from sqlmodel import select

from bot.audit import Actor
from bot.store.db import Database
from bot.store.models import Execution
from integrations.executors import ExecutorRegistry
from integrations.http_executor import HttpExecutor, body_bytes, sign
from tests.remediate_fixtures import ROOT, Receiver, RedirectTransport, make_ctx, make_settings, seed
from tests.test_remediate_catalog import EXAMPLE

U1 = Actor("slack", "U1", "ann")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, httpx.AsyncClient]]:
    recv = Receiver(secret="hook-secret")
    server = TestServer(recv.app(), host="127.0.0.1")
    await server.start_server()
    client = httpx.AsyncClient(transport=RedirectTransport(str(server.make_url(""))))
    try:
        yield recv, client
    finally:
        await client.aclose()
        await server.close()


def test_signature_is_hmac_sha256_over_the_exact_body() -> None:
    body = body_bytes({"b": 1, "a": "x"})
    assert body == b'{"a":"x","b":1}'
    assert sign("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


async def test_documented_example_end_to_end(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             receiver: tuple[Receiver, httpx.AsyncClient]) -> None:
    recv, client = receiver
    monkeypatch.setenv("ROLLBACK_HOOK_SECRET", "hook-secret")
    (tmp_path / "rollback-via-pipeline.yaml").write_text(EXAMPLE)
    settings = make_settings(db.url, runbooks_dir=tmp_path)
    _ctx, svc, hub = make_ctx(settings, db, registry=ExecutorRegistry({"http": HttpExecutor(client)}))
    inc, inv = await seed(db, [{"service": "checkout", "kind": "error_pattern", "confidence": 0.6}])
    [p] = await svc.propose(inc, inv)
    assert p.title == "Roll back checkout through the deploy pipeline"
    assert (await svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))).status == "approved"
    assert await svc.execute(p.id) == "succeeded"
    [got] = recv.received
    assert got["method"] == "POST" and got["path"] == "/hooks/rollback" and got["host"] == "ci.example.internal"
    assert got["body"] == {"service": "checkout", "incident": inc} and got["signature_ok"]
    async with db.session() as s:
        exe = (await s.exec(select(Execution))).one()
    assert got["delivery"] == exe.id and exe.after["status"] == 200
    assert exe.verification == ""  # no verify block: said so in the thread
    assert any("no verify block" in n for n in hub.notes())


async def test_feature_flag_runbook(db: Database, monkeypatch: pytest.MonkeyPatch,
                                    receiver: tuple[Receiver, httpx.AsyncClient]) -> None:
    recv, client = receiver
    monkeypatch.setenv("FLAGS_HOOK_SECRET", "hook-secret")
    monkeypatch.setenv("ROLLBACK_HOOK_SECRET", "hook-secret")
    settings = make_settings(db.url, runbooks_dir=ROOT / "runbooks")
    _ctx, svc, _hub = make_ctx(settings, db, registry=ExecutorRegistry({"http": HttpExecutor(client)}))
    inc, inv = await seed(db, [{"service": "checkout", "kind": "config_change", "confidence": 0.7}])
    props = {p.runbook_id: p for p in await svc.propose(inc, inv)}
    p = props["feature-flag-off"]
    assert p.preview["request"] == "PATCH https://flags.example.internal/api/flags/new-checkout-flow"
    await svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    assert await svc.execute(p.id) == "succeeded"
    [got] = recv.received
    assert got["method"] == "PATCH" and got["path"] == "/api/flags/new-checkout-flow"
    assert got["body"] == {"enabled": False, "reason": f"onwatch {inc}"} and got["signature_ok"]


async def test_wrong_secret_fails_and_timeout_is_unknown(db: Database, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         receiver: tuple[Receiver, httpx.AsyncClient]) -> None:
    recv, client = receiver
    monkeypatch.setenv("ROLLBACK_HOOK_SECRET", "not-the-receivers-secret")
    (tmp_path / "a.yaml").write_text(EXAMPLE)
    (tmp_path / "b.yaml").write_text(EXAMPLE.replace("id: rollback-via-pipeline", "id: slow-hook")
                                     .replace("hmac_secret_env: ROLLBACK_HOOK_SECRET",
                                              "hmac_secret_env: SLOW_SECRET\n  timeout_s: 0.3"))
    monkeypatch.setenv("SLOW_SECRET", "hook-secret")
    settings = make_settings(db.url, runbooks_dir=tmp_path)
    _ctx, svc, hub = make_ctx(settings, db, registry=ExecutorRegistry({"http": HttpExecutor(client)}))
    inc, inv = await seed(db, [{"service": "checkout", "kind": "deploy", "confidence": 0.6}])
    props = {p.runbook_id: p for p in await svc.propose(inc, inv)}
    for p in props.values():
        await svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    assert await svc.execute(props["rollback-via-pipeline"].id) == "failed"
    recv.delay_s = 2.0
    assert await svc.execute(props["slow-hook"].id) == "unknown"
    assert any("Outcome unknown" in n and "will not re-run" in n for n in hub.notes())
