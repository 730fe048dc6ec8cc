"""The dead-letter table, bounded: refused input is kept for a person to look at, never without limit.

Unauthenticated input is kept to its first 4 KiB, authenticated input to 1 MiB. Beyond a rate (a token
bucket per process) refusals are answered but not stored; past a total of rows or bytes the oldest rows
are dropped first. Both are counted in ``onwatch_dead_letters_dropped{reason="rate"|"pruned"}``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import delete, func, select
from sqlmodel import col

from bot.metrics import Metrics
from bot.store.db import Database
from bot.store.models import DeadLetter

log = logging.getLogger(__name__)

AUTH_FAILURE_BODY_CAP = 4096
AUTHENTICATED_BODY_CAP = 1_048_576


def _storable(text: str) -> str:
    """Text every database can hold: a reason may echo what the sender wrote (a NUL, an unpaired surrogate)."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


class DeadLetters:
    def __init__(self, db: Database, metrics: Metrics, settings: Any):
        self.db = db
        self.metrics = metrics
        self.settings = settings  # WebhookSettings: dead_letter_rate_per_s, _burst, _max_rows, _max_bytes
        self._tokens = float(settings.dead_letter_burst)
        self._at = time.monotonic()

    def _take(self) -> bool:
        now = time.monotonic()
        s = self.settings
        self._tokens = min(float(s.dead_letter_burst), self._tokens + (now - self._at) * s.dead_letter_rate_per_s)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def keep(self, source: str, reason: str, body: bytes, headers: dict[str, str], *,
                   authenticated: bool = False) -> bool:
        """Store one refusal (False when the rate dropped it), then drop the oldest rows past the bounds."""
        if not self._take():
            self.metrics.dead_letters_dropped.labels("rate").inc()
            return False
        body = body[:AUTHENTICATED_BODY_CAP if authenticated else AUTH_FAILURE_BODY_CAP]
        reason, headers = _storable(reason[:4000]), {_storable(k): _storable(v) for k, v in headers.items()}
        s = self.settings
        async with self.db.begin() as session:
            session.add(DeadLetter(source=source, reason=reason, body=body, headers=headers))
            await session.flush()
            rows, size = (await session.execute(select(func.count(), func.coalesce(func.sum(
                func.length(DeadLetter.body)), 0)))).one()  # type: ignore[arg-type]
            if rows > s.dead_letter_max_rows or size > s.dead_letter_max_bytes:
                doomed: list[int] = []
                oldest = select(col(DeadLetter.id), func.length(DeadLetter.body)).order_by(col(DeadLetter.id))
                for row_id, length in await session.execute(oldest):
                    if rows <= s.dead_letter_max_rows and size <= s.dead_letter_max_bytes:
                        break
                    doomed.append(row_id)
                    rows, size = rows - 1, size - (length or 0)
                await session.execute(delete(DeadLetter).where(col(DeadLetter.id).in_(doomed)))
                self.metrics.dead_letters_dropped.labels("pruned").inc(len(doomed))
        self.metrics.dead_letters.labels(source).inc()
        return True
