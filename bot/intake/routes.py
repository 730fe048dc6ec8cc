"""The three alert webhooks: authenticate, bound, validate, dead-letter, triage, answer.

``POST /webhooks/alertmanager`` | ``/webhooks/grafana`` | ``/webhooks/generic``

* Auth first: ``Authorization: Bearer <webhooks.token>`` (constant-time compare) is checked before the
  body is read; ``X-Onwatch-Signature: sha256=<hex HMAC-SHA256 of the raw body with webhooks.hmac_secret>``
  needs the body (read within ``webhooks.max_body_bytes``). With neither configured every request is
  refused. An unauthenticated request is answered 401 and at most 4 KiB of it is kept in ``dead_letter``.
* Only JSON content types (``application/json``, ``application/*+json``) are read; others are 415.
* The body is read within ``webhooks.body_timeout_s`` (408) and ``webhooks.max_body_bytes`` (413). A client
  that hangs up mid-body is logged in one line.
* Every refusal is answered 4xx with ``{"error": reason}`` and kept in ``dead_letter`` (bounded: see
  ``bot.httpio.dead_letter``). An alert of a batch that fails validation is refused alone: it is dead-lettered
  and named in the answer (``refused``), and the others are triaged.
* Accepted alerts are triaged in one transaction and the sender answered 200 with the outcome, on SQLite
  and PostgreSQL alike. A storage failure is a 503: nothing of the batch is kept, the sender retries, and
  triage deduplicates the redelivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from bot.audit import Actor
from bot.context import AppContext
from bot.deadletter import AUTH_FAILURE_BODY_CAP
from bot.errors import ConfigError, DatabaseError
from bot.httpio import CTX, BodyError, bearer_ok, dead_letter, is_json_type, read_body
from bot.intake.payloads import PAYLOADS, Envelope, describe
from bot.ports import TriagePort

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Onwatch-Signature"
_KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For", "Content-Encoding")


class Rejected(Exception):
    """A request refused with an HTTP status and a reason the sender can act on."""

    def __init__(self, status: int, reason: str, body: bytes = b"", authenticated: bool = True):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.body = body
        self.authenticated = authenticated


def _bearer_ok(ctx: AppContext, headers: Any) -> bool:
    token = ctx.settings.webhooks.token
    return bearer_ok(headers, token.get_secret_value() if token is not None else None)


async def authenticated_body(ctx: AppContext, request: web.Request) -> tuple[str, bytes]:
    """How the caller authenticated ("token" or "hmac") and the body, or ``Rejected`` (401, 408, 413)."""
    wh = ctx.settings.webhooks

    async def unauthenticated(reason: str) -> Rejected:
        kept = b""
        try:
            kept = (await read_body(request, AUTH_FAILURE_BODY_CAP, wh.body_timeout_s, keep=True)).data
        except BodyError as exc:
            kept = exc.partial
        return Rejected(401, reason, kept[:AUTH_FAILURE_BODY_CAP], authenticated=False)

    if wh.token is None and wh.hmac_secret is None:
        raise await unauthenticated("webhook credentials are not configured (set ONWATCH_WEBHOOKS__TOKEN or "
                                    "ONWATCH_WEBHOOKS__HMAC_SECRET)")
    how = "token" if _bearer_ok(ctx, request.headers) else ""
    sig = request.headers.get(SIGNATURE_HEADER, "")
    if not how and not (wh.hmac_secret is not None and sig):
        raise await unauthenticated("the bearer token is not valid" if request.headers.get("Authorization") else
                                    f"missing credentials: send Authorization: Bearer <token> or {SIGNATURE_HEADER}")
    try:
        body = (await read_body(request, wh.max_body_bytes, wh.body_timeout_s)).data
    except BodyError as exc:
        raise Rejected(exc.status, exc.reason, exc.partial, authenticated=bool(how)) from None
    if not how:
        assert wh.hmac_secret is not None
        expected = "sha256=" + hmac.new(wh.hmac_secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sig.strip().encode("utf-8", "surrogateescape"), expected.encode()):
            raise Rejected(401, f"{SIGNATURE_HEADER} does not match the body", body[:AUTH_FAILURE_BODY_CAP],
                           authenticated=False)
        how = "hmac"
    return how, body


def parse(model: type[Envelope], body: bytes) -> Envelope:
    """The body parsed by pydantic-core into ``model``'s envelope, or ``Rejected`` (400 unreadable, 422 shape)."""
    if not body.strip():
        raise Rejected(400, "empty body: expected a JSON object", body)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise Rejected(400, "body is not valid JSON: " + str(errors[0]["msg"]).removeprefix("Invalid JSON: "),
                           body) from None
        if errors and errors[0]["type"] == "model_type":
            raise Rejected(422, f"expected a JSON object, got {errors[0]['msg']}", body) from None
        raise Rejected(422, describe(exc), body) from None


def _safe_headers(request: web.Request) -> dict[str, str]:
    return {h: request.headers[h].encode("utf-8", "replace").decode("utf-8")[:500]
            for h in _KEPT_HEADERS if h in request.headers}


def make_handler(source: str, triage: TriagePort) -> Callable[[web.Request], Awaitable[web.Response]]:
    model = PAYLOADS[source]

    async def handle(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        headers = _safe_headers(request)
        try:
            how, body = await authenticated_body(ctx, request)
            if not is_json_type(request.content_type):
                raise Rejected(415, f"Content-Type {request.content_type!r} is not JSON: send application/json",
                               body)
            batch = parse(model, body).normalise()
            if not batch.alerts:
                raise Rejected(422, "; ".join(reason for _, reason, _ in batch.refused[:5]), body)
            for _i, reason, item in batch.refused:
                await dead_letter(ctx, source, reason, json.dumps(item, ensure_ascii=False).encode("utf-8",
                                  "backslashreplace"), headers, authenticated=True)
            outcome = await triage.ingest(batch.alerts, actor=Actor("webhook", source, how))
        except Rejected as rej:
            try:
                await dead_letter(ctx, source, rej.reason, rej.body, headers, authenticated=rej.authenticated)
            except (SQLAlchemyError, DatabaseError, OSError):
                log.exception("could not store a dead letter for %s", source)
                return web.json_response({"error": "storage unavailable; retry", "rejected": rej.reason}, status=503)
            log.info("webhook %s rejected (%s): %s", source, rej.status, rej.reason)
            return web.json_response({"error": rej.reason}, status=rej.status)
        except (SQLAlchemyError, DatabaseError, OSError) as exc:
            log.error("webhook %s: storage failed: %s", source, exc)
            return web.json_response({"error": "storage unavailable; retry"}, status=503)
        refused = [{"index": i, "error": reason} for i, reason, _ in batch.refused]
        return web.json_response({"status": "accepted", **outcome.as_dict(), "refused": refused})

    return handle


def install(app: web.Application, ctx: AppContext) -> None:
    if ctx.triage is None:
        raise ConfigError(["the webhook routes need triage: build the context with bot.app.context_for"])
    for source in PAYLOADS:
        app.router.add_post(f"/webhooks/{source}", make_handler(source, ctx.triage))
    if ctx.settings.webhooks.token is None and ctx.settings.webhooks.hmac_secret is None:
        log.warning("webhooks.token and webhooks.hmac_secret are unset: the webhook endpoints refuse every request")
