"""The application context: everything a component needs, built once at start-up and passed explicitly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.chat.hub import ChatHub
from bot.chat.outbox import HubRenderer
from bot.config import Settings
from bot.deadletter import DeadLetters
from bot.incidents.outbox import Outbox
from bot.jobs import JobQueue
from bot.metrics import Metrics
from bot.store.db import Database
from integrations.base import Sources


def _no_sources() -> Sources:
    return Sources()


@dataclass
class AppContext:
    settings: Settings
    db: Database
    jobs: JobQueue
    chat: ChatHub
    outbox: Outbox
    metrics: Metrics = field(default_factory=Metrics)
    sources_factory: Callable[[], Sources] = _no_sources
    # Domain services, set by ``bot.app.build_context`` (kept loosely typed to avoid import cycles).
    triage: Any = None
    remediation: Any = None
    dead_letters: DeadLetters | None = None

    @classmethod
    def for_db(cls, settings: Settings, db: Database) -> AppContext:
        chat = ChatHub(db, public_url=settings.server.public_url)
        ctx = cls(settings=settings, db=db, jobs=JobQueue(db), chat=chat, outbox=Outbox(db))
        ctx.outbox.subscribe(HubRenderer(lambda: ctx.chat))  # the hub renders lifecycle events (tests swap it)
        ctx.dead_letters = DeadLetters(db, ctx.metrics, settings.webhooks)
        return ctx
