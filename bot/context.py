"""The application context: everything a component needs, built once at start-up and passed explicitly.

Its services are typed by the protocols of ``bot.ports``; ``bot.app.context_for`` and ``bot.app.build_context``
plug in the implementations, so this module (imported by the domain) imports no chat, route or service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bot.config import Settings
from bot.deadletter import DeadLetters
from bot.incidents.outbox import Outbox
from bot.jobs import JobQueue
from bot.metrics import Metrics
from bot.ports import ChatPort, RemediationPort, TriagePort, WatchPort
from bot.store.db import Database
from integrations.base import Sources


def _no_sources() -> Sources:
    return Sources()


@dataclass
class AppContext:
    settings: Settings
    db: Database
    jobs: JobQueue
    chat: ChatPort
    outbox: Outbox
    metrics: Metrics = field(default_factory=Metrics)
    sources_factory: Callable[[], Sources] = _no_sources
    triage: TriagePort | None = None
    remediation: RemediationPort | None = None
    dead_letters: DeadLetters | None = None
    watch: WatchPort | None = None
