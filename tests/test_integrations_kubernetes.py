"""The Kubernetes read client against a fake API server, reached through a generated kubeconfig."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from integrations.base import SourceRejected, SourceTimeout, TimeWindow
from integrations.kubernetes_read import KubernetesReader
from integrations.settings import KubernetesSettings
from tests.fakes import FAULTS, Fault
from tests.fakes import k8s_read as fake_k8s
from tests.integrations_fixtures import serve

NOW = time.time()
T0 = NOW - 3600


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _objects() -> dict[str, list[dict[str, Any]]]:
    labels = {"app.kubernetes.io/name": "carts"}
    pods: list[dict[str, Any]] = [
        {"metadata": {"name": "carts-7d9f8b6c4-x2x9q", "namespace": "shop", "labels": labels},
         "spec": {"nodeName": "node-1"},
         "status": {"phase": "Running", "startTime": iso(T0), "containerStatuses": [{
             "name": "carts", "restartCount": 3,
             "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}},
             "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": iso(T0 + 600)}}}]}},
        {"metadata": {"name": "orders-5c6d7e8f9-abcde", "namespace": "shop", "labels": {"app": "orders"}},
         "status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory.",
                    "startTime": iso(T0), "conditions": [{"type": "Ready", "lastTransitionTime": iso(T0 + 900)}]}},
        {"metadata": {"name": "user-0", "namespace": "other", "labels": {}},
         "status": {"phase": "Running", "containerStatuses": [{"name": "user", "restartCount": 0, "state": {}}]}},
    ]
    events: list[dict[str, Any]] = [
        {"metadata": {"name": "e1", "namespace": "shop"}, "type": "Warning", "reason": "BackOff",
         "message": "Back-off restarting failed container", "count": 7, "lastTimestamp": iso(T0 + 700),
         "involvedObject": {"kind": "Pod", "name": "carts-7d9f8b6c4-x2x9q", "namespace": "shop"},
         "source": {"host": "node-1"}},
        {"metadata": {"name": "e2", "namespace": "shop"}, "type": "Normal", "reason": "Pulled",
         "lastTimestamp": iso(T0 + 100), "involvedObject": {"kind": "Pod", "name": "x", "namespace": "shop"}},
        {"metadata": {"name": "e3", "namespace": "shop"}, "type": "Normal", "reason": "ScalingReplicaSet",
         "eventTime": iso(T0 + 500), "message": "Scaled up replica set carts-7d9f8b6c4 to 1",
         "involvedObject": {"kind": "Deployment", "name": "carts", "namespace": "shop"}},
        {"metadata": {"name": "e4", "namespace": "shop"}, "type": "Warning", "reason": "Unhealthy",
         "lastTimestamp": iso(T0 - 5000), "involvedObject": {"kind": "Pod", "name": "old", "namespace": "shop"}},
    ]
    deployments: list[dict[str, Any]] = [{"metadata": {"name": "carts", "namespace": "shop", "uid": "dep-1", "labels": labels}}]
    rs: list[dict[str, Any]] = []
    for rev, image, created in ((1, "acme/carts:1.0", T0 - 86400), (2, "acme/carts:1.1", T0 + 450),
                                (3, "acme/carts:1.2", T0 + 1200)):
        rs.append({"metadata": {"name": f"carts-{rev}abc", "namespace": "shop", "creationTimestamp": iso(created),
                                "annotations": {"deployment.kubernetes.io/revision": str(rev)},
                                "ownerReferences": [{"kind": "Deployment", "name": "carts", "uid": "dep-1"}]},
                   "spec": {"template": {"spec": {"containers": [{"name": "carts", "image": image}]}}},
                   "status": {"replicas": 1 if rev == 3 else 0}})
    rs.append({"metadata": {"name": "lonely", "namespace": "shop", "creationTimestamp": iso(T0)}, "spec": {}})
    return {"pods": pods, "events": events, "deployments": deployments, "replicasets": rs}


async def test_events_pod_states_and_rollouts(tmp_path: Path) -> None:
    app = fake_k8s.make_app(_objects(), token="read-token")
    async with serve(app) as url:
        kubeconfig = fake_k8s.write_kubeconfig(tmp_path / "kubeconfig", url, "read-token")
        reader = KubernetesReader(KubernetesSettings(kubeconfig=kubeconfig, timeout_s=3, retries=1))
        w = TimeWindow(T0, NOW)
        events = await reader.events(w)
        reasons = {(e.service, e.reason) for e in events}
        assert ("carts", "BackOff") in reasons and ("carts", "ScalingReplicaSet") in reasons
        assert ("carts", "OOMKilled") in reasons and ("carts", "CrashLoopBackOff") in reasons
        assert ("carts", "Restarted") in reasons and ("orders", "Evicted") in reasons
        assert all(e.reason not in ("Pulled", "Unhealthy") for e in events)  # normal noise and old events
        oom = next(e for e in events if e.reason == "OOMKilled")
        assert oom.time == pytest.approx(T0 + 600, abs=1) and oom.node == "node-1" and oom.count == 3
        backoff = next(e for e in events if e.reason == "BackOff")
        assert backoff.count == 7 and backoff.object == "Pod/shop/carts-7d9f8b6c4-x2x9q"
        assert {e.service for e in await reader.events(w, ["orders"])} == {"orders"}

        history = await reader.rollout_history()
        assert [(r.revision, r.images) for r in history] == [
            (1, ("acme/carts:1.0",)), (2, ("acme/carts:1.1",)), (3, ("acme/carts:1.2",))]
        changes = await reader.rollouts().changes(w)
        assert [(c.version, c.previous_version) for c in changes] == [
            ("acme/carts:1.1", "acme/carts:1.0"), ("acme/carts:1.2", "acme/carts:1.1")]
        assert changes[0].service == "carts" and "revision 2" in changes[0].description
        assert await reader.rollouts().changes(w, ["orders"]) == []
        await reader.aclose()


async def test_namespaces_limit_and_failures(tmp_path: Path) -> None:
    app = fake_k8s.make_app(_objects(), token="read-token")
    async with serve(app) as url:
        kubeconfig = fake_k8s.write_kubeconfig(tmp_path / "kubeconfig", url, "read-token")
        reader = KubernetesReader(KubernetesSettings(kubeconfig=kubeconfig, namespaces=["other"], timeout_s=0.5,
                                                     retries=0, max_items=1))
        w = TimeWindow(T0, NOW)
        assert await reader.events(w) == []  # only namespace "other", where nothing happened
        app[FAULTS].push(Fault("delay", delay_s=2, path_prefix="/api/v1/namespaces/other/pods"))
        with pytest.raises(SourceTimeout, match="timed out after 0.5 s"):
            await reader.events(w)
        await reader.aclose()
        wrong = fake_k8s.write_kubeconfig(tmp_path / "wrong", url, "bad-token")
        reader = KubernetesReader(KubernetesSettings(kubeconfig=wrong, retries=0))
        with pytest.raises(SourceRejected, match="401: Unauthorized"):
            await reader.events(w)
        await reader.aclose()
    missing = KubernetesReader(KubernetesSettings(kubeconfig=tmp_path / "nope"))
    with pytest.raises(Exception, match="cannot load the cluster credentials"):
        await missing.events(TimeWindow(T0, NOW))


async def test_topology_from_depends_on_annotations(tmp_path: Path) -> None:
    from integrations.kubernetes_read import KubernetesTopology
    from integrations.registry import build_sources
    from integrations.settings import SourcesSettings

    objects = _objects()
    objects["deployments"] = [
        {"metadata": {"name": "checkout", "namespace": "shop", "labels": {"app.kubernetes.io/name": "checkout"},
                      "annotations": {"onwatch.io/depends-on": "payments-api, cart ,checkout,"}}},
        {"metadata": {"name": "payments-api", "namespace": "shop", "labels": {"app": "payments-api"},
                      "annotations": {"onwatch.io/depends-on": "payments-db"}}},
        {"metadata": {"name": "carts", "namespace": "shop"}},
    ]
    app = fake_k8s.make_app(objects, token="read-token")
    async with serve(app) as url:
        kubeconfig = fake_k8s.write_kubeconfig(tmp_path / "kubeconfig", url, "read-token")
        sources = build_sources(SourcesSettings(kubernetes=KubernetesSettings(kubeconfig=kubeconfig, retries=0)))
        topo = [t for t in sources.topology if isinstance(t, KubernetesTopology)]
        assert len(topo) == 1
        edges = [(e.caller, e.callee) for e in await topo[0].edges()]
        assert edges == [("checkout", "cart"), ("checkout", "payments-api"), ("payments-api", "payments-db")]
        await sources.aclose()
