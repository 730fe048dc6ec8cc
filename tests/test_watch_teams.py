"""Watch items in Teams: the early warning is a new post in ``teams.channel`` (an Adaptive Card with the chart
inline), and its recovery a reply in that post's thread. The real onwatch app and botbuilder's CloudAdapter
posting to a fake Bot Connector."""

from __future__ import annotations

import base64
import json

from bot.app import build_context
from bot.chat.watch_posters import TeamsWatchPoster, watch_posters
from bot.config import WatchSettings
from bot.store.db import Database
from bot.watch.model import WatchOutcome
from bot.watch.service import WatchService
from tests.fakes.bot_connector import FakeBotConnector
from tests.teams_fixtures import BOT_ID, CHANNEL, activity, card_nodes, serve, teams_settings
from tests.watch_fixtures import Clock, finding


async def test_teams_post_and_recovery_reply(connector: FakeBotConnector, sqlite_url: str, db: Database) -> None:
    ctx = await build_context(teams_settings(sqlite_url), db)
    clock = Clock()
    async with serve(ctx) as srv:
        status, _ = await srv.post(activity("conversationUpdate", connector.service_url, membersAdded=[{"id": BOT_ID}]))
        assert status == 201
        posters = watch_posters(ctx.chat.adapters, ctx.settings)
        assert [type(p) for p in posters] == [TeamsWatchPoster]
        watch = WatchService(WatchSettings(), db, posters, clock=clock)
        assert await watch.observe(finding()) == WatchOutcome.OPENED
        assert await watch.observe(finding()) == WatchOutcome.HELD
        (create,) = connector.of_kind("create_conversation")
        assert create.body["channelData"]["channel"]["id"] == CHANNEL
        card = create.body["activity"]["attachments"][0]["content"]
        texts = " ".join(b.get("text", "") for b in card_nodes(card["body"]))
        assert "Early warning" in texts and "latency\\_p99" in texts
        (image,) = [b for b in card_nodes(card["body"]) if b.get("type") == "Image"]
        assert base64.b64decode(image["url"].removeprefix("data:image/png;base64,")).startswith(b"\x89PNG")
        (root,) = connector.conversations[CHANNEL]  # the post's id: its thread is <channel>;messageid=<root>
        clock.now += 1200
        assert await watch.recover([], "degradation") == ["degradation:checkout:latency_p99"]
        (reply,) = connector.of_kind("send")
        assert reply.conversation_id == f"{CHANNEL};messageid={root}" and "Recovered at" in json.dumps(reply.body)
