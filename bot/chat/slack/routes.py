"""``POST /slack/events`` on the onwatch aiohttp server: events, slash commands and interactivity.

Requests go through bolt's own pipeline (signing-secret verification, a 5-minute timestamp window,
URL verification), so a forged signature or a stale timestamp is answered 401 before any listener runs.
"""

from __future__ import annotations

from aiohttp import web

from bot.context import AppContext

PATH = "/slack/events"


def slack_adapter(ctx: AppContext) -> object:
    """The context's Slack adapter, created and added to the chat hub if ``build_context`` did not."""
    from bot.chat.slack.adapter import SlackAdapter

    for a in ctx.chat.adapters:
        if isinstance(a, SlackAdapter):
            return a
    adapter = SlackAdapter(ctx.settings, ctx.db)
    ctx.chat.add(adapter)
    return adapter


def install(app: web.Application, ctx: AppContext) -> None:
    """Mount the Slack endpoint when Slack is configured for HTTP mode (a signing secret is set)."""
    s = ctx.settings.slack
    if not s.enabled or s.signing_secret is None:
        return
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request

    from bot.chat.slack.adapter import SlackAdapter
    from bot.chat.slack.app import bolt_app

    adapter = slack_adapter(ctx)
    assert isinstance(adapter, SlackAdapter)
    bolt = bolt_app(ctx, adapter)

    async def events(request: web.Request) -> web.Response:
        bolt_req = await to_bolt_request(request)
        bolt_resp = await bolt.async_dispatch(bolt_req)
        return await to_aiohttp_response(bolt_resp)

    async def close(_app: web.Application) -> None:
        await adapter.aclose()

    app.router.add_post(PATH, events)
    app.on_cleanup.append(close)
