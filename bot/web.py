"""The one aiohttp application: health, readiness and metrics here; feature routes installed by their owners."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import ClientPayloadError, web
from aiohttp.streams import EofStream
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.context import AppContext
from bot.deadletter import DeadLetters
from bot.errors import DatabaseError

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


async def dead_letter(ctx: AppContext, source: str, reason: str, body: bytes, headers: dict[str, str], *,
                      authenticated: bool = False) -> None:
    """Keep a refused payload with the reason (invariant 6), bounded (``bot.deadletter``): an unauthenticated
    caller's body is kept to 4 KiB."""
    if ctx.dead_letters is None:
        ctx.dead_letters = DeadLetters(ctx.db, ctx.metrics, ctx.settings.webhooks)
    await ctx.dead_letters.keep(source, reason, body, headers, authenticated=authenticated)


def is_json_type(content_type: str) -> bool:
    """``application/json`` or a JSON suffix type (``application/vnd.x+json``): what the webhooks read."""
    return content_type == "application/json" or (content_type.startswith("application/")
                                                  and content_type.endswith("+json"))


class BodyError(Exception):
    """A body that could not be read whole: too large (413), too slow (408), or its client went away (400)."""

    def __init__(self, status: int, reason: str, partial: bytes):
        super().__init__(reason)
        self.status, self.reason, self.partial = status, reason, partial


@dataclass
class Body:
    data: bytes
    more: bool  # the body went on past the limit (``keep=True`` only)


async def read_body(request: web.Request, limit: int, timeout_s: float, *, keep: bool = False) -> Body:
    """The body read in chunks within ``timeout_s``: past ``limit`` bytes a ``BodyError(413)``, or with ``keep``
    the first ``limit`` bytes and ``more=True``. A client that hangs up is logged in one line (``BodyError(400)``)."""
    declared = request.content_length
    if not keep and declared is not None and declared > limit:
        raise BodyError(413, f"body of {declared} bytes exceeds the limit of {limit} bytes (webhooks.max_body_bytes)",
                        b"")
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.read(65536):
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    if keep:
                        return Body(b"".join(parts)[:limit], True)
                    raise BodyError(413, f"body exceeds the limit of {limit} bytes (webhooks.max_body_bytes)",
                                    b"".join(parts))
    except TimeoutError:
        raise BodyError(408, f"body not received within {timeout_s:g}s (webhooks.body_timeout_s)",
                        b"".join(parts)) from None
    except (ConnectionError, ClientPayloadError, EofStream, asyncio.CancelledError) as exc:
        log.info("%s %s: the client went away mid-body after %d bytes (%s)", request.method, request.path, size,
                 type(exc).__name__)
        if isinstance(exc, asyncio.CancelledError):  # aiohttp cancels the handler of a lost connection
            raise
        raise BodyError(400, "the client closed the connection before the whole body", b"".join(parts)) from None
    return Body(b"".join(parts), False)


async def read_capped(request: web.Request, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body; the flag says there was more (whatever Content-Length claimed), so
    an oversized body is refused with what was read kept. Too slow: 408; client gone: 400 (one log line)."""
    try:
        body = await read_body(request, limit, request.app[CTX].settings.webhooks.body_timeout_s, keep=True)
    except BodyError as exc:
        raise web.HTTPRequestTimeout(text=exc.reason) if exc.status == 408 else web.HTTPBadRequest(
            text=exc.reason) from None
    return body.data, body.more


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
