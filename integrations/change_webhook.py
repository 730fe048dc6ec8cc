"""The change source over the change webhook: changes CI/CD pipelines posted to ``POST /webhooks/change``
(received and stored by ``bot.change_webhook``) read back as ``ChangeEvent``s."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select

from bot.store.db import Database
from bot.store.models import ChangeRecord
from integrations.base import ChangeEvent, TimeWindow


class WebhookChangeSource:
    """``ChangeSource`` over the changes pipelines reported to the webhook."""

    name = "change-webhook"

    def __init__(self, db: Database, *, limit: int = 1000):
        self.db = db
        self.limit = limit

    async def changes(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[ChangeEvent]:
        async with self.db.session() as s:
            q = select(ChangeRecord).where(col(ChangeRecord.time) <= window.end)
            if services is not None:
                q = q.where(col(ChangeRecord.service).in_(list(services)))
            rows = list((await s.exec(q.order_by(col(ChangeRecord.time).desc()).limit(self.limit * 4))).all())
        rows.sort(key=lambda r: (r.time, r.id or 0))
        out: list[ChangeEvent] = []
        last: dict[str, str] = {}
        for r in rows:
            prev = last.get(r.service, "")
            if r.version:
                last[r.service] = r.version
            if r.time < window.start:
                continue
            out.append(ChangeEvent(service=r.service, time=r.time, kind=r.kind,  # type: ignore[arg-type]
                                   version=r.version, previous_version=prev if prev != r.version else "",
                                   description=r.description, url=r.url, source="webhook"))
        return out[-self.limit:]
