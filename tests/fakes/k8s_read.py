"""A fake Kubernetes API server for the read client: lists of events, pods, deployments, replicasets and nodes,
namespaced or across namespaces, honouring ``limit`` (with a ``continue`` token) and a bearer token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.fakes import new_app

OBJECTS: web.AppKey[dict[str, list[dict[str, Any]]]] = web.AppKey("objects", dict)
TOKEN: web.AppKey[str] = web.AppKey("token", str)
KINDS = {"events": "EventList", "pods": "PodList", "deployments": "DeploymentList", "replicasets": "ReplicaSetList",
         "nodes": "NodeList"}


def _handler(plural: str, namespaced: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        return _list(request, plural, request.match_info["ns"] if namespaced else None)

    return handle


def _list(request: web.Request, plural: str, namespace: str | None) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {request.app[TOKEN]}":
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "message": "Unauthorized", "reason": "Unauthorized", "code": 401}, status=401)
    items = [o for o in request.app[OBJECTS].get(plural, [])
             if namespace is None or o["metadata"].get("namespace") == namespace]
    limit = int(request.query.get("limit", "0") or 0)
    meta: dict[str, Any] = {"resourceVersion": "100"}
    if limit and len(items) > limit:
        items, meta["continue"] = items[:limit], "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ"
    api = "v1" if plural in ("events", "pods", "nodes") else "apps/v1"
    return web.json_response({"kind": KINDS[plural], "apiVersion": api, "metadata": meta, "items": items})


def make_app(objects: dict[str, list[dict[str, Any]]], token: str) -> web.Application:
    app = new_app()
    app[OBJECTS] = objects
    app[TOKEN] = token
    for plural in ("events", "pods"):
        app.router.add_get(f"/api/v1/{plural}", _handler(plural, False))
        app.router.add_get(f"/api/v1/namespaces/{{ns}}/{plural}", _handler(plural, True))
    app.router.add_get("/api/v1/nodes", _handler("nodes", False))  # cluster-scoped
    for plural in ("deployments", "replicasets"):
        app.router.add_get(f"/apis/apps/v1/{plural}", _handler(plural, False))
        app.router.add_get(f"/apis/apps/v1/namespaces/{{ns}}/{plural}", _handler(plural, True))
    return app


def write_kubeconfig(path: Path, server: str, token: str, context: str = "fake") -> Path:
    """A kubeconfig pointing at the fake server with a bearer token (what a read-only ServiceAccount gets)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "reader", "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": "fake", "user": "reader"}}],
    }))
    return path
