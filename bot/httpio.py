"""What every HTTP route shares: the app key of the context, bounded body reads and dead letters.

Route modules (intake, the change webhook, Slack, Teams, the web view) import this, never ``bot.web``, which
assembles them into the one application: so routes and the application never import each other.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import ClientPayloadError, web
from aiohttp.streams import EofStream

from bot.context import AppContext
from bot.deadletter import DeadLetters

log = logging.getLogger(__name__)

CTX: web.AppKey[AppContext] = web.AppKey("onwatch_ctx", AppContext)


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


def bearer_ok(headers: Mapping[str, str], token: str | None) -> bool:
    """Whether ``Authorization: Bearer <token>`` carries ``token`` (constant-time). Header bytes that are not
    UTF-8 reach aiohttp as surrogates; they are compared as such, so a garbled header is a plain mismatch."""
    scheme, _, presented = headers.get("Authorization", "").partition(" ")
    return token is not None and scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape"))
