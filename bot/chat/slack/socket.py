"""Socket Mode: onwatch dials out to Slack over a websocket, so it needs no public URL.

Started by ``bot.app.running`` when ``slack.app_token`` is set; the same bolt app handles what arrives,
and envelopes are acknowledged by the handler exactly as HTTP requests are.
"""

from __future__ import annotations

import logging

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.chat.slack.app import bolt_app
from bot.chat.slack.routes import slack_adapter
from bot.context import AppContext

log = logging.getLogger(__name__)


class SocketModeRunner:
    def __init__(self, ctx: AppContext) -> None:
        s = ctx.settings.slack
        if s.app_token is None:
            raise ValueError("Socket Mode needs slack.app_token (xapp-…)")
        self.adapter = adapter = slack_adapter(ctx)
        # apps.connections.open is called with the app-level token, on the same API base URL
        web_client = AsyncWebClient(base_url=adapter.client.base_url, retry_handlers=adapter.client.retry_handlers)
        self.handler = AsyncSocketModeHandler(bolt_app(ctx, adapter), s.app_token.get_secret_value(),
                                              web_client=web_client)

    async def start(self) -> None:
        await self.handler.connect_async()
        log.info("Slack Socket Mode connected")

    async def stop(self) -> None:
        await self.handler.close_async()
        await self.adapter.aclose()
