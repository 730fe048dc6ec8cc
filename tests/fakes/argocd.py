"""A fake Argo CD API server: ``/api/v1/applications`` and ``/api/v1/applications/<name>``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes import new_app, require_bearer

APPS: web.AppKey[list[dict[str, Any]]] = web.AppKey("apps", list)
TOKEN: web.AppKey[str] = web.AppKey("token", str)


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


def make_app(apps: list[dict[str, Any]], token: str) -> web.Application:
    app = new_app()
    app[APPS] = apps
    app[TOKEN] = token
    app.router.add_get("/api/v1/applications", list_apps)
    app.router.add_get("/api/v1/applications/{name}", get_app)
    return app
