"""Helpers for the watch-item tests: a finding, and a WatchService posting through the real Slack adapter to
the local fake Slack API, with the change webhook's source over the same database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.chat.slack.adapter import SlackAdapter
from bot.chat.watch_posters import watch_posters
from bot.config import WatchSettings
from bot.store.db import Database
from bot.watch.model import WatchFinding, WatchKind
from bot.watch.service import WatchService
from integrations.base import Sources
from integrations.change_webhook import WebhookChangeSource
from tests.fakes.slack_api import FakeSlack
from tests.slack_fixtures import INCIDENT_CHANNEL, slack_settings

T0 = 1_764_000_000.0  # 2025-11-24 16:00 UTC


@dataclass
class Clock:
    now: float = T0 + 600

    def __call__(self) -> float:
        return self.now


def finding(service: str = "checkout", signal: str = "latency_p99", *, key: str | None = None,
            kind: WatchKind = WatchKind.DEGRADATION, started_at: float = T0, **kw: Any) -> WatchFinding:
    points = [(T0 - 1800 + 60 * i, 0.2 if T0 - 1800 + 60 * i < started_at else 0.65) for i in range(40)]
    return WatchFinding(
        kind=kind, key=key or f"{kind}:{service}:{signal}", service=service, signal=signal,
        title=kw.pop("title", f"{service} {signal} rising"),
        summary=kw.pop("summary", f"{signal} of {service} is 3x its baseline for 10 min"),
        started_at=started_at, value=kw.pop("value", 0.65), baseline=kw.pop("baseline", 0.2), unit="s",
        points=kw.pop("points", points), **kw)


@dataclass
class Rig:
    db: Database
    fake: FakeSlack
    clock: Clock
    adapter: SlackAdapter
    settings: WatchSettings
    sources_factory: Callable[[], Sources]
    services: list[WatchService] = field(default_factory=list)

    def service(self, db: Database | None = None, **overrides: Any) -> WatchService:
        """A WatchService as one replica (or one process lifetime) would build it."""
        d = db or self.db
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        posters = watch_posters([SlackAdapter(self.adapter.settings, d, debounce_s=0.05)], self.adapter.settings)
        svc = WatchService(settings, d, posters, self.sources_factory, clock=self.clock)
        self.services.append(svc)
        return svc

    def posts(self) -> list[dict[str, Any]]:
        """Top-level messages in the incident channel (not thread replies, not file shares)."""
        return [m for m in self.fake.messages[INCIDENT_CHANNEL] if "thread_ts" not in m and m.get("blocks")]

    def replies(self, ts: str) -> list[dict[str, Any]]:
        """Replies with text under the post ``ts`` (the chart upload left out)."""
        return [m for m in self.fake.messages[INCIDENT_CHANNEL] if m.get("thread_ts") == ts and m.get("blocks")]


def rig(db: Database, fake: FakeSlack, sqlite_url: str, **watch: Any) -> Rig:
    settings = slack_settings(sqlite_url, fake.api_url)
    return Rig(db, fake, Clock(), SlackAdapter(settings, db, debounce_s=0.05), WatchSettings(**watch),
               lambda: Sources(changes=[WebhookChangeSource(db)]))
