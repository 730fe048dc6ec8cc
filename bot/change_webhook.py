"""The change webhook's route: CI/CD pipelines ``POST /webhooks/change`` with a bearer token and
``{service, version, kind, time, description, url}``; accepted changes are stored (``ChangeRecord``) and read
back by ``integrations.change_webhook.WebhookChangeSource`` as ``ChangeEvent``s.

Bad input is answered 4xx with the reason and kept in the dead-letter table, so nothing is lost. A request
without the right token is answered 401 and *not* stored: an unauthenticated caller gets no write into the
database, not even a dead letter. The route is refused (503) until ``webhooks.token`` is configured.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal, get_args

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlmodel import select

from bot.audit import Actor, audit
from bot.context import AppContext
from bot.deadletter import AUTH_FAILURE_BODY_CAP
from bot.httpio import bearer_ok, dead_letter, is_json_type, read_capped
from bot.store.models import ChangeRecord
from integrations.base import ChangeKind, parse_rfc3339

PATH = "/webhooks/change"
SOURCE = "change-webhook"
KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Request-Id", "X-GitHub-Delivery")
MAX_FUTURE_S = 3600.0  # a change more than an hour in the future is a clock or unit mistake


class ChangeIn(BaseModel):
    """The webhook body. ``time`` is Unix seconds or RFC 3339; it defaults to the time of receipt."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    service: str = Field(min_length=1, max_length=300)
    version: str = Field(default="", max_length=300)
    kind: Literal["deploy", "config", "flag", "scale", "rollback", "infra", "other"] = "deploy"
    time: float | None = None
    description: str = Field(default="", max_length=4000)
    url: str = Field(default="", max_length=2000)

    @field_validator("service", "version", "description", "url")
    @classmethod
    def _storable(cls, v: str) -> str:
        """PostgreSQL text cannot hold NUL: refused here (422, dead-lettered) on every database, not a 500."""
        if "\x00" in v:
            raise ValueError("NUL characters are not allowed")
        return v

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("time must be Unix seconds or an RFC 3339 string")
        if isinstance(v, str):
            return parse_rfc3339(v)
        return v

    @field_validator("time")
    @classmethod
    def _sane(cls, v: float | None) -> float | None:
        if v is not None and not (0 < v < time.time() + MAX_FUTURE_S):
            raise ValueError(f"time {v} is not a plausible Unix time in seconds (milliseconds by mistake?)")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not v.startswith(("https://", "http://")):
            raise ValueError("url must be an http(s) URL")
        return v


assert set(get_args(ChangeKind)) == set(get_args(ChangeIn.model_fields["kind"].annotation))


def _headers(request: web.Request) -> dict[str, str]:
    return {k: request.headers[k][:500] for k in KEPT_HEADERS if k in request.headers}


def _authorised(request: web.Request, token: str) -> bool:
    return bearer_ok(request.headers, token)


def make_handler(ctx: AppContext) -> Any:
    settings, db = ctx.settings.webhooks, ctx.db

    async def handle(request: web.Request) -> web.Response:
        if settings.token is None:
            return web.json_response({"error": "the change webhook is disabled: set webhooks.token"}, status=503)
        if not _authorised(request, settings.token.get_secret_value()):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        if not is_json_type(request.content_type):
            body, _ = await read_capped(request, AUTH_FAILURE_BODY_CAP)
            reason = f"Content-Type {request.content_type!r} is not JSON: send application/json"
            await dead_letter(ctx, SOURCE, reason, body, _headers(request), authenticated=True)
            return web.json_response({"error": reason}, status=415)
        cap = settings.max_body_bytes
        if request.content_length is not None and request.content_length > cap:
            body, _ = await read_capped(request, cap)
            reason = f"body of {request.content_length} bytes exceeds the {cap} byte limit"
            await dead_letter(ctx, SOURCE, reason, body, _headers(request), authenticated=True)
            return web.json_response({"error": reason}, status=413)
        body, more = await read_capped(request, cap)
        if more:
            reason = f"body exceeds the {cap} byte limit"
            await dead_letter(ctx, SOURCE, reason, body, _headers(request), authenticated=True)
            return web.json_response({"error": reason}, status=413)
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            reason = f"body is not valid JSON: {exc or type(exc).__name__}"
            await dead_letter(ctx, SOURCE, reason, body, _headers(request), authenticated=True)
            return web.json_response({"error": reason}, status=400)
        try:
            change = ChangeIn.model_validate(doc)
        except ValidationError as exc:
            reasons = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
            await dead_letter(ctx, SOURCE, "; ".join(reasons), body, _headers(request), authenticated=True)
            return web.json_response({"error": "invalid change", "details": reasons}, status=422)
        received = time.time()
        async with db.begin() as s:
            if change.time is not None:  # a redelivery of the same change (a CI retry) is recorded once
                same = (await s.exec(select(ChangeRecord).where(
                    ChangeRecord.service == change.service, ChangeRecord.version == change.version,
                    ChangeRecord.kind == change.kind, ChangeRecord.time == change.time,
                    ChangeRecord.description == change.description, ChangeRecord.url == change.url))).first()
                if same is not None:
                    return web.json_response({"status": "duplicate", "id": same.id}, status=202)
            row = ChangeRecord(service=change.service, version=change.version, kind=change.kind,
                               time=change.time if change.time is not None else received,
                               description=change.description, url=change.url, received_at=received)
            s.add(row)
            await s.flush()
            await audit(db, Actor("webhook", "change"), "change.received",
                        params={"id": row.id, "service": row.service, "version": row.version, "kind": row.kind,
                                "time": row.time}, session=s)
        return web.json_response({"status": "accepted", "id": row.id}, status=202)

    return handle


def install(app: web.Application, ctx: AppContext) -> None:
    """Route installer listed in ``bot.app.feature_installers``."""
    app.router.add_post(PATH, make_handler(ctx))
