"""The three webhook endpoints: authenticate, bound, validate, dead-letter, hand to triage, acknowledge.

``POST /webhooks/alertmanager`` | ``/webhooks/grafana`` | ``/webhooks/generic``

* Auth: ``Authorization: Bearer <webhooks.token>`` (constant-time compare), or
  ``X-Onwatch-Signature: sha256=<hex HMAC-SHA256 of the raw body with webhooks.hmac_secret>``. With neither
  configured every request is refused: an open alert endpoint would let anyone open incidents.
* The body is read in chunks and refused as soon as it passes ``webhooks.max_body_bytes`` (413).
* Alertmanager and Grafana bodies are parsed and validated in one pass by pydantic-core (``read_vendor``);
  only a refused body is read again with stdlib json, to answer with the reason the stdlib path always
  gave (400 unreadable, 422 not an object or wrong shape). Generic bodies take that stdlib path directly.
* Every refusal is answered 4xx with the reason as JSON ``{"error": ...}`` and stored in ``dead_letter``
  (raw body capped, source, reason, selected headers, time). Credentials are never stored.
* Accepted payloads on the SQLite default are written to the intake journal and acknowledged (202, with a
  ticket); the grouper process triages them moments later (``bot.triage.journaled``). Elsewhere (PostgreSQL,
  ``triage.journal: off``) they are persisted and grouped in one transaction, then acknowledged (200, with the
  outcome). A redelivered payload is deduplicated by triage, so retries are harmless. A storage failure is a
  503 so the sender retries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from bot.audit import Actor
from bot.context import AppContext
from bot.errors import DatabaseError
from bot.intake.journal import JournalError
from bot.intake.payloads import PAYLOADS, GenericWebhook, Payload, UnsafeText, Vendor, refuse_nul
from bot.triage.alert import AlertIn
from bot.triage.prepared import Prepared
from bot.web import CTX, dead_letter

log = logging.getLogger(__name__)
T = TypeVar("T")

SIGNATURE_HEADER = "X-Onwatch-Signature"
AUTH_FAILURE_BODY_CAP = 4096
DEAD_BODY_CAP = 1_048_576
_KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For", "Content-Encoding")
_CHUNK = 65536
LOC_PART_CAP = 60  # a label key named in a reason is cut to this


class Rejected(Exception):
    """A request refused with an HTTP status and a reason the sender can act on."""

    def __init__(self, status: int, reason: str, body_cap: int = DEAD_BODY_CAP, partial: bytes = b""):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.body_cap = body_cap
        self.partial = partial


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body, or ``Rejected(413)`` as soon as it is longer than ``limit`` (whatever Content-Length says)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise Rejected(413, f"body of {declared} bytes exceeds the limit of {limit} bytes (webhooks.max_body_bytes)")
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        parts.append(chunk)
        if size > limit:
            raise Rejected(413, f"body exceeds the limit of {limit} bytes (webhooks.max_body_bytes)",
                           partial=b"".join(parts))
    return b"".join(parts)


def check_auth(ctx: AppContext, headers: Any, body: bytes) -> str:
    """Return how the caller authenticated ("token" or "hmac"), or raise ``Rejected(401)``."""
    wh = ctx.settings.webhooks
    if wh.token is None and wh.hmac_secret is None:
        raise Rejected(401, "webhook credentials are not configured (set ONWATCH_WEBHOOKS__TOKEN or "
                            "ONWATCH_WEBHOOKS__HMAC_SECRET)", AUTH_FAILURE_BODY_CAP)
    auth = headers.get("Authorization", "")
    if wh.token is not None and auth:
        scheme, _, presented = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode("utf-8", "surrogateescape"), wh.token.get_secret_value().encode()
        ):
            return "token"
    sig = headers.get(SIGNATURE_HEADER, "")
    if wh.hmac_secret is not None and sig:
        expected = "sha256=" + hmac.new(wh.hmac_secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(sig.strip().encode("utf-8", "surrogateescape"), expected.encode()):
            return "hmac"
        raise Rejected(401, f"{SIGNATURE_HEADER} does not match the body", AUTH_FAILURE_BODY_CAP)
    if auth:
        raise Rejected(401, "the bearer token is not valid", AUTH_FAILURE_BODY_CAP)
    raise Rejected(401, f"missing credentials: send Authorization: Bearer <token> or {SIGNATURE_HEADER}",
                   AUTH_FAILURE_BODY_CAP)


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise Rejected(400, "empty body: expected a JSON object")
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise Rejected(400, f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise Rejected(400, f"body is not valid JSON: {type(exc).__name__}") from None


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object read by stdlib json, or ``Rejected`` saying why not."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise Rejected(422, f"expected a JSON object, got {type(data).__name__}")
    return data


def _printable(text: str) -> str:
    """A reason echoes field names the sender chose: keep it storable (no NUL, no unpaired surrogate)."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def describe_validation(exc: ValidationError, limit: int = 5) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:limit]:
        loc = ".".join(str(p)[:LOC_PART_CAP] for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return _printable("payload does not match the expected shape: " + "; ".join(parts) + more)


def _json_error(exc: ValidationError) -> str | None:
    """pydantic-core's reason when it refused the JSON text itself (rather than its shape)."""
    for err in exc.errors(include_url=False, include_input=False):
        if err["type"] == "json_invalid":
            return str(err["msg"]).removeprefix("Invalid JSON: ")
    return None


def _explain(model: type[Vendor], body: bytes, exc: ValidationError) -> Vendor:
    """Why the fast read refused ``body``, checked in the stdlib path's order: JSON, object, shape.

    stdlib json reads some text pydantic-core refuses: a BOM or UTF-16/32, nesting past 200 levels, and
    unpaired surrogates. The first two are validated from the parsed data; a surrogate is refused (400),
    as the fast path refuses it, since no column can hold one."""
    data = json_object(body)
    reason = _json_error(exc)
    if reason is None:
        raise Rejected(422, describe_validation(exc))
    try:
        text = json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeEncodeError (a surrogate) is a ValueError
        raise Rejected(400, f"body is not valid JSON: {reason}") from None
    try:
        refuse_nul(text)
    except UnsafeText as unsafe:
        raise Rejected(422, str(unsafe)) from None
    return model.model_validate(data)


def read_vendor(model: type[Vendor], body: bytes) -> Vendor:
    """The payload read by pydantic-core's parser (the hot path); on a refusal, ``Rejected`` with the reason."""
    try:
        return model.from_json(body)
    except UnsafeText as exc:
        raise Rejected(422, str(exc)) from None
    except ValidationError as exc:
        return _explain(model, body, exc)


def read_alerts(model: Payload, body: bytes) -> list[AlertIn]:
    """Parse, validate and normalise a body, or raise ``Rejected`` (400 unreadable, 422 wrong shape)."""
    return _read(model, body, lambda payload: payload.to_alerts())


def read_prepared(model: Payload, body: bytes) -> list[Prepared]:
    """``read_alerts`` as the triage pass takes them: fingerprinted, hashed, identified (the journaled path)."""
    return _read(model, body, lambda payload: payload.to_prepared())


def _read(model: Payload, body: bytes, normalise: Callable[[Vendor | GenericWebhook], list[T]]) -> list[T]:
    """The body parsed and validated, then normalised; a refusal at either step is ``Rejected``."""
    try:
        payload = read_vendor(model, body) if issubclass(model, Vendor) else model.model_validate(json_object(body))
        return normalise(payload)
    except ValidationError as exc:
        raise Rejected(422, describe_validation(exc)) from None


def _safe_headers(request: web.Request) -> dict[str, str]:
    return {h: request.headers[h].encode("utf-8", "replace").decode("utf-8")[:500]
            for h in _KEPT_HEADERS if h in request.headers}


def make_handler(source: str):  # type: ignore[no-untyped-def]
    model = PAYLOADS[source]

    async def handle(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        body = b""
        try:
            body = await read_limited(request, ctx.settings.webhooks.max_body_bytes)
            how = check_auth(ctx, request.headers, body)
            if ctx.triage.journal is not None:
                prepared, alerts = read_prepared(model, body), None
            else:
                prepared, alerts = None, read_alerts(model, body)
        except Rejected as rej:
            kept = (body or rej.partial)[: rej.body_cap]
            try:
                await dead_letter(ctx, source, rej.reason, kept, _safe_headers(request))
            except (SQLAlchemyError, DatabaseError, OSError):
                log.exception("could not store a dead letter for %s", source)
                return web.json_response({"error": "storage unavailable; retry", "rejected": rej.reason}, status=503)
            log.info("webhook %s rejected (%s): %s", source, rej.status, rej.reason)
            return web.json_response({"error": rej.reason}, status=rej.status)
        actor = Actor("webhook", source, how)
        try:
            if prepared is not None:
                ticket = await ctx.triage.enqueue(prepared, source=source, actor=actor)
                return web.json_response({"status": "queued", "received": len(prepared), "ticket": ticket},
                                         status=202)
            assert alerts is not None
            outcome = await ctx.triage.ingest(alerts, actor=actor)
        except (SQLAlchemyError, DatabaseError, JournalError, OSError) as exc:
            log.error("webhook %s: storage failed: %s", source, exc)
            return web.json_response({"error": "storage unavailable; retry"}, status=503)
        return web.json_response({"status": "accepted", **outcome.as_dict()})

    return handle


def install(app: web.Application, ctx: AppContext) -> None:
    if ctx.triage is None:
        from bot.triage.service import TriageService

        ctx.triage = TriageService(ctx)
    for source in PAYLOADS:
        app.router.add_post(f"/webhooks/{source}", make_handler(source))
    if ctx.settings.webhooks.token is None and ctx.settings.webhooks.hmac_secret is None:
        log.warning("webhooks.token and webhooks.hmac_secret are unset: the webhook endpoints refuse every request")
