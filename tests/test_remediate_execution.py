"""Execution: scope refusal after approval, automatic runs (allowlist, confidence, rate limit, kill switch),
a crash mid-execution (unknown, never re-run), and verification (recovered / did not help)."""

from __future__ import annotations

import argparse
import asyncio
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestServer
from sqlmodel import col, select

from bot.audit import Actor
from bot.jobs import JobRunner
from bot.remediate import killswitch
from bot.remediate.catalog import load_catalog
from bot.remediate.service import RemediationService
from bot.store.db import Database
from bot.store.models import AuditEvent, Execution, Incident, Job, Proposal
from integrations.executors import ExecutorRegistry
from integrations.http_executor import HttpExecutor
from tests.remediate_fixtures import (
    Receiver,
    RecordingHub,
    RedirectTransport,
    ScriptedMetrics,
    make_ctx,
    make_settings,
    seed,
)

U1 = Actor("slack", "U1", "ann")
HOOK = textwrap.dedent("""\
    id: {id}
    title: Recycle {{service}} connections
    match: {{kinds: [connection_pool_exhausted, oom_kill, deploy], services: ["*"]}}
    action:
      executor: http
      method: POST
      url: https://ops.example.internal/recycle/{{service}}
      body: {{service: "{{service}}"}}
      sign_with: ops
      timeout_s: {timeout}
    scope: {{services: [checkout, cart], hosts: [ops.example.internal]}}
    risk: low
    approval: {{groups: [sre-oncall]}}
    auto: {{classes: [connection_pool_exhausted], min_confidence: 0.8, max_per_service_per_hour: 2}}
    verify: {{signal: error_rate, below: 0.05, deadline_s: {deadline}, poll_s: 0.02, consecutive: 2}}
""")


@dataclass
class Env:
    svc: RemediationService
    hub: RecordingHub
    recv: Receiver
    db: Database
    metrics: ScriptedMetrics
    dir: Path


@pytest.fixture
async def env(db: Database, tmp_path: Path) -> AsyncIterator[Env]:
    recv = Receiver(secret="ops")
    server = TestServer(recv.app(), host="127.0.0.1")
    await server.start_server()
    client = httpx.AsyncClient(transport=RedirectTransport(str(server.make_url(""))))
    d = tmp_path / "rb"
    d.mkdir()
    (d / "hook.yaml").write_text(HOOK.format(id="recycle", timeout=10, deadline=0.5))
    metrics = ScriptedMetrics({"error_rate": [0.3, 0.2, 0.01, 0.01]})
    settings = make_settings(db.url, runbooks_dir=d, secrets={"ops": "ops"})
    ctx, svc, hub = make_ctx(settings, db,
                             registry=ExecutorRegistry({"http": HttpExecutor(client, settings.runbooks.secrets)}),
                             metrics=metrics)
    try:
        yield Env(svc, hub, recv, db, metrics, d)
    finally:
        await client.aclose()
        await server.close()


async def _actions(db: Database, prefix: str) -> list[AuditEvent]:
    async with db.session() as s:
        return list((await s.exec(select(AuditEvent).where(col(AuditEvent.action).startswith(prefix))
                                  .order_by(col(AuditEvent.seq)))).all())


async def _offer(env: Env, kind: str = "deploy", confidence: float = 0.9, service: str = "checkout") -> Proposal:
    inc, inv = await seed(env.db, [{"service": service, "kind": kind, "confidence": confidence}])
    [p] = await env.svc.propose(inc, inv)
    return p


async def test_scope_is_checked_again_after_approval(env: Env) -> None:
    p = await _offer(env)
    assert (await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))).status == "approved"
    # the operator narrows the runbook's scope after the approval: the action is refused, nothing is sent
    (env.dir / "hook.yaml").write_text(HOOK.format(id="recycle", timeout=10, deadline=0.5)
                                       .replace("services: [checkout, cart]", "services: [cart]"))
    env.svc.catalog = load_catalog(env.dir, env.svc.settings)
    assert await env.svc.execute(p.id) == "failed"
    assert env.recv.received == []
    async with env.db.session() as s:
        exe = (await s.exec(select(Execution))).one()
    assert exe.status == "failed" and "out of scope" in exe.error and "checkout" in exe.error
    assert any("out of scope" in n for n in env.hub.notes())
    [row] = await _actions(env.db, "proposal.failed")
    assert row.params["refused"] is True


async def test_tampered_parameters_are_refused(env: Env) -> None:
    p = await _offer(env)
    await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    async with env.db.begin() as s:
        row = await s.get(Proposal, p.id)
        assert row is not None
        row.service = "payments"  # e.g. someone edits the row: scope is checked on what would run
        s.add(row)
    assert await env.svc.execute(p.id) == "failed"
    assert env.recv.received == []


async def test_auto_execution_only_for_allowlisted_classes(env: Env) -> None:
    manual = await _offer(env, kind="deploy")
    assert manual.status == "pending" and not manual.auto
    low = await _offer(env, kind="connection_pool_exhausted", confidence=0.5)
    assert low.status == "pending"
    [declined] = [r for r in await _actions(env.db, "proposal.auto_declined") if r.params["proposal_id"] == low.id]
    assert "below the automatic minimum" in declined.result
    auto = await _offer(env, kind="connection_pool_exhausted", confidence=0.9, service="cart")
    assert auto.status == "approved" and auto.auto
    assert await env.svc.execute(auto.id) == "succeeded"
    async with env.db.session() as s:
        exe = (await s.exec(select(Execution).where(Execution.proposal_id == auto.id))).one()
    assert exe.auto and [r["path"] for r in env.recv.received] == ["/recycle/cart"]


async def test_auto_rate_limit_per_service_per_hour(env: Env) -> None:
    first = await _offer(env, kind="connection_pool_exhausted", confidence=0.95)
    assert first.status == "approved"
    assert await env.svc.execute(first.id) == "succeeded"
    second = await _offer(env, kind="connection_pool_exhausted", confidence=0.95)
    assert second.status == "approved"  # limit is 2 per service per hour
    third = await _offer(env, kind="connection_pool_exhausted", confidence=0.95)
    assert third.status == "pending" and not third.auto
    reasons = [r.result for r in await _actions(env.db, "proposal.auto_declined")]
    assert any("rate limit: 2 automatic run(s)" in r for r in reasons)
    other = await _offer(env, kind="connection_pool_exhausted", confidence=0.95, service="cart")
    assert other.status == "approved"  # the limit is per service


async def test_kill_switch(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    auto = await _offer(env, kind="connection_pool_exhausted", service="cart")
    assert auto.status == "approved"
    await killswitch.set_auto(env.db, False, Actor("cli", "root"))
    # already auto-approved but not started: refused at execution time
    assert await env.svc.execute(auto.id) == "failed"
    assert env.recv.received == []
    # new matches are no longer auto-approved; a human can still approve
    p = await _offer(env, kind="connection_pool_exhausted")
    assert p.status == "pending"
    assert (await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))).status == "approved"
    assert await env.svc.execute(p.id) == "succeeded"
    assert [r.action for r in await _actions(env.db, "auto.")] == ["auto.off"]
    await killswitch.set_auto(env.db, True, Actor("cli", "root"))
    assert (await _offer(env, kind="connection_pool_exhausted", service="cart")).status == "approved"


def test_kill_switch_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main as cli_main
    from bot.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'k.db'}"
    upgrade(url)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"database: {{url: '{url}'}}\n")  # off until an operator turns it on
    assert cli_main(["auto", "status", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == "automatic execution: off (runbooks.auto_enabled is false)"
    cfg.write_text(f"database: {{url: '{url}'}}\nrunbooks: {{auto_enabled: true}}\n")
    assert cli_main(["auto", "status", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == "automatic execution: on"
    assert cli_main(["auto", "off", "--config", str(cfg)]) == 0
    assert "automatic execution: off (switched off by cli:" in capsys.readouterr().out
    cfg.write_text(f"database: {{url: '{url}'}}\nrunbooks: {{auto_enabled: false}}\n")
    assert killswitch.main(argparse.Namespace(config=str(cfg), state="on")) == 0
    assert "runbooks.auto_enabled is false" in capsys.readouterr().out


async def test_setting_disables_auto(db: Database, tmp_path: Path) -> None:
    d = tmp_path / "rb"
    d.mkdir()
    (d / "hook.yaml").write_text(HOOK.format(id="recycle", timeout=10, deadline=0.5))
    settings = make_settings(db.url, runbooks_dir=d, auto_enabled=False, secrets={"ops": "ops"})
    _ctx, svc, _hub = make_ctx(settings, db,
                               registry=ExecutorRegistry({"http": HttpExecutor(secrets=settings.runbooks.secrets)}))
    inc, inv = await seed(db, [{"service": "cart", "kind": "connection_pool_exhausted", "confidence": 0.99}])
    [p] = await svc.propose(inc, inv)
    assert p.status == "pending"


async def test_crash_mid_execution_leaves_unknown_and_never_reruns(env: Env) -> None:
    p = await _offer(env)
    await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    env.recv.delay_s = 60  # the executor hangs on the receiver
    ctx = env.svc.ctx
    runner = JobRunner(db=env.db, queue=ctx.jobs, handlers={"execution": env.svc.run_execution},
                       on_lost={"execution": env.svc.on_execution_lost}, lease_s=0.5)
    job = await runner.claim()
    assert job is not None
    task = asyncio.create_task(runner.run_one(job))
    for _ in range(200):
        if env.recv.received:
            break
        await asyncio.sleep(0.02)
    assert len(env.recv.received) == 1
    # the worker dies: no renewal, no finish
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with env.db.session() as s:
        assert (await s.get(Proposal, p.id)).status == "executing"  # type: ignore[union-attr]
    await asyncio.sleep(0.7)  # the lease expires
    second = JobRunner(db=env.db, queue=ctx.jobs, handlers={"execution": env.svc.run_execution},
                       on_lost={"execution": env.svc.on_execution_lost}, lease_s=0.5)
    assert await second.run_until_idle() == 0  # nothing to run again
    async with env.db.session() as s:
        prop = await s.get(Proposal, p.id)
        exe = (await s.exec(select(Execution))).one()
        j = await s.get(Job, job.id)
        inc = await s.get(Incident, p.incident_id)
    assert prop is not None and prop.status == "unknown"
    assert exe.status == "unknown" and "mid-run" in exe.error
    assert j is not None and j.status == "unknown"
    assert inc is not None and inc.phase == "execution_unknown"
    assert [r.action for r in await _actions(env.db, "proposal.unknown")] == ["proposal.unknown"]
    assert any("will not re-run it" in n for n in env.hub.notes())
    # and never re-run: a retry of the handler and another reap do nothing
    await env.svc.run_execution(job)
    await second.reap_expired()
    assert len(env.recv.received) == 1


async def test_verification_recovers_and_mitigates(env: Env) -> None:
    p = await _offer(env)
    await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    assert await env.svc.execute(p.id) == "succeeded"
    async with env.db.session() as s:
        exe = (await s.exec(select(Execution))).one()
        vjob = (await s.exec(select(Job).where(Job.kind == "verification"))).one()
    assert exe.verification == "pending" and vjob.payload == {"execution_id": exe.id}
    runner = JobRunner(db=env.db, queue=env.svc.ctx.jobs, handlers={"verification": env.svc.run_verification})
    assert await runner.run_until_idle() == 1
    async with env.db.session() as s:
        exe = (await s.exec(select(Execution))).one()
        inc = await s.get(Incident, p.incident_id)
    assert exe.verification == "recovered" and exe.verified_at is not None
    assert inc is not None and inc.status == "mitigated" and inc.phase == "verified"
    assert env.metrics.calls == 4  # 0.3, 0.2, then two good polls in a row
    assert any("Recovered" in n and "mitigated" in n for n in env.hub.notes())
    [row] = await _actions(env.db, "verification.")
    assert row.action == "verification.recovered" and row.params["value"] == 0.01


async def test_verification_failure_says_the_fix_did_not_help(env: Env) -> None:
    env.metrics.values["error_rate"] = [0.4]
    p = await _offer(env)
    await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    assert await env.svc.execute(p.id) == "succeeded"
    async with env.db.session() as s:
        exe = (await s.exec(select(Execution))).one()
    assert await env.svc.verify(exe.id) == "not_recovered"
    async with env.db.session() as s:
        exe = (await s.exec(select(Execution))).one()
        inc = await s.get(Incident, p.incident_id)
    assert exe.verification == "not_recovered"
    assert inc is not None and inc.status == "open" and inc.phase == "not_recovered"
    assert any("did not help" in n and "error_rate = 0.4" in n for n in env.hub.notes())
    assert await env.svc.verify(exe.id) == "not_recovered"  # idempotent
    assert len(await _actions(env.db, "verification.")) == 1


async def test_app_wires_the_service(db: Database, tmp_path: Path) -> None:
    from bot.app import build_context, build_runner

    ctx = await build_context(make_settings(db.url), db)
    assert isinstance(ctx.remediation, RemediationService)
    runner = build_runner(ctx)
    assert runner.handlers["execution"] == ctx.remediation.run_execution
    assert runner.handlers["verification"] == ctx.remediation.run_verification
    assert runner.on_lost["execution"] == ctx.remediation.on_execution_lost
