"""The shipped Slack app manifest asks for exactly what onwatch uses, all pointing at /slack/events."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.chat.slack.routes import PATH

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_scopes_events_command_interactivity():
    m = yaml.safe_load((ROOT / "deploy" / "slack-app-manifest.yaml").read_text())
    assert set(m["oauth_config"]["scopes"]["bot"]) == {
        "app_mentions:read", "channels:history", "groups:history", "chat:write", "commands", "files:write",
        "usergroups:read", "users:read"}
    s = m["settings"]
    assert set(s["event_subscriptions"]["bot_events"]) == {"app_mention", "message.channels", "message.groups"}
    assert s["interactivity"]["is_enabled"] is True
    cmds = m["features"]["slash_commands"]
    assert [c["command"] for c in cmds] == ["/investigate"]
    urls = [s["event_subscriptions"]["request_url"], s["interactivity"]["request_url"], cmds[0]["url"]]
    assert all(u.endswith(PATH) for u in urls)
    doc = (ROOT / "docs" / "slack.md").read_text()
    for scope in m["oauth_config"]["scopes"]["bot"]:
        assert f"`{scope}`" in doc
