"""Notes posted to a configured channel on each platform: audit checkpoints to the Slack and Teams audit
channels, and silences added or removed from the CLI announced like chat-made ones in the incident channels.
Through the real adapters: the Slack Web API client against the fake Slack API, botbuilder's CloudAdapter
against the fake Bot Connector."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import build_context
from bot.chat.checkpoints import write_checkpoint
from bot.chat.teams import refs
from bot.cli import main
from bot.config import Settings
from bot.store.db import Database
from tests.fakes.bot_connector import FakeBotConnector
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.teams_fixtures import BOT_ID, BOT_NAME, CHANNEL, ROOT, TENANT

SLACK_INCIDENTS = "CINCIDENTS"
SLACK_AUDIT = "CAUDIT"
TEAMS_AUDIT = "19:audit0123456789abcdef@thread.tacv2"


def conf(sqlite_url: str, slack: FakeSlack, connector: FakeBotConnector) -> dict[str, Any]:
    return {"database": {"url": sqlite_url}, "runbooks": {"dir": str(ROOT / "runbooks")},
            "server": {"host": "127.0.0.1"},
            "slack": {"api_url": slack.api_url, "incident_channel": SLACK_INCIDENTS, "signing_secret": "s3cret"},
            "teams": {"enabled": True, "channel": CHANNEL, "allow_anonymous": True,
                      "extra_service_url_hosts": ["127.0.0.1"]},
            "audit": {"slack_channel": SLACK_AUDIT, "teams_channel": TEAMS_AUDIT}}


async def installed(db: Database, connector: FakeBotConnector, channel: str) -> None:
    """What onwatch stores when it is installed in a team's channel (its conversation reference)."""
    await refs.save_reference(db, channel, {
        "serviceUrl": connector.service_url, "channelId": "msteams", "bot": {"id": BOT_ID, "name": BOT_NAME},
        "conversation": {"id": channel, "conversationType": "channel", "tenantId": TENANT}})


def teams_posts(connector: FakeBotConnector, channel: str) -> list[str]:
    """The new posts in a Teams channel, as Teams shows them (the Markdown escapes removed)."""
    return [str((c.body.get("activity") or {}).get("text")).replace("\\", "")
            for c in connector.of_kind("create_conversation")
            if ((c.body.get("channelData") or {}).get("channel") or {}).get("id") == channel]


async def test_a_checkpoint_is_posted_to_the_slack_and_the_teams_audit_channel(
        db: Database, sqlite_url: str, slack: FakeSlack, connector: FakeBotConnector) -> None:
    data = conf(sqlite_url, slack, connector)
    data["slack"]["bot_token"] = BOT_TOKEN
    ctx = await build_context(Settings.model_validate(data), db)
    await installed(db, connector, TEAMS_AUDIT)
    cp = await write_checkpoint(ctx)
    (slack_post,) = slack.messages[SLACK_AUDIT]
    assert cp.token in slack_post["text"]
    (teams_post,) = teams_posts(connector, TEAMS_AUDIT)
    assert cp.token in teams_post and "onwatch audit verify" in teams_post
    assert not slack.messages[SLACK_INCIDENTS] and not teams_posts(connector, CHANNEL)  # only the audit channels


async def test_a_checkpoint_without_a_teams_reference_is_still_logged_and_posted_to_slack(
        db: Database, sqlite_url: str, slack: FakeSlack, connector: FakeBotConnector,
        caplog: pytest.LogCaptureFixture) -> None:
    data = conf(sqlite_url, slack, connector)
    data["slack"]["bot_token"] = BOT_TOKEN
    ctx = await build_context(Settings.model_validate(data), db)
    cp = await write_checkpoint(ctx)  # onwatch is not installed in the Teams audit channel yet
    assert cp.token in slack.messages[SLACK_AUDIT][0]["text"]
    assert not connector.calls
    assert any("no conversation reference" in r.getMessage() for r in caplog.records)


async def test_cli_silences_are_noted_in_the_incident_channels(
        db: Database, sqlite_url: str, slack: FakeSlack, connector: FakeBotConnector, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``onwatch silences add|remove`` posts the note a chat-made silence gets (with its undo), on Slack and
    on Teams, as the operator at the terminal."""
    config = tmp_path / "onwatch.yaml"
    data = conf(sqlite_url, slack, connector)
    data["slack"].pop("signing_secret")  # secrets come from the environment, as in production
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("ONWATCH_SLACK__BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("ONWATCH_SLACK__SIGNING_SECRET", "s3cret")
    monkeypatch.setenv("USER", "opal")
    monkeypatch.setenv("LOGNAME", "opal")
    await installed(db, connector, CHANNEL)
    args = ["--config", str(config), "silences", "add", "service=checkout", "--for", "2h", "--comment", "deploy"]
    assert await asyncio.to_thread(main, args) == 0
    out = capsys.readouterr().out
    assert "silence 1: service=checkout" in out and "noted in the incident channel on slack, teams" in out
    (added,) = slack.messages[SLACK_INCIDENTS]
    assert added["text"].startswith("🔕 opal (onwatch CLI) silenced alerts matching service=checkout for 2h")
    assert "unsilence 1" in added["text"]
    (teams_added,) = teams_posts(connector, CHANNEL)
    assert "opal (onwatch CLI) silenced alerts matching service=checkout for 2h" in teams_added

    assert await asyncio.to_thread(main, ["--config", str(config), "silences", "remove", "1"]) == 0
    assert "removed" in capsys.readouterr().out
    removed = slack.messages[SLACK_INCIDENTS][1]["text"]
    assert removed.startswith("🔔 opal (onwatch CLI) removed silence 1") and "page again" in removed
    assert "removed silence 1" in teams_posts(connector, CHANNEL)[1]

    # a refused silence posts nothing
    assert await asyncio.to_thread(main, ["--config", str(config), "silences", "add", "alertname=~.*",
                                          "--for", "1h"]) == 1
    assert len(slack.messages[SLACK_INCIDENTS]) == 2 and len(teams_posts(connector, CHANNEL)) == 2


async def test_cli_silence_without_chat_says_no_note_was_posted(
        db: Database, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ONWATCH_DATABASE__URL", sqlite_url)
    assert await asyncio.to_thread(main, ["silences", "add", "service=checkout", "--for", "30m"]) == 0
    assert "no note posted" in capsys.readouterr().out
