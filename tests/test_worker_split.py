"""The write credential in its own process (issue 21): with ``runbooks.execute_in: worker`` the server proposes
and approves with preview-only executors on the read credential, and ``onwatch worker`` runs the approved
runbook with the write credential; ``onwatch worker --kinds`` and ``onwatch --version`` on the command line."""

from __future__ import annotations

import asyncio
import importlib.metadata
import shutil
from pathlib import Path

import pytest
from sqlmodel import select

from bot.app import EXECUTION_KINDS, build_context, build_runner, running, server_kinds, working
from bot.audit import Actor
from bot.cli import build_parser, main
from bot.config import Settings
from bot.context import AppContext
from bot.remediate.preview_only import PreviewOnly
from bot.store.db import Database
from bot.store.models import Execution, Incident, Job, Proposal
from integrations.base import Sources
from integrations.executors import ExecutorRefused
from integrations.kubernetes_write import KubernetesWriteExecutor
from tests.fakes.k8s_write import REVISION, FakeK8s
from tests.remediate_fixtures import (
    ROOT,
    RecordingHub,
    ScriptedMetrics,
    make_settings,
    seed,
    shop_cluster,
    start_fake_k8s,
)

U1 = Actor("slack", "U1", "ann")


def split(settings: Settings) -> Settings:
    return settings.model_copy(update={"runbooks": settings.runbooks.model_copy(update={"execute_in": "worker"})})


def fast_runbooks(tmp_path: Path) -> Path:
    """The shipped catalog, with the rollback's verification polling every 0.02 s instead of every 30 s (its
    action, scope and preconditions unchanged)."""
    out = tmp_path / "runbooks"
    shutil.copytree(ROOT / "runbooks", out)
    rb = out / "rollback-deployment.yaml"
    text = rb.read_text()
    assert "poll_s: 30" in text
    rb.write_text(text.replace("poll_s: 30", "poll_s: 0.02"))
    return out


async def wait_for_job(db: Database, kind: str, status: str) -> Job:
    """Poll until a job of ``kind`` reaches ``status`` (bounded so a broken worker fails instead of hanging)."""
    for _ in range(600):
        async with db.session() as s:
            job = (await s.exec(select(Job).where(Job.kind == kind))).first()
        if job is not None and job.status == status:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} job reached {status}: {job}")


async def test_server_without_the_write_credential(db: Database, tmp_path: Path) -> None:
    missing = tmp_path / "missing-write.kubeconfig"
    read_cfg = tmp_path / "read.kubeconfig"
    read_cfg.write_text("{}")
    settings = split(make_settings(db.url, kubeconfig=missing, read_kubeconfig=read_cfg))
    server = await build_context(settings, db)
    worker = await build_context(settings, db, role="worker")
    try:
        assert server.remediation is not None and worker.remediation is not None
        # the server holds preview-only executors, its Kubernetes one on the read credential only
        kube = server.remediation.executors.get("kubernetes")
        assert isinstance(kube, PreviewOnly) and isinstance(server.remediation.executors.get("http"), PreviewOnly)
        assert isinstance(kube.inner, KubernetesWriteExecutor) and kube.inner.settings is not None
        assert kube.inner.settings.write_kubeconfig == read_cfg != missing
        with pytest.raises(ExecutorRefused, match="onwatch worker"):
            await kube.execute({"executor": "kubernetes", "operation": "restart"}, execution_id="x")
        # the server's runner has no handler for the execution kinds, but still records a lost execution
        assert set(server_kinds(settings)).isdisjoint(EXECUTION_KINDS)
        async with running(server, host="127.0.0.1", port=0) as r:
            assert "investigation" in r.runner.handlers
            assert not set(r.runner.handlers) & set(EXECUTION_KINDS)
            assert r.runner.on_lost["execution"] == server.remediation.on_execution_lost
        # the worker's executor is the write one, pointed at the (missing) write kubeconfig
        wkube = worker.remediation.executors.get("kubernetes")
        assert isinstance(wkube, KubernetesWriteExecutor) and not isinstance(wkube, PreviewOnly)
        with pytest.raises(ExecutorRefused, match="missing-write.kubeconfig does not exist"):
            await wkube.api()
        # without the split, the server builds the write executors as before
        together = await build_context(make_settings(db.url, kubeconfig=missing), db)
        assert isinstance(together.remediation.executors.get("kubernetes"), KubernetesWriteExecutor)  # type: ignore[union-attr]
        assert set(EXECUTION_KINDS) <= set(build_runner(together, kinds=server_kinds(together.settings)).handlers)
        await together.remediation.aclose()  # type: ignore[union-attr]
    finally:
        await server.remediation.aclose()  # type: ignore[union-attr]
        await worker.remediation.aclose()  # type: ignore[union-attr]


def _recording(ctx: AppContext) -> RecordingHub:
    hub = RecordingHub(ctx.db)
    ctx.chat = hub
    return hub


async def test_worker_executes_what_the_server_approved(db: Database, tmp_path: Path) -> None:
    fake = FakeK8s(token="read-token")  # the cluster accepts the read token while the server proposes
    shop_cluster(fake)
    k8s = await start_fake_k8s(fake)
    base = str(k8s.make_url("")).rstrip("/")
    write_cfg = fake.kubeconfig(tmp_path / "write.kubeconfig", base, token="write-token")
    read_cfg = fake.kubeconfig(tmp_path / "read.kubeconfig", base, token="read-token", context="prod-read")
    settings = split(make_settings(db.url, runbooks_dir=fast_runbooks(tmp_path), kubeconfig=write_cfg,
                                   read_kubeconfig=read_cfg))
    server = await build_context(settings, db)
    server_hub = _recording(server)
    assert server.remediation is not None
    try:
        inc, inv = await seed(db, [{"service": "checkout", "kind": "deploy", "confidence": 0.9}])
        props = [p for p in await server.remediation.propose(inc, inv) if p.runbook_id == "rollback-deployment"]
        assert props, server_hub.refused()
        p = props[0]
        assert p.preview["current_revision"] == "3" and p.preview["target_revision"] == "2"
        assert fake.requests and {r["token"] for r in fake.requests} == {"read-token"} and fake.writes() == []
        assert (await server.remediation.decide(p.id, U1, "approve", frozenset({"slack:U1"}))).status == "approved"

        # the server's own runner leaves the execution job alone
        assert await build_runner(server, kinds=server_kinds(settings)).run_until_idle() == 0
        async with db.session() as s:
            job = (await s.exec(select(Job).where(Job.kind == "execution"))).one()
        assert job.status == "queued" and job.payload == {"proposal_id": p.id}

        fake.token = "write-token"  # from here on only the write token is accepted
        seen_before = len(fake.requests)
        worker = await build_context(settings, db, role="worker")
        worker_hub = _recording(worker)
        worker.sources_factory = lambda: Sources(metrics=ScriptedMetrics({"error_rate": [0.01]}))
        async with working(worker, EXECUTION_KINDS) as runner:
            assert set(runner.handlers) == set(EXECUTION_KINDS)
            done = await wait_for_job(db, "execution", "done")
            assert done.lease_owner == "" and (await wait_for_job(db, "verification", "done")).attempts == 1

        dep = fake.deployments[("shop", "checkout")]
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/checkout:v2"
        assert dep["metadata"]["annotations"][REVISION] == "4"
        worker_requests = fake.requests[seen_before:]
        assert {r["token"] for r in worker_requests} == {"write-token"}
        assert [r["dry_run"] for r in worker_requests if r["method"] == "PATCH"] == [True, False]
        async with db.session() as s:
            prop = await s.get(Proposal, p.id)
            exe = (await s.exec(select(Execution).where(Execution.proposal_id == p.id))).one()
            incident = await s.get(Incident, inc)
        assert prop is not None and prop.status == "succeeded"
        assert exe.status == "succeeded" and exe.verification == "recovered"
        assert incident is not None and incident.status == "mitigated"
        # the results reach the thread through the worker's lifecycle outbox
        assert ("changed", p.id) in worker_hub.events
        assert any("Recovered after" in n for n in worker_hub.notes())
    finally:
        await server.remediation.aclose()
        await k8s.close()


def test_worker_refuses_an_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["worker", "--kinds", "execution,bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown job kind(s) bogus" in err and "known: " in err and "verification" in err


def test_worker_kinds_accept_the_verbs() -> None:
    args = build_parser().parse_args(["worker", "--kinds", "execute,verify,execution"])
    assert args.kinds == ["execution", "verification"]
    assert build_parser().parse_args(["worker"]).kinds == list(EXECUTION_KINDS)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"onwatch {importlib.metadata.version('onwatch')}"
