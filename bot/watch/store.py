"""Watch items in the database: the one transaction that opens an item (or says why not), and the conditional
updates that escalate and close one. Every change is audited in its own transaction (``bot.audit``).

Opening is serialised per service: on PostgreSQL by a transaction-scoped advisory lock on the service, on
SQLite by the write lock every write transaction takes (``BEGIN IMMEDIATE``). So the live-item check and the
rate limit see every item another replica opened before, and two observers of one key open one item. The
partial unique index on live keys (``uq_watch_item_live_key``) backs that up: a second insert fails, and the
finding is held instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.audit import BOT, Actor, audit
from bot.config import WatchSettings
from bot.incidents.outbox import EventKind, emit
from bot.store.db import Database
from bot.store.models import WatchItem
from bot.triage.silences import SilenceView
from bot.triage.suppress import Window, matches
from bot.watch.model import WatchFinding, WatchOutcome, WatchStatus

WATCH_LOCK_CLASS = 0x6F6E7774  # "onwt": pg_advisory_xact_lock(class, hashtext(service)) serialises opens per service
LIVE = (WatchStatus.OPEN, WatchStatus.ESCALATED)


@dataclass(frozen=True, slots=True)
class Claim:
    """What the open transaction decided: the outcome, the item (opened or held), and what suppressed it."""

    outcome: WatchOutcome
    item: WatchItem | None = None
    suppressed_by: str = ""


def thinned(points: Sequence[tuple[float, float]], limit: int) -> list[list[float]]:
    """At most ``limit`` points, evenly spread over the whole series (the shape is kept, the density dropped)."""
    pts = list(points)
    if len(pts) > limit:
        step = (len(pts) - 1) / (limit - 1)
        pts = [pts[round(i * step)] for i in range(limit)]
    return [[t, v] for t, v in pts]


def detail_of(f: WatchFinding, max_points: int) -> dict[str, Any]:
    return {"summary": f.summary, "started_at": f.started_at, "value": f.value, "baseline": f.baseline,
            "unit": f.unit, "points": thinned(f.points, max_points), "labels": dict(f.labels),
            "alertname": f.alertname, "last_value": f.value}


def silence_windows(silences: Iterable[SilenceView]) -> list[Window]:
    return [Window(s.matchers, s.starts_at, s.ends_at, f"silence {s.id}{': ' + s.comment if s.comment else ''}")
            for s in silences]


def suppressing(windows: Iterable[Window], f: WatchFinding, now: float) -> Window | None:
    """The first window (a silence, a maintenance window) active at ``now`` whose matchers all hold for the
    finding's labels."""
    view = f.label_view()
    for w in windows:
        if w.starts <= now < w.ends and matches(w.matchers, view):
            return w
    return None


async def _lock_service(s: AsyncSession, db: Database, service: str) -> None:
    if db.is_postgres:
        await s.exec(text("SELECT pg_advisory_xact_lock(:c, hashtext(:svc))")  # type: ignore[call-overload]
                     .bindparams(c=WATCH_LOCK_CLASS, svc=service))


async def live_item(s: AsyncSession, key: str) -> WatchItem | None:
    return (await s.exec(select(WatchItem).where(WatchItem.key == key,
                                                 col(WatchItem.status).in_(list(LIVE))))).first()


async def _claim_once(db: Database, f: WatchFinding, settings: WatchSettings, windows: Sequence[Window],
                      now: float) -> Claim:
    async with db.begin() as s:
        await _lock_service(s, db, f.service)
        held = await live_item(s, f.key)
        if held is not None:
            held.last_seen_at = now
            held.detail = {**held.detail, "last_value": f.value}
            s.add(held)
            return Claim(WatchOutcome.HELD, held)
        window = suppressing(windows, f, now)
        if window is not None:
            return Claim(WatchOutcome.SILENCED, suppressed_by=window.why)
        interval = settings.interval_for(f.service)
        if interval > 0:
            recent = (await s.exec(select(func.count()).select_from(WatchItem).where(
                WatchItem.service == f.service, col(WatchItem.opened_at) > now - interval))).one()
            if recent:
                return Claim(WatchOutcome.RATE_LIMITED)
        item = WatchItem(key=f.key, kind=str(f.kind), service=f.service, signal=f.signal, status=WatchStatus.OPEN,
                         title=f.title, detail=detail_of(f, settings.max_points), opened_at=now, last_seen_at=now)
        s.add(item)
        await s.flush()
        await audit(db, BOT, "watch.opened", params={
            "watch_item": item.id, "key": f.key, "kind": str(f.kind), "service": f.service, "signal": f.signal,
            "started_at": f.started_at, "value": f.value, "baseline": f.baseline}, result=f.title, session=s)
        return Claim(WatchOutcome.OPENED, item)


async def claim(db: Database, f: WatchFinding, settings: WatchSettings, windows: Sequence[Window],
                now: float) -> Claim:
    """Hold, silence, rate-limit or open ``f`` in one transaction. An insert that loses to a concurrent one
    (the unique index) is tried again once, and then finds the winner's item: held."""
    try:
        return await _claim_once(db, f, settings, windows, now)
    except IntegrityError:
        return await _claim_once(db, f, settings, windows, now)


async def update_detail(db: Database, item_id: int, extra: Mapping[str, Any], posts: Sequence[Mapping[str, Any]]) -> None:
    """Record what was posted with an item (the context shown, where it went)."""
    async with db.begin() as s:
        row = await s.get(WatchItem, item_id)
        if row is None:
            return
        row.detail = {**row.detail, **extra}
        row.posts = [dict(p) for p in posts]
        s.add(row)


async def close_item(db: Database, item_id: int, now: float, reason: str, actor: Actor = BOT) -> WatchItem | None:
    """Close a live item (one conditional update, its audit row); None when it was closed already."""
    async with db.begin() as s:
        res = await s.exec(update(WatchItem)  # type: ignore[call-overload]
                           .where(col(WatchItem.id) == item_id, col(WatchItem.status).in_(list(LIVE)))
                           .values(status=WatchStatus.CLOSED, closed_at=now))
        if res.rowcount != 1:
            return None
        row = await s.get(WatchItem, item_id)
        assert row is not None
        await s.refresh(row)
        await audit(db, actor, "watch.closed", incident_id=row.incident_id,
                    params={"watch_item": item_id, "key": row.key, "kind": row.kind, "service": row.service,
                            "open_s": round(now - row.opened_at, 3)}, result=reason, session=s)
        return row


async def live_item_by_id(db: Database, item_id: int) -> WatchItem | None:
    async with db.session() as s:
        item = await s.get(WatchItem, item_id)
    return item if item is not None and item.status in LIVE else None


async def live_items(db: Database, kind: str | None = None, key: str | None = None) -> list[WatchItem]:
    async with db.session() as s:
        stmt = select(WatchItem).where(col(WatchItem.status).in_(list(LIVE)))
        if kind is not None:
            stmt = stmt.where(WatchItem.kind == kind)
        if key is not None:
            stmt = stmt.where(WatchItem.key == key)
        return list((await s.exec(stmt.order_by(col(WatchItem.id)))).all())


async def escalate_items(db: Database, incident_id: str, services: Sequence[str], now: float,
                         note: Any) -> tuple[list[WatchItem], list[WatchItem]]:
    """Escalate the open items of ``services`` to ``incident_id``: each one conditional update, its audit row and
    a note in the incident's thread (``note(item) -> str``, a lifecycle ``note`` event), in one transaction.
    Returns the items escalated now, and every item escalated to this incident (now or by an earlier run)."""
    now_escalated: list[WatchItem] = []
    async with db.begin() as s:
        candidates = (await s.exec(select(WatchItem).where(WatchItem.status == WatchStatus.OPEN,
                                                           col(WatchItem.service).in_(list(services)))
                                   .order_by(col(WatchItem.opened_at)))).all() if services else []
        for c in candidates:
            assert c.id is not None
            res = await s.exec(update(WatchItem)  # type: ignore[call-overload]
                               .where(col(WatchItem.id) == c.id, col(WatchItem.status) == WatchStatus.OPEN)
                               .values(status=WatchStatus.ESCALATED, incident_id=incident_id, escalated_at=now))
            if res.rowcount != 1:
                continue
            await s.refresh(c)
            await audit(db, BOT, "watch.escalated", incident_id=incident_id,
                        params={"watch_item": c.id, "key": c.key, "kind": c.kind, "service": c.service},
                        result=f"escalated to {incident_id}", session=s)
            await emit(s, incident_id, EventKind.NOTE, {"text": note(c)})
            now_escalated.append(c)
        linked = (await s.exec(select(WatchItem).where(WatchItem.incident_id == incident_id)
                               .order_by(col(WatchItem.opened_at)))).all()
    return now_escalated, list(linked)
