"""The one aiohttp application: health, readiness and metrics here; feature routes installed by their owners."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.context import AppContext
from bot.errors import DatabaseError
from bot.store.models import DeadLetter

log = logging.getLogger(__name__)

CTX: web.AppKey[AppContext] = web.AppKey("onwatch_ctx", AppContext)
Installer = Callable[[web.Application, AppContext], None]


def feature_installers() -> list[Installer]:
    """Route installers of each feature; each owns its paths under the one application."""
    installers: list[Installer] = []
    from integrations import change_webhook

    installers.append(change_webhook.install)
    from bot.intake import routes as intake_routes

    installers.append(intake_routes.install)
    from bot.chat.slack import routes as slack_routes  # mounts /slack/events only when Slack is configured

    installers.append(slack_routes.install)
    from bot.chat.teams import routes as teams_routes  # mounts /api/messages only when teams.enabled

    installers.append(teams_routes.install)
    from bot.web_ui import views as web_ui  # mounts /ui/ only when web.enabled

    installers.append(web_ui.install)
    return installers


async def dead_letter(ctx: AppContext, source: str, reason: str, body: bytes, headers: dict[str, str]) -> None:
    """Keep a refused payload with the reason (invariant 6: bad input is answered 4xx and nothing is lost)."""
    async with ctx.db.begin() as s:
        s.add(DeadLetter(source=source, reason=reason[:4000], body=body, headers=headers))
    ctx.metrics.dead_letters.labels(source).inc()


async def read_capped(request: web.Request, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, read in chunks; the flag says there was more (whatever
    Content-Length claimed), so an oversized body is refused with what was read kept, not dropped."""
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(65536)
        if not chunk:
            return b"".join(parts), False
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)[:limit], True


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
    journal = getattr(ctx.triage, "journal", None)
    if journal is not None:
        # Still ready while the grouper restarts: webhooks are journaled and nothing acknowledged is lost.
        return web.json_response({"status": "ready", "intake": {"journal": "on", **journal.status()}})
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    for state, n in (await ctx.jobs.counts()).items():
        ctx.metrics.jobs.labels(state).set(n)
    body = generate_latest(ctx.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(ctx: AppContext, installers: list[Installer] | None = None) -> web.Application:
    app = web.Application(
        middlewares=[_count_requests], client_max_size=max(ctx.settings.webhooks.max_body_bytes, 1024 * 1024)
    )
    app[CTX] = ctx
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    for install in feature_installers() if installers is None else installers:
        install(app, ctx)
    return app
