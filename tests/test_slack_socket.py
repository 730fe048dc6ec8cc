"""Socket Mode: ``running()`` dials the fake Slack's websocket when ``slack.app_token`` is set; envelopes are acked
and handled by the same bolt app (no public URL, no signing secret)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.app import build_context, running
from tests.fakes.slack_api import APP_TOKEN, FakeSlack
from tests.slack_fixtures import eventually, make_incident, slack_settings


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        yield f


async def test_socket_mode_slash_command_and_mention(fake: FakeSlack, sqlite_url: str, db: Any) -> None:
    settings = slack_settings(sqlite_url, fake.api_url, app_token=APP_TOKEN, signing_secret=None)
    ctx = await build_context(settings, db)
    inc = await make_incident(db)
    async with running(ctx, host="127.0.0.1", port=0) as r:
        # HTTP mode is off without a signing secret: the route is not mounted
        assert not any(getattr(res, "canonical", "") == "/slack/events" for res in r.runnable.app.router.resources())
        ack = await fake.push_envelope("slash_commands", {
            "command": "/investigate", "text": "INC-FFFFFF", "user_id": "UALICE", "user_name": "alice",
            "channel_id": "CX", "team_id": "T0001", "response_url": "https://hooks.invalid/1", "trigger_id": "t"})
        assert "envelope_id" in ack
        eph = await eventually(lambda: fake.ephemerals)
        assert "no incident INC-FFFFFF" in eph[0]["text"] and eph[0]["user"] == "UALICE"
        await fake.push_envelope("events_api", {
            "type": "event_callback", "team_id": "T0001", "event_id": "EvSOCK1", "event_time": 1,
            "event": {"type": "app_mention", "user": "UBOB", "text": f"<@UONWATCH> status {inc.id}",
                      "channel": "CX", "ts": fake.next_ts()}})
        reply = await eventually(lambda: fake.messages.get("CX"))
        assert reply[0]["text"].startswith(inc.id)
    assert fake.calls_of("apps.connections.open")
