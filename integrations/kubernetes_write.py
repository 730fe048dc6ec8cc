"""The Kubernetes executor, on kubernetes_asyncio, with its OWN write credential.

It reads ``sources.kubernetes.write_kubeconfig``/``write_context`` or ``write_in_cluster_token_file`` and
never the read credential the investigation uses (invariant 1); without a write credential every action is
refused with a message saying what to configure. Every write is first sent as a server-side dry run
(``dryRun=All``), then for real; the object is read before and after and both are recorded.

Operations (kubectl semantics):
- ``rollback``: replace the Deployment's pod template by the previous revision's ReplicaSet template
  (``kubectl rollout undo``), found through ``deployment.kubernetes.io/revision`` annotations.
- ``restart``: set the template annotation ``kubectl.kubernetes.io/restartedAt`` (``kubectl rollout restart``).
- ``scale``: the scale subresource, the target clamped into the runbook's min/max bounds.
- ``cordon_drain``: mark the node unschedulable, then evict its pods through the eviction API so
  PodDisruptionBudgets are respected (a 429 means a budget blocks that pod; it is reported, not forced).
- ``delete_pod``: delete one pod (a stuck one), its labels checked against the runbook's scope first.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.config import new_client_from_config

from integrations.executors import ExecutorError, ExecutorRefused, ExecutorUnknown, Outcome
from integrations.settings import KubernetesSettings

REVISION = "deployment.kubernetes.io/revision"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
SA_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
SA_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")  # the pod's own (read) service account
CALL_TIMEOUT_S = 30.0


class ApiError(ExecutorError):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(f"Kubernetes API answered {status}: {message}")


def _images(obj: dict[str, Any]) -> list[str]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [str(c.get("image", "")) for c in spec.get("containers", [])]


def _labels_ok(obj: dict[str, Any], required: dict[str, str]) -> str | None:
    labels = obj.get("metadata", {}).get("labels") or {}
    missing = {k: v for k, v in required.items() if labels.get(k) != v}
    if missing:
        name = obj.get("metadata", {}).get("name", "?")
        return f"{name} does not carry the labels the runbook's scope requires: {missing}"
    return None


class KubernetesWriteExecutor:
    name = "kubernetes"

    def __init__(self, settings: KubernetesSettings | None):
        self.settings = settings
        self._api: k8s.ApiClient | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ client

    async def api(self) -> k8s.ApiClient:
        async with self._lock:
            if self._api is not None:
                return self._api
            s = self.settings
            if s is None or (s.write_kubeconfig is None and s.write_in_cluster_token_file is None):
                raise ExecutorRefused(
                    "no Kubernetes write credential is configured: set sources.kubernetes.write_kubeconfig "
                    "(and write_context) or write_in_cluster_token_file; the read credential never writes"
                )
            if s.write_kubeconfig is not None:
                if not s.write_kubeconfig.exists():
                    raise ExecutorRefused(f"sources.kubernetes.write_kubeconfig: {s.write_kubeconfig} does not exist")
                self._api = await new_client_from_config(
                    config_file=str(s.write_kubeconfig), context=s.write_context, persist_config=False)
            else:
                assert s.write_in_cluster_token_file is not None
                host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
                if not host or not port:
                    raise ExecutorRefused("write_in_cluster_token_file is set but this is not running in a cluster")
                try:
                    token = (await asyncio.to_thread(s.write_in_cluster_token_file.read_text)).strip()
                except OSError as exc:
                    raise ExecutorRefused(f"cannot read the write token: {exc.strerror}") from None
                cfg = k8s.Configuration(host=f"https://{host}:{port}")
                cfg.api_key = {"BearerToken": token}
                cfg.api_key_prefix = {"BearerToken": "Bearer"}
                cfg.ssl_ca_cert = SA_CA
                self._api = k8s.ApiClient(configuration=cfg)
            return self._api

    def _timeout(self, action: dict[str, Any]) -> float:
        return min(float(action.get("timeout_s") or CALL_TIMEOUT_S), CALL_TIMEOUT_S)

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any, write: bool = False,
                    deadline_s: float = CALL_TIMEOUT_S, **kw: Any) -> dict[str, Any]:
        """One API call, raw JSON in and out. A lost write is ``ExecutorUnknown``; anything else is definite."""
        kw["_preload_content"] = False
        kw["_request_timeout"] = deadline_s
        timeout = deadline_s
        try:
            resp = await asyncio.wait_for(fn(*args, **kw), timeout=deadline_s + 1)
            try:
                raw = await resp.read()
            finally:
                resp.release()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            if write and not kw.get("dry_run"):
                raise ExecutorUnknown(f"Kubernetes did not answer within {timeout:g} s: {exc}") from None
            raise ExecutorError(f"Kubernetes did not answer within {timeout:g} s") from None
        except aiohttp.ClientError as exc:
            if write and not kw.get("dry_run"):
                raise ExecutorUnknown(f"the connection to Kubernetes failed mid-write: {exc}") from None
            raise ExecutorError(f"cannot reach Kubernetes: {exc}") from None
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"message": raw[:300].decode(errors="replace")}
        if resp.status >= 400:
            raise ApiError(resp.status, str(data.get("message") or data)[:500])
        return data if isinstance(data, dict) else {"items": data}

    async def _write(self, fn: Callable[..., Awaitable[Any]], *args: Any, deadline_s: float, **kw: Any) -> dict[str, Any]:
        """Server-side dry run first; the real call only when the dry run is accepted."""
        await self._call(fn, *args, write=True, deadline_s=deadline_s, dry_run="All", **kw)
        return await self._call(fn, *args, write=True, deadline_s=deadline_s, **kw)

    async def find_deployment(self, service: str, namespaces: list[str]) -> tuple[str, str] | None:
        label = self.settings.service_label if self.settings else "app.kubernetes.io/name"
        apps = k8s.AppsV1Api(await self.api())
        found: list[tuple[str, str]] = []
        for ns in namespaces:
            data = await self._call(apps.list_namespaced_deployment, ns, label_selector=f"{label}={service}")
            found += [(ns, d["metadata"]["name"]) for d in data.get("items", [])]
        return found[0] if len(found) == 1 else None

    # ------------------------------------------------------------------ reads shared by preview and execute

    async def _read_labelled(self, fn: Callable[..., Awaitable[Any]], kind: Literal["deployment", "pod"],
                             action: dict[str, Any]) -> dict[str, Any]:
        """The action's ``kind`` object; refused when it does not exist or lacks the required labels."""
        name, ns = action[kind], action["namespace"]
        try:
            obj = await self._call(fn, name, ns, deadline_s=self._timeout(action))
        except ApiError as exc:
            if exc.status == 404:
                raise ExecutorRefused(f"{kind} {ns}/{name} does not exist") from None
            raise
        bad = _labels_ok(obj, action.get("require_labels") or {})
        if bad:
            raise ExecutorRefused(bad)
        return obj

    async def _deployment(self, action: dict[str, Any]) -> dict[str, Any]:
        apps = k8s.AppsV1Api(await self.api())
        return await self._read_labelled(apps.read_namespaced_deployment, "deployment", action)

    async def _previous(self, action: dict[str, Any], dep: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        apps = k8s.AppsV1Api(await self.api())
        meta = dep.get("metadata", {})
        current = int((meta.get("annotations") or {}).get(REVISION, "0") or 0)
        match = dep.get("spec", {}).get("selector", {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        rss = (await self._call(apps.list_namespaced_replica_set, action["namespace"], label_selector=selector,
                                deadline_s=self._timeout(action))).get("items", [])
        uid = meta.get("uid")
        best: tuple[int, dict[str, Any] | None] = (0, None)
        for rs in rss:
            owners = rs.get("metadata", {}).get("ownerReferences") or []
            if uid and not any(o.get("uid") == uid for o in owners):
                continue
            rev = int((rs.get("metadata", {}).get("annotations") or {}).get(REVISION, "0") or 0)
            if rev < current and rev > best[0]:
                best = (rev, rs)
        return current, best[1]

    @staticmethod
    def _summary(dep: dict[str, Any]) -> dict[str, Any]:
        meta = dep.get("metadata", {})
        return {
            "revision": (meta.get("annotations") or {}).get(REVISION, ""),
            "images": _images(dep),
            "replicas": dep.get("spec", {}).get("replicas"),
            "generation": meta.get("generation"),
            "restarted_at": ((dep.get("spec", {}).get("template", {}).get("metadata", {}) or {})
                             .get("annotations") or {}).get(RESTARTED_AT, ""),
        }

    def _scale_target(self, action: dict[str, Any], current: int) -> int:
        target = int(action["replicas"]) if action.get("replicas") is not None else current + int(action["replicas_step"])
        lo, hi = action.get("min_replicas"), action.get("max_replicas")
        if lo is not None:
            target = max(target, int(lo))
        if hi is not None:
            target = min(target, int(hi))
        if target == current:
            raise ExecutorRefused(f"already at {current} replicas, the bound for this runbook")
        return target

    async def _drain_plan(self, action: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        core = k8s.CoreV1Api(await self.api())
        try:
            node = await self._call(core.read_node, action["node"], deadline_s=self._timeout(action))
        except ApiError as exc:
            if exc.status == 404:
                raise ExecutorRefused(f"node {action['node']} does not exist") from None
            raise
        pods = (await self._call(core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={action['node']}",
                                 deadline_s=self._timeout(action))).get("items", [])
        evict = []
        for pod in pods:
            meta = pod.get("metadata", {})
            if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or []):
                continue
            if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
                continue
            if pod.get("status", {}).get("phase") in {"Succeeded", "Failed"}:
                continue
            evict.append(pod)
        return node, evict

    # ------------------------------------------------------------------ preview

    async def preview(self, action: dict[str, Any]) -> dict[str, Any]:
        op = action["operation"]
        if op in {"rollback", "restart", "scale"}:
            dep = await self._deployment(action)
            cur = self._summary(dep)
            out: dict[str, Any] = {"exists": True, "operation": op,
                                   "target": f"deployment {action['namespace']}/{action['deployment']}",
                                   "current_revision": cur["revision"], "current_images": cur["images"],
                                   "replicas": cur["replicas"]}
            if op == "rollback":
                _rev, prev = await self._previous(action, dep)
                out["target_revision"] = (prev or {}).get("metadata", {}).get("annotations", {}).get(REVISION)
                out["target_images"] = _images(prev) if prev else []
            elif op == "restart":
                out["change"] = "every pod is replaced (rolling), same images"
            else:
                out["target_replicas"] = self._scale_target(action, int(cur["replicas"] or 0))
            return out
        if op == "delete_pod":
            core = k8s.CoreV1Api(await self.api())
            pod = await self._read_labelled(core.read_namespaced_pod, "pod", action)
            return {"exists": True, "operation": op, "target": f"pod {action['namespace']}/{action['pod']}",
                    "phase": pod.get("status", {}).get("phase"), "node": pod.get("spec", {}).get("nodeName")}
        if op == "cordon_drain":
            node, evict = await self._drain_plan(action)
            return {"exists": True, "operation": op, "target": f"node {action['node']}",
                    "unschedulable": bool(node.get("spec", {}).get("unschedulable")),
                    "pods_to_evict": [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in evict]}
        raise ExecutorRefused(f"unknown Kubernetes operation {op!r}")

    # ------------------------------------------------------------------ execute

    async def execute(self, action: dict[str, Any], *, execution_id: str) -> Outcome:
        op = action["operation"]
        t = self._timeout(action)
        apps = k8s.AppsV1Api(await self.api())
        core = k8s.CoreV1Api(await self.api())
        ns = action.get("namespace")
        if op == "rollback":
            dep = await self._deployment(action)
            current, prev = await self._previous(action, dep)
            if prev is None:
                raise ExecutorRefused(f"deployment {ns}/{action['deployment']} has no revision before {current}")
            template = copy.deepcopy(prev["spec"]["template"])
            (template.get("metadata", {}).get("labels") or {}).pop("pod-template-hash", None)
            patch = [{"op": "replace", "path": "/spec/template", "value": template}]
            await self._write(apps.patch_namespaced_deployment, action["deployment"], ns, patch, deadline_s=t)
            after = await self._deployment(action)
            rev = prev["metadata"]["annotations"][REVISION]
            return Outcome(True, self._summary(dep), self._summary(after),
                           f"rolled {ns}/{action['deployment']} back to revision {rev} ({', '.join(_images(prev))})")
        if op == "restart":
            dep = await self._deployment(action)
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            restart = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
            await self._write(apps.patch_namespaced_deployment, action["deployment"], ns, restart, deadline_s=t)
            after = await self._deployment(action)
            return Outcome(True, self._summary(dep), self._summary(after),
                           f"restarted {ns}/{action['deployment']} (restartedAt {stamp})")
        if op == "scale":
            await self._deployment(action)  # existence and scope labels
            scale = await self._call(apps.read_namespaced_deployment_scale, action["deployment"], ns, deadline_s=t)
            current = int(scale.get("spec", {}).get("replicas") or 0)
            target = self._scale_target(action, current)
            await self._write(apps.patch_namespaced_deployment_scale, action["deployment"], ns,
                              {"spec": {"replicas": target}}, deadline_s=t)
            after = await self._call(apps.read_namespaced_deployment_scale, action["deployment"], ns, deadline_s=t)
            return Outcome(True, {"replicas": current}, {"replicas": after.get("spec", {}).get("replicas")},
                           f"scaled {ns}/{action['deployment']} from {current} to {target} replicas")
        if op == "delete_pod":
            pod = await self._call(core.read_namespaced_pod, action["pod"], ns, deadline_s=t)
            bad = _labels_ok(pod, action.get("require_labels") or {})
            if bad:
                raise ExecutorRefused(bad)
            kw: dict[str, Any] = {}
            if action.get("grace_period_s") is not None:
                kw["grace_period_seconds"] = int(action["grace_period_s"])
            await self._write(core.delete_namespaced_pod, action["pod"], ns, deadline_s=t, **kw)
            before = {"pod": f"{ns}/{action['pod']}", "phase": pod.get("status", {}).get("phase"),
                      "uid": pod.get("metadata", {}).get("uid")}
            return Outcome(True, before, {"deleted": True}, f"deleted pod {ns}/{action['pod']}")
        if op == "cordon_drain":
            return await self._cordon_drain(action, t)
        raise ExecutorRefused(f"unknown Kubernetes operation {op!r}")

    async def _cordon_drain(self, action: dict[str, Any], t: float) -> Outcome:
        core = k8s.CoreV1Api(await self.api())
        node, pods = await self._drain_plan(action)
        name = action["node"]
        before = {"unschedulable": bool(node.get("spec", {}).get("unschedulable")),
                  "pods": [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods]}
        await self._write(core.patch_node, name, {"spec": {"unschedulable": True}}, deadline_s=t)
        evicted: list[str] = []
        blocked: list[str] = []
        failed: list[str] = []
        for pod in pods:
            pns, pname = pod["metadata"]["namespace"], pod["metadata"]["name"]
            body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pname, "namespace": pns}}
            try:
                await self._write(core.create_namespaced_pod_eviction, pname, pns, body, deadline_s=t)
                evicted.append(f"{pns}/{pname}")
            except ApiError as exc:
                if exc.status == 429:
                    blocked.append(f"{pns}/{pname}")
                elif exc.status == 404:
                    evicted.append(f"{pns}/{pname}")  # already gone
                else:
                    failed.append(f"{pns}/{pname}: {exc}")
        after_node = await self._call(core.read_node, name, deadline_s=t)
        after = {"unschedulable": bool(after_node.get("spec", {}).get("unschedulable")),
                 "evicted": evicted, "blocked_by_pdb": blocked, "failed": failed}
        if blocked or failed:
            parts = []
            if blocked:
                parts.append(f"{len(blocked)} pod(s) blocked by a PodDisruptionBudget: {', '.join(blocked)}")
            if failed:
                parts.append(f"{len(failed)} eviction(s) failed: {'; '.join(failed)}")
            return Outcome(False, before, after,
                           f"node {name} is cordoned but not drained: " + "; ".join(parts))
        return Outcome(True, before, after, f"cordoned node {name} and evicted {len(evicted)} pod(s)")

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None
