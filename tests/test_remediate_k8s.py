"""Each Kubernetes runbook end to end against the fake Kubernetes API: propose (with a server-side dry-run
preview), approve, execute with the write credential only, before/after recorded; errors injected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.audit import Actor
from bot.context import AppContext
from bot.remediate.service import RemediationService
from bot.store.db import Database
from bot.store.models import Execution, Incident, Proposal
from integrations.executors import ExecutorRefused
from integrations.kubernetes_write import KubernetesWriteExecutor
from integrations.settings import KubernetesSettings
from tests.fakes.k8s_write import REVISION, FakeK8s
from tests.remediate_fixtures import (
    RecordingHub,
    k8s_registry,
    make_ctx,
    make_settings,
    seed,
    shop_cluster,
    start_fake_k8s,
)

U1, U2, U3 = Actor("slack", "U1", "ann"), Actor("slack", "U2", "bob"), Actor("slack", "U3", "cy")


@dataclass
class Env:
    fake: FakeK8s
    ctx: AppContext
    svc: RemediationService
    hub: RecordingHub
    db: Database


@pytest.fixture
async def env(db: Database, tmp_path: Path) -> AsyncIterator[Env]:
    fake = FakeK8s(token="write-token")
    shop_cluster(fake)
    server = await start_fake_k8s(fake)
    base = str(server.make_url("")).rstrip("/")
    write_cfg = fake.kubeconfig(tmp_path / "write.kubeconfig", base)
    read_cfg = fake.kubeconfig(tmp_path / "read.kubeconfig", base, token="read-token", context="prod-read")
    settings = make_settings(db.url, kubeconfig=write_cfg, read_kubeconfig=read_cfg)
    ctx, svc, hub = make_ctx(settings, db, registry=k8s_registry(settings))
    try:
        yield Env(fake, ctx, svc, hub, db)
    finally:
        await svc.aclose()
        await server.close()


async def _offer(env: Env, causes: list[dict[str, Any]], evidence: list[dict[str, Any]] | None = None,
                 runbook: str | None = None) -> Proposal:
    inc, inv = await seed(env.db, causes, evidence=evidence)
    props = await env.svc.propose(inc, inv)
    chosen = [p for p in props if runbook is None or p.runbook_id == runbook]
    assert chosen, env.hub.refused()
    return chosen[0]


async def _execution(db: Database, proposal_id: str) -> Execution:
    async with db.session() as s:
        return (await s.exec(select(Execution).where(Execution.proposal_id == proposal_id))).one()


def _assert_write_credential_only(fake: FakeK8s) -> None:
    assert fake.requests and {r["token"] for r in fake.requests} == {"write-token"}
    real = fake.writes(dry_run=False)
    for w in real:  # every real write was preceded by the same call as a dry run
        idx = fake.requests.index(w)
        assert any(r["path"] == w["path"] and r["method"] == w["method"] and r["dry_run"]
                   for r in fake.requests[:idx])


async def test_rollback_end_to_end(env: Env) -> None:
    p = await _offer(env, [{"service": "checkout", "kind": "deploy", "confidence": 0.9}], runbook="rollback-deployment")
    assert p.preview["current_revision"] == "3" and p.preview["target_revision"] == "2"
    assert p.preview["current_images"] == ["shop/checkout:v3"] and p.preview["target_images"] == ["shop/checkout:v2"]
    assert env.fake.writes() == []  # proposing changes nothing
    assert (await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))).status == "approved"
    assert await env.svc.execute(p.id) == "succeeded"
    dep = env.fake.deployments[("shop", "checkout")]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/checkout:v2"
    assert dep["metadata"]["annotations"][REVISION] == "4"  # the v2 ReplicaSet becomes revision 4, like kubectl
    exe = await _execution(env.db, p.id)
    assert exe.status == "succeeded" and exe.before["images"] == ["shop/checkout:v3"]
    assert exe.after["images"] == ["shop/checkout:v2"] and exe.verification == "pending"
    patches = [r for r in env.fake.writes() if r["method"] == "PATCH"]
    assert [r["dry_run"] for r in patches] == [True, False]
    assert patches[0]["content_type"].startswith("application/json-patch+json")
    _assert_write_credential_only(env.fake)
    async with env.db.session() as s:
        assert (await s.get(Incident, p.incident_id)).phase == "verifying"  # type: ignore[union-attr]
    # executed once: a second call is a no-op
    assert await env.svc.execute(p.id) == "succeeded"
    assert len([r for r in env.fake.writes(dry_run=False)]) == 1


async def test_restart_end_to_end(env: Env) -> None:
    p = await _offer(env, [{"service": "checkout", "kind": "memory_saturation", "confidence": 0.7}],
                     runbook="restart-deployment")
    await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    assert await env.svc.execute(p.id) == "succeeded"
    dep = env.fake.deployments[("shop", "checkout")]
    stamp = dep["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    exe = await _execution(env.db, p.id)
    assert exe.before["restarted_at"] == "" and exe.after["restarted_at"] == stamp
    assert env.fake.writes(dry_run=False)[0]["content_type"].startswith("application/strategic-merge-patch+json")
    _assert_write_credential_only(env.fake)


async def test_scale_within_bounds(env: Env) -> None:
    p = await _offer(env, [{"service": "checkout", "kind": "traffic_surge", "confidence": 0.8}],
                     runbook="scale-deployment")
    assert p.preview["replicas"] == 3 and p.preview["target_replicas"] == 5
    await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    assert await env.svc.execute(p.id) == "succeeded"
    assert env.fake.deployments[("shop", "checkout")]["spec"]["replicas"] == 5
    exe = await _execution(env.db, p.id)
    assert exe.before == {"replicas": 3} and exe.after == {"replicas": 5}
    assert any(r["path"].endswith("/scale") and r["dry_run"] for r in env.fake.writes())


async def test_scale_clamps_and_refuses_at_the_bound(env: Env) -> None:
    env.fake.deployments[("shop", "checkout")]["spec"]["replicas"] = 19
    p = await _offer(env, [{"service": "checkout", "kind": "cpu_saturation", "confidence": 0.8}],
                     runbook="scale-deployment")
    assert p.preview["target_replicas"] == 20  # 19 + 2 clamped to max_replicas
    env.fake.deployments[("shop", "checkout")]["spec"]["replicas"] = 20
    inc, inv = await seed(env.db, [{"service": "checkout", "kind": "cpu_saturation", "confidence": 0.8}])
    await env.svc.decide(p.id, U1, "reject", frozenset({"slack:U1"}))
    assert await env.svc.propose(inc, inv) == []
    assert any("already at 20 replicas" in r for r in env.hub.refused())


async def test_cordon_and_drain_respects_pdb(env: Env) -> None:
    env.fake.pdb_blocked.add(("shop", "checkout-abc-2"))
    evidence = [{"id": "e1", "source": "kubernetes", "kind": "event", "service": "checkout", "node": "node-1"}]
    p = await _offer(env, [{"service": "checkout", "kind": "node_problem", "confidence": 0.8, "evidence": ["e1"]}],
                     evidence, runbook="cordon-drain-node")
    assert p.risk == "high" and p.preview["pods_to_evict"] == ["shop/checkout-abc-1", "shop/checkout-abc-2"]
    assert (await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))).status == "awaiting_second_approval"
    assert (await env.svc.decide(p.id, U3, "approve", frozenset({"slack:U3"}))).status == "approved"
    assert await env.svc.execute(p.id) == "failed"
    assert env.fake.nodes["node-1"]["spec"]["unschedulable"] is True
    assert ("shop", "checkout-abc-1") not in env.fake.pods  # evicted
    assert ("shop", "checkout-abc-2") in env.fake.pods  # blocked by its budget, not forced
    assert ("kube-system", "fluentbit-x") in env.fake.pods  # DaemonSet pods stay
    exe = await _execution(env.db, p.id)
    assert exe.after["blocked_by_pdb"] == ["shop/checkout-abc-2"]
    assert "PodDisruptionBudget" in exe.error
    assert any("PodDisruptionBudget" in n for n in env.hub.notes())
    _assert_write_credential_only(env.fake)


async def test_cordon_and_drain_succeeds(env: Env) -> None:
    p = await _offer(env, [{"service": "checkout", "kind": "node_problem", "confidence": 0.8, "node": "node-1"}],
                     runbook="cordon-drain-node")
    await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    await env.svc.decide(p.id, U3, "approve", frozenset({"slack:U3"}))
    assert await env.svc.execute(p.id) == "succeeded"
    assert not [k for k in env.fake.pods if k[0] == "shop"]


async def test_delete_stuck_pod(env: Env) -> None:
    evidence = [{"id": "e7", "source": "kubernetes", "kind": "event", "service": "checkout",
                 "object": "pod/checkout-abc-1"}]
    p = await _offer(env, [{"service": "checkout", "kind": "stuck_pod", "confidence": 0.6, "evidence": ["e7"]}],
                     evidence, runbook="delete-stuck-pod")
    assert p.params["values"]["pod"] == "checkout-abc-1" and p.preview["phase"] == "Running"
    await env.svc.decide(p.id, U2, "approve", frozenset({"slack:U2"}))
    assert await env.svc.execute(p.id) == "succeeded"
    assert ("shop", "checkout-abc-1") not in env.fake.pods
    assert [r["dry_run"] for r in env.fake.writes()] == [True, False]


async def test_target_without_the_opt_in_label_is_not_offered(env: Env) -> None:
    inc, inv = await seed(env.db, [{"service": "cart", "kind": "deploy", "confidence": 0.9}])
    props = await env.svc.propose(inc, inv)
    assert [p.runbook_id for p in props] == ["webhook-argocd-rollback"] or props == []
    assert any("rollback-deployment for cart" in r and "onwatch.io/remediation" in r for r in env.hub.refused())


async def test_server_error_on_the_real_call_fails(env: Env) -> None:
    p = await _offer(env, [{"service": "checkout", "kind": "deploy", "confidence": 0.9}], runbook="rollback-deployment")
    await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    env.fake.inject("PATCH", r"/deployments/checkout$", 500, "etcd unavailable", real_only=True)
    assert await env.svc.execute(p.id) == "failed"
    exe = await _execution(env.db, p.id)
    assert "500" in exe.error and "etcd unavailable" in exe.error
    assert env.fake.deployments[("shop", "checkout")]["spec"]["template"]["spec"]["containers"][0]["image"] \
        == "shop/checkout:v3"


async def test_dry_run_rejection_stops_before_the_real_call(env: Env) -> None:
    p = await _offer(env, [{"service": "checkout", "kind": "memory_saturation", "confidence": 0.9}],
                     runbook="restart-deployment")
    await env.svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    env.fake.inject("PATCH", r"/deployments/checkout$", 422, "admission webhook denied")
    assert await env.svc.execute(p.id) == "failed"
    assert env.fake.writes(dry_run=False) == []


async def test_read_credential_never_writes(tmp_path: Path) -> None:
    fake = FakeK8s(token="write-token")
    shop_cluster(fake)
    server = await start_fake_k8s(fake)
    try:
        base = str(server.make_url("")).rstrip("/")
        read_cfg = fake.kubeconfig(tmp_path / "read", base, token="read-token")
        ex = KubernetesWriteExecutor(KubernetesSettings(kubeconfig=read_cfg))
        with pytest.raises(ExecutorRefused, match="no Kubernetes write credential"):
            await ex.preview({"operation": "restart", "namespace": "shop", "deployment": "checkout"})
        assert fake.requests == []
        wrong = KubernetesWriteExecutor(KubernetesSettings(
            write_kubeconfig=fake.kubeconfig(tmp_path / "w", base, token="read-token")))
        with pytest.raises(Exception, match="401"):
            await wrong.preview({"operation": "restart", "namespace": "shop", "deployment": "checkout"})
        await wrong.aclose()
    finally:
        await server.close()


async def test_label_lookup_finds_the_deployment(db: Database, tmp_path: Path) -> None:
    fake = FakeK8s()
    shop_cluster(fake)
    server = await start_fake_k8s(fake)
    try:
        base = str(server.make_url("")).rstrip("/")
        ex = KubernetesWriteExecutor(KubernetesSettings(write_kubeconfig=fake.kubeconfig(tmp_path / "w", base)))
        assert await ex.find_deployment("checkout", ["shop"]) == ("shop", "checkout")
        assert await ex.find_deployment("nothing", ["shop"]) is None
        await ex.aclose()
    finally:
        await server.close()
