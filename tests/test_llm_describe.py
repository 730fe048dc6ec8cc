"""The LLM investigator's ``describe`` tool: Kubernetes Deployments, Pods and Nodes read through the real
kubernetes_asyncio client from the fake API server, asked for by the scripted OpenAI-compatible model,
trimmed, size-capped and redacted before they reach it; the answer that cites them is accepted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.config import LlmSettings
from bot.demo.simulate import simulate
from bot.investigate.cli import run_case
from bot.investigate.llm.investigator import investigate_report
from bot.investigate.llm.loop import LlmStatus
from bot.investigate.llm.tools import Toolbox, ToolStatus
from bot.investigate.report import Report
from integrations.base import Sources
from integrations.kubernetes_read import KubernetesReader
from integrations.replay import replay_sources
from integrations.settings import KubernetesSettings
from tests.fakes import k8s_read as fake_k8s
from tests.fakes.openai_tools import Script, Turn, answer, serve_scripted
from tests.integrations_fixtures import serve

ANCHOR = 1_700_000_000.0
SECRET_ENV = "postgres://payments:Hunter2-SuperSecret@payments-db:5432/payments"
POD_IP = "10.42.7.19"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def demo_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate(7, anchor=ANCHOR).write(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def demo_report(demo_case: Path) -> Report:
    return asyncio.run(run_case(demo_case))


def cluster(onset: float) -> dict[str, list[dict[str, Any]]]:
    """payments-api: a Deployment with one of two pods OOM-killed and not ready, on a node under memory pressure."""
    labels = {"app.kubernetes.io/name": "payments-api"}
    container = {"name": "api", "image": "acme/payments-api:v1.8.4",
                 "env": [{"name": "DATABASE_URL", "value": SECRET_ENV}], "command": ["/app", f"--db={SECRET_ENV}"],
                 "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                 "ports": [{"containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5,
                                    "failureThreshold": 3}}
    deployment: dict[str, Any] = {
        "metadata": {"name": "payments-api", "namespace": "shop", "uid": "d-1", "generation": 7, "labels": labels,
                     "annotations": {"deployment.kubernetes.io/revision": "7",
                                     "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                                         {"spec": {"template": {"spec": {"containers": [container]}}}})}},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}},
        "status": {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1,
                   "unavailableReplicas": 1, "observedGeneration": 7,
                   "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                                   "message": "Deployment does not have minimum availability.",
                                   "lastTransitionTime": iso(onset + 120)}]}}

    def pod(name: str, ready: bool, restarts: int) -> dict[str, Any]:
        state: dict[str, Any] = {"running": {"startedAt": iso(onset - 600)}} if ready else {
            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}
        return {"metadata": {"name": name, "namespace": "shop", "labels": labels,
                             "ownerReferences": [{"kind": "ReplicaSet", "name": "payments-api-6f7d8c9b5"}]},
                "spec": {"nodeName": "node-7", "containers": [container], "restartPolicy": "Always"},
                "status": {"phase": "Running", "podIP": POD_IP, "qosClass": "Burstable", "startTime": iso(onset - 900),
                           "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                           "lastTransitionTime": iso(onset + 60)}],
                           "containerStatuses": [{"name": "api", "ready": ready, "restartCount": restarts,
                                                  "state": state,
                                                  **({} if ready else {"lastState": {"terminated": {
                                                      "reason": "OOMKilled", "exitCode": 137,
                                                      "finishedAt": iso(onset + 90)}}})}]}}

    events: list[dict[str, Any]] = [
        {"metadata": {"name": "ev1", "namespace": "shop"}, "type": "Warning", "reason": "BackOff", "count": 9,
         "message": "Back-off restarting failed container api", "lastTimestamp": iso(onset + 100),
         "involvedObject": {"kind": "Pod", "name": "payments-api-6f7d8c9b5-zz9kq", "namespace": "shop"}},
        {"metadata": {"name": "ev2", "namespace": "shop"}, "type": "Normal", "reason": "ScalingReplicaSet",
         "message": "Scaled up replica set payments-api-6f7d8c9b5 to 2", "lastTimestamp": iso(onset - 300),
         "involvedObject": {"kind": "Deployment", "name": "payments-api", "namespace": "shop"}},
        {"metadata": {"name": "ev3", "namespace": "default"}, "type": "Warning", "reason": "EvictionThresholdMet",
         "message": "Attempting to reclaim memory", "lastTimestamp": iso(onset + 80),
         "involvedObject": {"kind": "Node", "name": "node-7"}},
        {"metadata": {"name": "ev4", "namespace": "shop"}, "type": "Warning", "reason": "Unhealthy",
         "message": "Readiness probe failed", "lastTimestamp": iso(onset + 50),
         "involvedObject": {"kind": "Pod", "name": "checkout-1-abcde", "namespace": "shop"}},
    ]
    node: dict[str, Any] = {"metadata": {"name": "node-7"}, "spec": {"taints": [
                {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "110", "hugepages-2Mi": "0"},
                       "allocatable": {"cpu": "3900m", "memory": "15Gi", "pods": "110"},
                       "nodeInfo": {"kubeletVersion": "v1.30.2", "osImage": "Ubuntu 22.04"},
                       "conditions": [{"type": "MemoryPressure", "status": "True", "reason": "KubeletHasInsufficientMemory",
                                       "lastTransitionTime": iso(onset + 70)},
                                      {"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}
    return {"deployments": [deployment], "replicasets": [], "events": events, "nodes": [node],
            "pods": [pod("payments-api-6f7d8c9b5-aa1bc", True, 0), pod("payments-api-6f7d8c9b5-zz9kq", False, 9)]}


@pytest.fixture
async def reader(demo_report: Report, tmp_path: Path) -> AsyncIterator[KubernetesReader]:
    app = fake_k8s.make_app(cluster(float(demo_report.scope["onset"])), token="read-token")
    async with serve(app) as url:
        kubeconfig = fake_k8s.write_kubeconfig(tmp_path / "kubeconfig", url, "read-token")
        r = KubernetesReader(KubernetesSettings(kubeconfig=kubeconfig, timeout_s=3, retries=0))
        try:
            yield r
        finally:
            await r.aclose()


def sources_with(case: Path, cluster_source: KubernetesReader) -> Sources:
    return replace(replay_sources(case), cluster=cluster_source)


def _tool_results(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


async def test_the_model_describes_a_deployment_its_pod_and_node_and_cites_them(
        demo_case: Path, demo_report: Report, reader: KubernetesReader) -> None:
    mechanism = ("payments-api pods are OOM-killed at the 256Mi memory limit and one of two replicas is not ready, "
                 "so the service runs at half capacity")
    script: list[Script] = [Turn(tool_calls=[("describe", {"kind": "Deployment", "name": "payments-api"})]),
              Turn(tool_calls=[("describe", {"kind": "Pod", "name": "payments-api", "namespace": "shop"}),
                               ("describe", {"kind": "Node", "name": "node-7"})]),
              answer(service="payments-api", kind="oom", mechanism=mechanism, evidence=["t1", "t2"],
                     claims=[{"text": "the pod was OOM-killed", "evidence": ["t2"]},
                             {"text": "its node is under memory pressure", "evidence": ["t3"]}],
                     next=["compare the pod's memory with the 256Mi limit"])]
    sources = sources_with(demo_case, reader)
    try:
        async with serve_scripted(script) as fake:
            cfg = LlmSettings(enabled=True, base_url=fake.url, api_key="sk-test", model="local-model", timeout_s=5)
            out = await investigate_report(cfg, demo_report, sources)
    finally:
        await sources.aclose()
    assert out.status == LlmStatus.ACCEPTED, out.reason
    assert "describe" in {t["function"]["name"] for t in fake.seen[0]["tools"]}
    dep, pod, node = (json.loads(t.split("\n", 1)[1]) for t in _tool_results(fake.seen[2]))
    assert dep["kind"] == "Deployment" and dep["name"] == "payments-api" and dep["namespace"] == "shop"
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"] == "RollingUpdate"
    assert dep["spec"]["containers"][0]["limits"] == {"memory": "256Mi"}
    assert dep["spec"]["containers"][0]["readinessProbe"]["target"] == "/ready:8080"
    assert dep["status"]["readyReplicas"] == 1 and dep["status"]["unavailableReplicas"] == 1
    assert dep["conditions"][0]["reason"] == "MinimumReplicasUnavailable"
    assert dep["conditions"][0]["since"].startswith("+")  # times relative to the alert
    assert [p["name"] for p in dep["pods"]][0] == "payments-api-6f7d8c9b5-zz9kq"  # the unhealthy pod first
    assert {e["reason"] for e in dep["events"]} == {"BackOff", "ScalingReplicaSet"}  # its pods' too, not others'
    assert pod["name"] == "payments-api-6f7d8c9b5-zz9kq" and pod["spec"]["node"] == "node-7"
    (state,) = pod["status"]["containers"]
    assert state["state_reason"] == "CrashLoopBackOff" and state["restarts"] == 9
    assert state["last_terminated"]["reason"] == "OOMKilled" and state["last_terminated"]["exit_code"] == 137
    assert [p["name"] for p in pod["other_pods"]] == ["payments-api-6f7d8c9b5-aa1bc"]
    assert node["conditions"][0]["type"] == "MemoryPressure" and node["spec"]["taints"][0]["effect"] == "NoSchedule"
    assert node["status"]["capacity"] == {"cpu": "4", "memory": "16Gi", "pods": "110"}
    assert [e["reason"] for e in node["events"]] == ["EvictionThresholdMet"]
    # what never leaves: env values, commands, the last-applied manifest; the pod IP is redacted
    wire = json.dumps(fake.seen)
    assert "Hunter2-SuperSecret" not in wire and "last-applied" not in wire and "DATABASE_URL" not in wire
    assert POD_IP not in wire and "[IPV4_1]" in wire
    items = {e.id: e for e in out.evidence}
    assert items["t1"].signal == "describe" and items["t1"].service == "payments-api"
    assert "Available" in items["t1"].summary and "BackOff" in items["t1"].summary
    assert items["t3"].service == "node-7" and "MemoryPressure" in items["t3"].summary
    assert [t.name for t in out.tool_calls] == ["describe", "describe", "describe"]


async def test_unknown_objects_bad_kinds_and_oversized_results(demo_report: Report, reader: KubernetesReader) -> None:
    box = Toolbox(Sources(cluster=reader), demo_report.scope, max_result_chars=1560)
    missing = await box.run("describe", {"kind": "Deployment", "name": "ledger"})
    assert missing.status == ToolStatus.REFUSED and "there are: payments-api" in missing.content["error"]
    bad = await box.run("describe", {"kind": "Secret", "name": "payments-db"})
    assert bad.status == ToolStatus.REFUSED and "Deployment, Pod, Node" in bad.content["error"]
    elsewhere = await box.run("describe", {"kind": "Pod", "name": "payments-api", "namespace": "kube-system"})
    assert elsewhere.status == ToolStatus.REFUSED and "in namespace kube-system" in elsewhere.content["error"]
    cut = await box.run("describe", {"kind": "Deployment", "name": "payments-api"})  # ~1600 characters whole
    assert cut.status == ToolStatus.OK, cut.content
    assert len(json.dumps(cut.content)) <= 1560 + len('"evidence_id": "t1", ')
    assert "only 1 of 2 events shown" in cut.content["truncated"] and len(cut.content["events"]) == 1
    tiny = Toolbox(Sources(cluster=reader), demo_report.scope, max_result_chars=400)
    refused = await tiny.run("describe", {"kind": "Deployment", "name": "payments-api"})
    assert refused.status == ToolStatus.REFUSED and "narrow the query" in refused.content["error"]
    assert not (await box.run("describe", {"kind": "Deployment", "name": "payments-api"})).evidence  # repeated
    assert (await box.run("describe", {"kind": "node", "name": "node-7"})).status == ToolStatus.OK  # any case


async def test_describe_is_offered_only_where_a_cluster_can_describe(demo_report: Report,
                                                                     reader: KubernetesReader) -> None:
    assert "describe" not in {s["function"]["name"] for s in Toolbox(Sources(), demo_report.scope).specs()}
    assert "describe" in {s["function"]["name"] for s in Toolbox(Sources(cluster=reader), demo_report.scope).specs()}
