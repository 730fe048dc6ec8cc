"""Plain notes posted to a configured channel on each platform: audit checkpoints, silences set from the CLI.

These are not part of an incident's thread: each platform has its own channel for them (a Slack channel
id, a Teams channel or chat id), so the platforms an adapter is configured for decide where a note goes.
A platform without a channel, or an adapter that cannot post to a channel, is skipped; a failed post is
logged by the adapter and never fails the caller (the note is also in the log and the audit trail).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from bot.config import Settings


@runtime_checkable
class ChannelPoster(Protocol):
    """An adapter that can post a plain text note to a channel by id (Slack and Teams both can)."""

    platform: str

    async def say(self, channel: str, content: str) -> str | None: ...


def audit_channels(settings: Settings) -> dict[str, str | None]:
    """Where audit checkpoints go, per platform (``audit.slack_channel``, ``audit.teams_channel``)."""
    return {"slack": settings.audit.slack_channel, "teams": settings.audit.teams_channel}


def incident_channels(settings: Settings) -> dict[str, str | None]:
    """Where incidents are announced, per platform (``slack.incident_channel``, ``teams.channel``)."""
    return {"slack": settings.slack.incident_channel, "teams": settings.teams.channel}


async def post_to_channels(adapters: Iterable[object], channels: Mapping[str, str | None], text: str) -> list[str]:
    """Post ``text`` once per adapter that has a channel here; the platforms that accepted it."""
    posted: list[str] = []
    for adapter in adapters:
        if not isinstance(adapter, ChannelPoster):
            continue
        channel = channels.get(adapter.platform)
        if channel and await adapter.say(channel, text) is not None:
            posted.append(adapter.platform)
    return posted
