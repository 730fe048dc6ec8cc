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
from pydantic import SecretStr
from sqlmodel import select

from bot.audit import Actor
from bot.store.db import Database
from bot.store.models import Execution
from integrations.executors import ExecutorRefused, ExecutorRegistry
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


async def test_a_stored_action_naming_an_env_variable_is_refused() -> None:
    """A proposal stored before secrets moved to the settings names ``hmac_secret_env``: it is refused, never
    sent unsigned; one naming a secret the settings lack is refused with where to set it."""
    http = HttpExecutor(secrets={"rollback_hook": SecretStr("s")})
    action = {"executor": "http", "method": "POST", "url": "https://ci.example.internal/x", "body": {}}
    with pytest.raises(ExecutorRefused, match="hmac_secret_env"):
        await http.preview({**action, "hmac_secret_env": "ROLLBACK_HOOK_SECRET"})
    with pytest.raises(ExecutorRefused, match="'flags_hook' is not set: set ONWATCH_RUNBOOKS__SECRETS__FLAGS_HOOK"):
        await http.execute({**action, "sign_with": "flags_hook"}, execution_id="e1")
    assert (await http.preview({**action, "sign_with": "rollback_hook"}))["signed"] is True
    assert (await http.preview(action))["signed"] is False


def test_signature_is_hmac_sha256_over_the_exact_body() -> None:
    body = body_bytes({"b": 1, "a": "x"})
    assert body == b'{"a":"x","b":1}'
    assert sign("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


async def test_documented_example_end_to_end(db: Database, tmp_path: Path,
                                             receiver: tuple[Receiver, httpx.AsyncClient]) -> None:
    recv, client = receiver
    (tmp_path / "rollback-via-pipeline.yaml").write_text(EXAMPLE)
    settings = make_settings(db.url, runbooks_dir=tmp_path, secrets={"rollback_hook": "hook-secret"})
    http = HttpExecutor(client, settings.runbooks.secrets)
    _ctx, svc, hub = make_ctx(settings, db, registry=ExecutorRegistry({"http": http}))
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


async def test_feature_flag_runbook(db: Database, receiver: tuple[Receiver, httpx.AsyncClient]) -> None:
    recv, client = receiver
    settings = make_settings(db.url, runbooks_dir=ROOT / "runbooks",
                             secrets={"flags_hook": "hook-secret", "rollback_hook": "hook-secret"})
    http = HttpExecutor(client, settings.runbooks.secrets)
    _ctx, svc, _hub = make_ctx(settings, db, registry=ExecutorRegistry({"http": http}))
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
                                                         receiver: tuple[Receiver, httpx.AsyncClient]) -> None:
    recv, client = receiver
    (tmp_path / "a.yaml").write_text(EXAMPLE)
    (tmp_path / "b.yaml").write_text(EXAMPLE.replace("id: rollback-via-pipeline", "id: slow-hook")
                                     .replace("sign_with: rollback_hook", "sign_with: slow\n  timeout_s: 0.3"))
    settings = make_settings(db.url, runbooks_dir=tmp_path,
                             secrets={"rollback_hook": "not-the-receivers-secret", "slow": "hook-secret"})
    http = HttpExecutor(client, settings.runbooks.secrets)
    _ctx, svc, hub = make_ctx(settings, db, registry=ExecutorRegistry({"http": http}))
    inc, inv = await seed(db, [{"service": "checkout", "kind": "deploy", "confidence": 0.6}])
    props = {p.runbook_id: p for p in await svc.propose(inc, inv)}
    for p in props.values():
        await svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    assert await svc.execute(props["rollback-via-pipeline"].id) == "failed"
    recv.delay_s = 2.0
    assert await svc.execute(props["slow-hook"].id) == "unknown"
    assert any("Outcome unknown" in n and "will not re-run" in n for n in hub.notes())
