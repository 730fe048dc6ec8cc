"""A small aiohttp server that speaks the Kubernetes API for what the write executor uses.

Deployments get/list/patch (JSON patch, strategic-merge or merge patch; a pod-template change makes or
re-uses a ReplicaSet and bumps ``deployment.kubernetes.io/revision`` the way the controller does), the scale
subresource, ReplicaSets list, Pods list/get/delete, pods/eviction (429 when a PodDisruptionBudget would be
violated), Nodes get/patch. ``dryRun=All`` is honoured (validated, nothing stored). Only the configured
bearer token is accepted. Error injection: ``inject(method, path_regex, status)`` and ``hang(...)``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

REVISION = "deployment.kubernetes.io/revision"


def status_body(code: int, message: str, reason: str = "") -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def merge(target: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386); close enough to strategic merge for the fields executors touch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for op in ops:
        if op.get("op") not in {"replace", "add", "remove"}:
            raise ValueError(f"unsupported op {op.get('op')}")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if op["op"] == "remove":
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = copy.deepcopy(op["value"])
    return out


def selector_matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (selector or "").split(",")):
        k, _, v = term.partition("=")
        if labels.get(k) != v:
            return False
    return True


def _template_key(template: dict[str, Any]) -> str:
    t = copy.deepcopy(template)
    (t.get("metadata", {}).get("labels") or {}).pop("pod-template-hash", None)
    return json.dumps(t, sort_keys=True)


@dataclass
class Injection:
    method: str
    pattern: re.Pattern[str]
    status: int
    message: str
    times: int
    real_only: bool


@dataclass
class FakeK8s:
    token: str = "write-token"
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    replicasets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pdb_blocked: set[tuple[str, str]] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)
    hangs: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)
    _uid: int = 0

    # ------------------------------------------------------------------ state builders

    def uid(self) -> str:
        self._uid += 1
        return f"uid-{self._uid:04d}"

    def add_deployment(self, ns: str, name: str, images: list[str], *, replicas: int = 2,
                       labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A Deployment with one ReplicaSet per image in ``images`` (revisions 1..n; the last is current)."""
        labels = labels or {"app.kubernetes.io/name": name}
        dep = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "uid": self.uid(), "generation": 1, "labels": dict(labels),
                         "annotations": {}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {}},
            "status": {"replicas": replicas, "readyReplicas": replicas},
        }
        self.deployments[(ns, name)] = dep
        for image in images:
            self._set_template(dep, {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": name, "image": image}]}})
        return dep

    def add_node(self, name: str) -> None:
        self.nodes[name] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": self.uid()},
                            "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}

    def add_pod(self, ns: str, name: str, *, node: str = "node-1", labels: dict[str, str] | None = None,
                phase: str = "Running", owner_kind: str = "ReplicaSet") -> None:
        self.pods[(ns, name)] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": self.uid(), "labels": labels or {},
                         "ownerReferences": [{"kind": owner_kind, "name": f"{name}-owner", "uid": "o"}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": phase},
        }

    def inject(self, method: str, path_regex: str, status: int, message: str = "injected failure",
               times: int = 1, real_only: bool = False) -> None:
        self.injections.append(Injection(method.upper(), re.compile(path_regex), status, message, times, real_only))

    def hang(self, method: str, path_regex: str) -> None:
        self.hangs.append((method.upper(), re.compile(path_regex)))

    def writes(self, *, dry_run: bool | None = None) -> list[dict[str, Any]]:
        out = [r for r in self.requests if r["method"] in {"PATCH", "POST", "DELETE", "PUT"}]
        return out if dry_run is None else [r for r in out if r["dry_run"] == dry_run]

    def kubeconfig(self, path: Path, base_url: str, token: str | None = None, context: str = "prod-write") -> Path:
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "fake", "cluster": {"server": base_url}}],
            "users": [{"name": "u", "user": {"token": token or self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "u"}}],
        }
        path.write_text(json.dumps(cfg))
        return path

    # ------------------------------------------------------------------ controller behaviour

    def _set_template(self, dep: dict[str, Any], template: dict[str, Any]) -> None:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        mine = [rs for (rns, _), rs in self.replicasets.items() if rns == ns
                and any(o.get("uid") == dep["metadata"]["uid"] for o in rs["metadata"]["ownerReferences"])]
        top = max((int(rs["metadata"]["annotations"][REVISION]) for rs in mine), default=0)
        key = _template_key(template)
        same = [rs for rs in mine if _template_key(rs["spec"]["template"]) == key]
        if same:
            rs = same[0]
            if int(rs["metadata"]["annotations"][REVISION]) != top:
                rs["metadata"]["annotations"][REVISION] = str(top + 1)
        else:
            h = hashlib.sha256(key.encode()).hexdigest()[:10]
            t = copy.deepcopy(template)
            t.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
            rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": {"name": f"{name}-{h}", "namespace": ns, "uid": self.uid(),
                               "labels": dict(t["metadata"]["labels"]),
                               "annotations": {REVISION: str(top + 1)},
                               "ownerReferences": [{"kind": "Deployment", "name": name,
                                                    "uid": dep["metadata"]["uid"]}]},
                  "spec": {"replicas": dep["spec"]["replicas"], "template": t}}
            self.replicasets[(ns, rs["metadata"]["name"])] = rs
        dep["spec"]["template"] = copy.deepcopy(template)
        dep["metadata"]["annotations"][REVISION] = rs["metadata"]["annotations"][REVISION]
        dep["metadata"]["generation"] = int(dep["metadata"].get("generation", 0)) + 1

    # ------------------------------------------------------------------ HTTP

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        base = "/apis/apps/v1/namespaces/{ns}/deployments"
        r.add_get(base, self.list_deployments)
        r.add_get(base + "/{name}", self.get_deployment)
        r.add_patch(base + "/{name}", self.patch_deployment)
        r.add_get(base + "/{name}/scale", self.get_scale)
        r.add_patch(base + "/{name}/scale", self.patch_scale)
        r.add_get("/apis/apps/v1/namespaces/{ns}/replicasets", self.list_replicasets)
        r.add_get("/api/v1/pods", self.list_all_pods)
        r.add_get("/api/v1/namespaces/{ns}/pods", self.list_pods)
        r.add_get("/api/v1/namespaces/{ns}/pods/{name}", self.get_pod)
        r.add_delete("/api/v1/namespaces/{ns}/pods/{name}", self.delete_pod)
        r.add_post("/api/v1/namespaces/{ns}/pods/{name}/eviction", self.evict)
        r.add_get("/api/v1/nodes/{name}", self.get_node)
        r.add_patch("/api/v1/nodes/{name}", self.patch_node)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        dry = request.query.get("dryRun") == "All"
        self.requests.append({"method": request.method, "path": request.path, "query": dict(request.query),
                              "dry_run": dry, "token": auth.removeprefix("Bearer "),
                              "content_type": request.headers.get("Content-Type", "")})
        if auth != f"Bearer {self.token}":
            return web.json_response(status_body(401, "Unauthorized", "Unauthorized"), status=401)
        for method, pat in self.hangs:
            if method == request.method and pat.search(request.path) and not dry:
                await asyncio.Event().wait()
        for inj in self.injections:
            if inj.times > 0 and inj.method == request.method and inj.pattern.search(request.path) \
                    and not (inj.real_only and dry):
                inj.times -= 1
                return web.json_response(status_body(inj.status, inj.message), status=inj.status)
        if request.method in {"PATCH", "POST", "PUT", "DELETE"} and "dryRun" in request.query and not dry:
            return web.json_response(status_body(400, "invalid dryRun"), status=400)
        return await handler(request)

    @staticmethod
    def _nf(kind: str, name: str) -> web.Response:
        return web.json_response(status_body(404, f'{kind} "{name}" not found', "NotFound"), status=404)

    @staticmethod
    def _list(kind: str, items: list[dict[str, Any]]) -> web.Response:
        return web.json_response({"kind": kind, "apiVersion": "v1", "metadata": {}, "items": items})

    async def list_deployments(self, request: web.Request) -> web.Response:
        ns, sel = request.match_info["ns"], request.query.get("labelSelector", "")
        items = [d for (dns, _), d in self.deployments.items()
                 if dns == ns and selector_matches(d["metadata"].get("labels") or {}, sel)]
        return self._list("DeploymentList", items)

    async def get_deployment(self, request: web.Request) -> web.Response:
        dep = self.deployments.get((request.match_info["ns"], request.match_info["name"]))
        return web.json_response(dep) if dep else self._nf("deployments.apps", request.match_info["name"])

    async def _patch_body(self, request: web.Request, doc: dict[str, Any]) -> dict[str, Any]:
        body = await request.json()
        ctype = request.headers.get("Content-Type", "")
        if "json-patch" in ctype:
            if not isinstance(body, list):
                raise web.HTTPBadRequest(text="json patch must be a list")
            return json_patch(doc, body)
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="merge patch must be an object")
        return merge(doc, body)

    async def patch_deployment(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        dep = self.deployments.get(key)
        if dep is None:
            return self._nf("deployments.apps", key[1])
        new = await self._patch_body(request, dep)
        if not new.get("spec", {}).get("template", {}).get("spec", {}).get("containers"):
            return web.json_response(status_body(422, "spec.template.spec.containers: Required value", "Invalid"),
                                     status=422)
        if request.query.get("dryRun") == "All":
            return web.json_response(new)
        template_changed = _template_key(new["spec"]["template"]) != _template_key(dep["spec"]["template"])
        template = new["spec"]["template"]
        new["spec"]["template"] = dep["spec"]["template"]
        self.deployments[key] = dep = new
        if template_changed:
            self._set_template(dep, template)
        return web.json_response(dep)

    async def get_scale(self, request: web.Request) -> web.Response:
        dep = self.deployments.get((request.match_info["ns"], request.match_info["name"]))
        if dep is None:
            return self._nf("deployments.apps", request.match_info["name"])
        return web.json_response({"kind": "Scale", "apiVersion": "autoscaling/v1",
                                  "metadata": {"name": dep["metadata"]["name"], "namespace": request.match_info["ns"]},
                                  "spec": {"replicas": dep["spec"]["replicas"]},
                                  "status": {"replicas": dep["status"]["replicas"]}})

    async def patch_scale(self, request: web.Request) -> web.Response:
        dep = self.deployments.get((request.match_info["ns"], request.match_info["name"]))
        if dep is None:
            return self._nf("deployments.apps", request.match_info["name"])
        body = await request.json()
        replicas = body.get("spec", {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            return web.json_response(status_body(422, "spec.replicas: Invalid value", "Invalid"), status=422)
        if request.query.get("dryRun") != "All":
            dep["spec"]["replicas"] = replicas
            dep["status"]["replicas"] = replicas
        return web.json_response({"kind": "Scale", "apiVersion": "autoscaling/v1",
                                  "metadata": {"name": dep["metadata"]["name"]}, "spec": {"replicas": replicas}})

    async def list_replicasets(self, request: web.Request) -> web.Response:
        ns, sel = request.match_info["ns"], request.query.get("labelSelector", "")
        items = [rs for (rns, _), rs in self.replicasets.items()
                 if rns == ns and selector_matches(rs["metadata"].get("labels") or {}, sel)]
        return self._list("ReplicaSetList", items)

    def _pods(self, ns: str | None, field_sel: str, label_sel: str) -> list[dict[str, Any]]:
        node = field_sel.removeprefix("spec.nodeName=") if field_sel.startswith("spec.nodeName=") else None
        return [p for (pns, _), p in self.pods.items()
                if (ns is None or pns == ns) and (node is None or p["spec"].get("nodeName") == node)
                and selector_matches(p["metadata"].get("labels") or {}, label_sel)]

    async def list_all_pods(self, request: web.Request) -> web.Response:
        return self._list("PodList", self._pods(None, request.query.get("fieldSelector", ""),
                                                request.query.get("labelSelector", "")))

    async def list_pods(self, request: web.Request) -> web.Response:
        return self._list("PodList", self._pods(request.match_info["ns"], request.query.get("fieldSelector", ""),
                                                request.query.get("labelSelector", "")))

    async def get_pod(self, request: web.Request) -> web.Response:
        pod = self.pods.get((request.match_info["ns"], request.match_info["name"]))
        return web.json_response(pod) if pod else self._nf("pods", request.match_info["name"])

    async def delete_pod(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        pod = self.pods.get(key)
        if pod is None:
            return self._nf("pods", key[1])
        if request.query.get("dryRun") != "All":
            del self.pods[key]
        return web.json_response(pod)

    async def evict(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        body = await request.json()
        if body.get("kind") != "Eviction":
            return web.json_response(status_body(400, "body must be an Eviction"), status=400)
        if key not in self.pods:
            return self._nf("pods", key[1])
        if key in self.pdb_blocked:
            return web.json_response(status_body(
                429, "Cannot evict pod as it would violate the pod's disruption budget.", "TooManyRequests"),
                status=429)
        if request.query.get("dryRun") != "All":
            del self.pods[key]
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"}, status=201)

    async def get_node(self, request: web.Request) -> web.Response:
        node = self.nodes.get(request.match_info["name"])
        return web.json_response(node) if node else self._nf("nodes", request.match_info["name"])

    async def patch_node(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        node = self.nodes.get(name)
        if node is None:
            return self._nf("nodes", name)
        new = await self._patch_body(request, node)
        if request.query.get("dryRun") != "All":
            self.nodes[name] = new
        return web.json_response(new)
