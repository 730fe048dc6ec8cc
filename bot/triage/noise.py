"""Daily noise statistics: received, duplicates, suppressed, incidents opened, and pages per on-call shift.

Counters live in ``noise_counter`` keyed by UTC day and name; each triage pass adds to them with one
upsert inside its transaction (``add_counts``). Pages are also counted per shift (``pages@<n>`` where ``n``
is the shift index of the day for ``triage.shift_hours``) so the report can hold each shift against the
sustainable budget of two pages.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from bot.store.db import Database
from bot.store.models import NoiseCounter

SUSTAINABLE_PAGES_PER_SHIFT = 2


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def shift_of(ts: float, shift_hours: int) -> int:
    return datetime.fromtimestamp(ts, UTC).hour // shift_hours


class NoiseTally:
    """Counts for one batch, flushed once."""

    def __init__(self, now: float | None = None):
        self.now = time.time() if now is None else now
        self.counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        if n:
            self.counts[name] += n

    def page(self, shift_hours: int) -> None:
        self.add("pages")
        self.add(f"pages@{shift_of(self.now, shift_hours)}")


async def add_counts(conn: AsyncConnection, is_postgres: bool, now: float, counts: Counter[str]) -> None:
    """Add ``counts`` to the day of ``now`` in ``conn``'s transaction (an upsert: concurrent days' first
    writers do not collide)."""
    if not counts:
        return
    table = NoiseCounter.__table__  # type: ignore[attr-defined]
    stmt = pg_insert(table) if is_postgres else sqlite_insert(table)
    stmt = stmt.on_conflict_do_update(index_elements=["day", "name"], set_={"value": table.c.value + stmt.excluded.value})
    await conn.execute(stmt, [{"day": day_of(now), "name": n, "value": v} for n, v in sorted(counts.items())])


@dataclass(frozen=True, slots=True)
class DayNoise:
    day: str
    received: int
    duplicates: int
    suppressed: int
    incidents: int
    pages: int
    pages_per_shift: dict[int, int]
    shifts_over_budget: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day, "received": self.received, "duplicates": self.duplicates,
            "suppressed": self.suppressed, "incidents": self.incidents, "pages": self.pages,
            "pages_per_shift": {str(k): v for k, v in sorted(self.pages_per_shift.items())},
            "sustainable_pages_per_shift": SUSTAINABLE_PAGES_PER_SHIFT,
            "shifts_over_budget": self.shifts_over_budget,
        }


async def noise_report(db: Database, days: int = 7, now: float | None = None) -> list[DayNoise]:
    """The last ``days`` UTC days, newest first."""
    now = time.time() if now is None else now
    since = day_of(now - 86400 * (days - 1))
    async with db.session() as s:
        rows = (await s.exec(select(NoiseCounter).where(col(NoiseCounter.day) >= since))).all()
    by_day: dict[str, dict[str, int]] = {}
    for r in rows:
        by_day.setdefault(r.day, {})[r.name] = r.value
    out = []
    for day in sorted(by_day, reverse=True):
        c = by_day[day]
        shifts = {int(k.split("@", 1)[1]): v for k, v in c.items() if k.startswith("pages@")}
        out.append(DayNoise(day, c.get("received", 0), c.get("duplicates", 0), c.get("suppressed", 0),
                            c.get("incidents", 0), c.get("pages", 0), shifts,
                            sum(1 for v in shifts.values() if v > SUSTAINABLE_PAGES_PER_SHIFT)))
    return out
