"""``POST /slack/events`` on the onwatch aiohttp server: events, slash commands and interactivity.

Requests go through bolt's own pipeline (signing-secret verification, a 5-minute timestamp window,
URL verification), so a forged signature or a stale timestamp is answered 401 before any listener runs.
The signature is also checked here over the raw bytes *before* bolt parses the body (bolt parses first,
and answers a body it cannot parse with a 500); a signed body bolt cannot parse is a 400.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request

from bot.chat.slack.adapter import SlackAdapter
from bot.chat.slack.app import bolt_app
from bot.context import AppContext

PATH = "/slack/events"
MAX_SKEW_S = 300


def slack_adapter(ctx: AppContext) -> SlackAdapter:
    """The context's Slack adapter, created and added to the chat hub if ``build_context`` did not."""
    for a in ctx.chat.adapters:
        if isinstance(a, SlackAdapter):
            return a
    adapter = SlackAdapter(ctx.settings, ctx.db)
    ctx.chat.add(adapter)
    return adapter


def signed(secret: bytes, body: bytes, timestamp: str, signature: str, now: float | None = None) -> bool:
    """Slack's request signature (``v0=`` HMAC-SHA256 of ``v0:<ts>:<raw body>``), within 5 minutes."""
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > MAX_SKEW_S:
        return False
    expected = "v0=" + hmac.new(secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def install(app: web.Application, ctx: AppContext) -> None:
    """Mount the Slack endpoint when Slack is configured for HTTP mode (a signing secret is set)."""
    s = ctx.settings.slack
    if not s.enabled or s.signing_secret is None:
        return
    adapter = slack_adapter(ctx)
    bolt = bolt_app(ctx, adapter)

    secret = s.signing_secret.get_secret_value().encode()

    async def events(request: web.Request) -> web.Response:
        # bolt parses the body before it checks the signature, and a body it cannot parse is a 500 there:
        # so the signature is checked here first, and what bolt cannot parse is answered 400.
        body = await request.read()
        ts = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not signed(secret, body, ts, signature):
            return web.json_response({"error": "invalid_request",
                                      "reason": "missing, stale or wrong Slack signature"}, status=401)
        try:
            bolt_req = await to_bolt_request(request)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError) as exc:
            return web.json_response({"error": "bad_request",
                                      "reason": f"not a Slack event, command or interaction ({type(exc).__name__})"},
                                     status=400)
        bolt_resp = await bolt.async_dispatch(bolt_req)
        return await to_aiohttp_response(bolt_resp)

    async def close(_app: web.Application) -> None:
        await adapter.aclose()

    app.router.add_post(PATH, events)
    app.on_cleanup.append(close)
