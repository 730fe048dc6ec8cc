"""What is posted with a new watch item besides its chart: the changes near its start (every change source the
application builds, each within its deadline) and the past incidents of its service that look like it.

A source that fails, times out or cannot be built is a line of ``missing`` ("github: timed out after 10 s"),
said in the post; it never stops the item from being posted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.config import MemorySettings, WatchSettings
from bot.memory.similar import Signature
from bot.memory.store import Recalled, recall
from bot.store.db import Database
from bot.watch.model import WatchFinding
from integrations.base import ChangeEvent, Sources, TimeWindow, call_tool, describe

log = logging.getLogger(__name__)

MAX_CHANGES = 8


@dataclass(frozen=True, slots=True)
class WatchContext:
    changes: tuple[ChangeEvent, ...] = ()
    similar: tuple[Recalled, ...] = ()
    missing: tuple[str, ...] = ()
    change_sources: int = 0  # how many change sources answered

    def to_detail(self) -> dict[str, Any]:
        """As stored in the item's ``detail`` (and shown as evidence when it escalates)."""
        return {
            "changes": [{"service": c.service, "time": c.time, "kind": c.kind, "version": c.version,
                         "description": c.description[:300], "url": c.url, "source": c.source} for c in self.changes],
            "similar": [r.to_dict() for r in self.similar],
            "missing": list(self.missing),
        }


def change_window(started_at: float, now: float, settings: WatchSettings) -> TimeWindow:
    """From ``changes_before_s`` before the start to ``changes_after_s`` after it, never past now."""
    start = started_at - settings.changes_before_s
    return TimeWindow(start, max(start, min(now, started_at + settings.changes_after_s)))


async def changes_near(sources: Sources, f: WatchFinding, now: float,
                       settings: WatchSettings) -> tuple[list[ChangeEvent], list[str], int]:
    """The service's changes around the finding's start, nearest to it first; what failed; sources that answered."""
    if not sources.changes:
        return [], ["changes: no change source configured"], 0
    window = change_window(f.started_at, now, settings)
    found: list[ChangeEvent] = []
    missing: list[str] = []
    answered = 0
    for src in sources.changes:
        try:
            res = await call_tool(describe(src), "changes", src.changes(window, [f.service]),
                                  settings.source_timeout_s)
        except Exception as exc:  # noqa: BLE001 - an untyped failure of one source is still only missing evidence
            missing.append(f"{describe(src)}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if not res.ok or res.data is None:
            missing.append(res.error or f"{res.source}: {res.status}")
            continue
        answered += 1
        found.extend(c for c in res.data if c.service == f.service and window.start <= c.time <= window.end)
    found.sort(key=lambda c: (abs(c.time - f.started_at), c.time, c.source, c.version))
    return found[:MAX_CHANGES], missing, answered


async def similar_past(db: Database, f: WatchFinding, memory: MemorySettings) -> list[Recalled]:
    """Remembered incidents of the same service most like this warning (its signal, its words)."""
    query = Signature.of([f.service], [f.alertname], signal_kinds=[f.signal], text=f"{f.title} {f.summary}")
    found = await recall(db, query, limit=max(memory.recall_limit * 3, 10), min_score=memory.min_score,
                         text_weight=memory.text_weight)
    return [r for r in found if f.service in r.services or r.cause_service == f.service][:memory.recall_limit]


async def gather(db: Database, f: WatchFinding, now: float, settings: WatchSettings, memory: MemorySettings,
                 sources_factory: Callable[[], Sources] | None) -> WatchContext:
    missing: list[str] = []
    changes: list[ChangeEvent] = []
    answered = 0
    if sources_factory is None:
        missing.append("changes: no sources configured for the watch")
    else:
        try:
            sources = sources_factory()
        except Exception as exc:  # noqa: BLE001 - a source that cannot be built is missing evidence, said in the post
            log.warning("watch: building the sources failed: %s", exc)
            missing.append(f"changes: the sources could not be built ({type(exc).__name__}: {str(exc)[:200]})")
        else:
            try:
                changes, more, answered = await changes_near(sources, f, now, settings)
                missing.extend(more)
            finally:
                await sources.aclose()
    try:
        similar = await similar_past(db, f, memory)
    except Exception as exc:  # noqa: BLE001 - the warning is posted without look-alikes rather than not at all
        log.warning("watch: recalling similar incidents failed: %s", exc)
        similar = []
        missing.append(f"memory: {type(exc).__name__}: {str(exc)[:200]}")
    return WatchContext(tuple(changes), tuple(similar), tuple(missing), answered)
