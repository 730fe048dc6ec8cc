"""The one aiohttp application: health, readiness and metrics here; the feature routes ``bot.app`` lists are
installed by their owners."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.context import AppContext
from bot.errors import DatabaseError
from bot.httpio import CTX

log = logging.getLogger(__name__)

Installer = Callable[[web.Application, AppContext], None]


@web.middleware
async def _count_requests(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    ctx = request.app[CTX]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        ctx.metrics.http_requests.labels(request.method, route, str(status)).inc()


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        await ctx.db.ping()
        await ctx.db.check_schema()
    except DatabaseError as exc:
        return web.json_response({"status": "not ready", "reason": str(exc)}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    for state, n in (await ctx.jobs.counts()).items():
        ctx.metrics.jobs.labels(state).set(n)
    body = generate_latest(ctx.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(ctx: AppContext, installers: Sequence[Installer] = ()) -> web.Application:
    app = web.Application(
        middlewares=[_count_requests], client_max_size=max(ctx.settings.webhooks.max_body_bytes, 1024 * 1024)
    )
    app[CTX] = ctx
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    for install in installers:
        install(app, ctx)
    return app
