"""A fake GitHub REST API: deployments and releases (newest first, ``per_page``/``page``), and compare."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes import new_app, require_bearer

DATA: web.AppKey[dict[str, Any]] = web.AppKey("data", dict)


def _page(request: web.Request, rows: list[dict[str, Any]]) -> web.Response:
    per_page, page = int(request.query.get("per_page", "30")), int(request.query.get("page", "1"))
    return web.json_response(rows[(page - 1) * per_page: page * per_page])


def _repo(request: web.Request) -> dict[str, Any]:
    data = request.app[DATA]
    require_bearer(request, data.get("token"))
    if f"{request.match_info['owner']}/{request.match_info['repo']}" != data["repo"]:
        raise web.HTTPNotFound(text='{"message": "Not Found"}', content_type="application/json")
    return data


async def deployments(request: web.Request) -> web.Response:
    data = _repo(request)
    rows = sorted(data["deployments"], key=lambda d: d["created_at"], reverse=True)
    if "environment" in request.query:
        rows = [d for d in rows if d["environment"] == request.query["environment"]]
    return _page(request, rows)


async def releases(request: web.Request) -> web.Response:
    data = _repo(request)
    return _page(request, sorted(data["releases"], key=lambda r: r["created_at"], reverse=True))


async def compare(request: web.Request) -> web.Response:
    data = _repo(request)
    base, _, head = request.match_info["spec"].partition("...")
    key = f"{base}...{head}"
    if key not in data["compares"]:
        raise web.HTTPNotFound(text='{"message": "Not Found"}', content_type="application/json")
    return web.json_response({"html_url": f"https://github.com/{data['repo']}/compare/{key}",
                              "status": "ahead", **data["compares"][key]})


def make_app(data: dict[str, Any]) -> web.Application:
    app = new_app()
    app[DATA] = data
    app.router.add_get("/repos/{owner}/{repo}/deployments", deployments)
    app.router.add_get("/repos/{owner}/{repo}/releases", releases)
    app.router.add_get("/repos/{owner}/{repo}/compare/{spec}", compare)
    return app
