"""``POST /api/messages``: the Bot Framework messaging endpoint, on the one onwatch aiohttp server.

The body is checked before the SDK sees it: a request that is not a JSON activity with a type, a
``serviceUrl``, a ``channelId`` and a conversation is answered ``400`` with the reason and kept in the
dead-letter table (nothing is lost). Authentication is the SDK's (``CloudAdapter`` with
``ConfigurationBotFrameworkAuthentication``): a bad or missing token is ``401``. The answer is the
SDK's too: an invoke response, the buffered replies for ``deliveryMode: expectReplies``, or ``201``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import jwt
from aiohttp import web
from botbuilder.core import serializer_helper
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity
from msrest.exceptions import DeserializationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.chat.teams.adapter import TeamsAdapter, approvers_lookup
from bot.chat.teams.bot import OnwatchTeamsBot
from bot.chat.teams.connection import build_cloud_adapter
from bot.context import AppContext
from bot.httpio import dead_letter as keep_dead_letter
from bot.httpio import read_capped

log = logging.getLogger(__name__)

PATH = "/api/messages"
DEAD_LETTER_SOURCE = "teams"
_KEPT_HEADERS = ("Content-Type", "User-Agent", "Content-Length", "X-Forwarded-For")


class _Ref(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1, max_length=1000)


class ActivityEnvelope(BaseModel):
    """The parts of an activity onwatch relies on; everything else is passed through untouched."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    type: str = Field(min_length=1, max_length=64)
    serviceUrl: str = Field(min_length=1, max_length=2000)
    channelId: str = Field(min_length=1, max_length=100)
    conversation: _Ref
    from_: _Ref | None = Field(default=None, alias="from")
    recipient: _Ref | None = None
    name: str | None = Field(default=None, max_length=200)

    @field_validator("serviceUrl")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        return v


def _reason(exc: ValidationError) -> str:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(activity)"
        out.append(f"{loc}: {err['msg']}")
    return "; ".join(out)


def validate_activity(body: bytes, content_type: str,
                      allow_host: Callable[[str], bool] | None = None) -> tuple[int, str, Activity | None]:
    """(status, reason, activity): status 0 means the activity may go to the SDK. ``allow_host`` decides
    whether the ``serviceUrl`` host is a Bot Connector onwatch may answer (403 otherwise: replies go there)."""
    if content_type != "application/json":
        return 415, f"Content-Type must be application/json, not {content_type or 'missing'}", None
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return 400, f"the body is not valid JSON ({exc})", None
    except RecursionError:
        return 400, "the body is not valid JSON (nested too deeply)", None
    if not isinstance(data, dict):
        return 400, "an activity must be a JSON object", None
    try:
        env = ActivityEnvelope.model_validate(data)
    except ValidationError as exc:
        return 400, f"malformed activity: {_reason(exc)}", None
    if env.type == "invoke" and not env.name:
        return 400, "malformed activity: an invoke needs a name", None
    if env.type == "message" and env.from_ is None:
        return 400, "malformed activity: a message needs from.id", None
    host = urlsplit(env.serviceUrl).hostname or ""
    if allow_host is not None and not allow_host(host):
        return 403, f"serviceUrl host {host[:100]!r} is not a Bot Framework host (teams.extra_service_url_hosts)", None
    try:
        activity = Activity().deserialize(data)
    except DeserializationError as exc:
        return 400, f"malformed activity: {exc}", None
    except RecursionError:
        return 400, "malformed activity: nested too deeply", None
    return 0, "", activity


def body_limit(ctx: AppContext) -> int:
    """The largest activity accepted: the app's own request cap (``webhooks.max_body_bytes``, at least 1 MiB)."""
    return max(ctx.settings.webhooks.max_body_bytes, 1024 * 1024)


async def dead_letter(ctx: AppContext, request: web.Request, body: bytes, reason: str) -> None:
    headers = {k: request.headers[k] for k in _KEPT_HEADERS if k in request.headers}
    await keep_dead_letter(ctx, DEAD_LETTER_SOURCE, reason, body, headers)


class MessagesEndpoint:
    """The aiohttp handler: validate, then hand the activity to the SDK and the bot."""

    def __init__(self, ctx: AppContext, cloud: CloudAdapter, bot: OnwatchTeamsBot):
        self.ctx = ctx
        self.cloud = cloud
        self.bot = bot

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        limit = body_limit(self.ctx)
        body, more = await read_capped(request, limit)
        if more or (request.content_length or 0) > limit:
            reason = f"body exceeds the limit of {limit} bytes"
            await dead_letter(self.ctx, request, body, reason)
            log.warning("teams: rejected a request to %s: %s", PATH, reason)
            return web.json_response({"error": "payload_too_large", "reason": reason}, status=413)
        status, reason, activity = validate_activity(body, request.content_type,
                                                     self.ctx.settings.teams.allows_service_host)
        if status == 403:  # not stored: it named a host onwatch must never call
            log.warning("teams: refused a request to %s: %s", PATH, reason)
            return web.json_response({"error": "forbidden", "reason": reason}, status=403)
        if activity is None:
            await dead_letter(self.ctx, request, body, reason)
            log.warning("teams: rejected a request to %s: %s", PATH, reason)
            return web.json_response({"error": "bad_request" if status == 400 else "unsupported_media_type",
                                      "reason": reason}, status=status)
        auth_header = request.headers.get("Authorization", "")
        try:
            invoke_response = await self.cloud.process_activity(auth_header, activity, self.bot.on_turn)
        except (PermissionError, jwt.PyJWTError) as exc:
            log.warning("teams: refused an unauthenticated activity: %s", exc)
            return web.json_response({"error": "unauthorized", "reason": "invalid or missing Bot Framework token"},
                                     status=401)
        except Exception as exc:  # noqa: BLE001 - the activity is kept in the dead letters, then re-raised
            await dead_letter(self.ctx, request, body, f"processing failed: {type(exc).__name__}: {exc}")
            raise
        if invoke_response:
            payload = invoke_response.body
            if payload is not None and not isinstance(payload, dict | list):
                payload = serializer_helper(payload)
            return web.json_response(payload, status=invoke_response.status)
        return web.Response(status=201)


def teams_adapter_for(ctx: AppContext) -> TeamsAdapter:
    """The process's one TeamsAdapter (added to ``ctx.chat`` by ``build_context``, or here)."""
    for a in ctx.chat.adapters:
        if isinstance(a, TeamsAdapter):
            return a
    adapter = TeamsAdapter(ctx.db, ctx.settings.teams, build_cloud_adapter(ctx.settings.teams),
                           approvers=approvers_lookup(ctx))
    ctx.chat.add(adapter)
    return adapter


def install(app: web.Application, ctx: AppContext) -> None:
    """Mount ``POST /api/messages`` when ``teams.enabled`` (anonymous, and loudly so, without an app id)."""
    if not ctx.settings.teams.enabled:
        return
    adapter = teams_adapter_for(ctx)
    app.router.add_post(PATH, MessagesEndpoint(ctx, adapter.cloud, OnwatchTeamsBot(ctx)))
