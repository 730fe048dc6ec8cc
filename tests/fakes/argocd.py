"""A fake Argo CD API server: ``/api/v1/applications``, ``/api/v1/applications/<name>`` and
``/api/v1/applications/<name>/manifests?revision=<rev>`` (manifests as JSON strings, as Argo CD answers)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes import new_app, require_bearer

APPS: web.AppKey[list[dict[str, Any]]] = web.AppKey("apps", list)
TOKEN: web.AppKey[str] = web.AppKey("token", str)
MANIFESTS: web.AppKey[dict[str, dict[str, list[dict[str, Any]]]]] = web.AppKey("manifests", dict)


async def list_apps(request: web.Request) -> web.Response:
    require_bearer(request, request.app[TOKEN])
    return web.json_response({"metadata": {"resourceVersion": "1"}, "items": request.app[APPS]})


async def get_app(request: web.Request) -> web.Response:
    require_bearer(request, request.app[TOKEN])
    for app in request.app[APPS]:
        if app["metadata"]["name"] == request.match_info["name"]:
            return web.json_response(app)
    return web.json_response({"error": "applications.argoproj.io \"x\" not found", "code": 5,
                              "message": f"applications.argoproj.io \"{request.match_info['name']}\" not found"},
                             status=404)


async def manifests(request: web.Request) -> web.Response:
    require_bearer(request, request.app[TOKEN])
    by_rev = request.app[MANIFESTS].get(request.match_info["name"], {})
    rev = request.query.get("revision", "")
    if rev not in by_rev:
        return web.json_response({"error": f"unable to resolve '{rev}' to a commit SHA", "code": 2,
                                  "message": f"unable to resolve '{rev}' to a commit SHA"}, status=400)
    return web.json_response({"manifests": [json.dumps(m) for m in by_rev[rev]], "revision": rev,
                              "sourceType": "Kustomize"})


def make_app(apps: list[dict[str, Any]], token: str,
             manifests_by_app: dict[str, dict[str, list[dict[str, Any]]]] | None = None) -> web.Application:
    app = new_app()
    app[APPS] = apps
    app[TOKEN] = token
    app[MANIFESTS] = manifests_by_app or {}
    app.router.add_get("/api/v1/applications", list_apps)
    app.router.add_get("/api/v1/applications/{name}", get_app)
    app.router.add_get("/api/v1/applications/{name}/manifests", manifests)
    return app
