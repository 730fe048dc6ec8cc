"""The one function that writes audit rows, and the chain check.

Each row stores SHA-256(previous hash + canonical content). Writers serialise on the chain head
(a PostgreSQL advisory transaction lock; SQLite's BEGIN IMMEDIATE), so concurrent tasks and replicas
never fork it. Nothing in onwatch updates or deletes these rows; PostgreSQL refuses it outright.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import Connection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.store.db import Database
from bot.store.models import AuditEvent

GENESIS = "0" * 64
AUDIT_LOCK_KEY = 0x6F6E7761  # "onwa"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a chat user, an operator at the CLI, a webhook caller, or onwatch itself."""

    platform: str
    id: str
    name: str = ""

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.id}"


BOT = Actor("onwatch", "onwatch", "onwatch")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, sort_keys=True))


_CHAINED = ("at", "actor_platform", "actor_id", "actor_name", "action", "incident_id", "params", "result")


def canonical_fields(fields: Mapping[str, Any]) -> str:
    """The text a row's hash covers: its chained fields as canonical JSON (a row object or a row dict)."""
    return json.dumps({k: fields[k] for k in _CHAINED}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(row: AuditEvent) -> str:
    return canonical_fields({k: getattr(row, k) for k in _CHAINED})


def chain_hash(prev_hash: str, row: AuditEvent) -> str:
    return hashlib.sha256((prev_hash + canonical(row)).encode()).hexdigest()


async def _append(session: AsyncSession, row: AuditEvent, is_postgres: bool) -> AuditEvent:
    if is_postgres:
        await session.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=AUDIT_LOCK_KEY))  # type: ignore[call-overload]
    last = (await session.exec(select(AuditEvent.hash).order_by(col(AuditEvent.seq).desc()).limit(1))).first()
    row.prev_hash = last or GENESIS
    row.hash = chain_hash(row.prev_hash, row)
    session.add(row)
    await session.flush()
    return row


async def audit(
    db: Database,
    actor: Actor,
    action: str,
    *,
    incident_id: str | None = None,
    params: dict[str, Any] | None = None,
    result: str = "",
    session: AsyncSession | None = None,
) -> AuditEvent:
    """Append one audit row. Pass ``session`` to commit it atomically with the change it records."""
    row = AuditEvent(
        at=round(time.time(), 6),
        actor_platform=actor.platform,
        actor_id=actor.id,
        actor_name=actor.name,
        action=action,
        incident_id=incident_id,
        params=_jsonable(params or {}),
        result=result[:4000],
        prev_hash="",
        hash="",
    )
    if session is not None:
        return await _append(session, row, db.is_postgres)
    async with db.begin() as s:
        return await _append(s, row, db.is_postgres)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row for ``audit_many``: the same fields ``audit`` takes."""

    actor: Actor
    action: str
    incident_id: str | None = None
    params: dict[str, Any] | None = None
    result: str = ""


def chain_rows(prev: str, entries: Sequence[AuditEntry], at: float | None = None) -> list[dict[str, Any]]:
    """The rows for ``entries`` chained after the head hash ``prev``, as plain column dicts (no ``seq``).

    The caller must hold the chain's writer lock from reading ``prev`` until the rows are inserted, in list
    order (``audit_many`` and the triage stores do).
    """
    when = round(time.time(), 6) if at is None else at
    rows: list[dict[str, Any]] = []
    for e in entries:
        row = {"at": when, "actor_platform": e.actor.platform, "actor_id": e.actor.id, "actor_name": e.actor.name,
               "action": e.action, "incident_id": e.incident_id, "params": _jsonable(e.params or {}),
               "result": e.result[:4000], "prev_hash": prev}
        row["hash"] = prev = hashlib.sha256((row["prev_hash"] + canonical_fields(row)).encode()).hexdigest()
        rows.append(row)
    return rows


def append_entries(conn: Connection, entries: Sequence[AuditEntry], is_postgres: bool) -> list[dict[str, Any]]:
    """Append several audit rows in ``conn``'s transaction with one read of the chain head and one insert.

    The chain rules are those of ``audit``: each row's hash is SHA-256(previous hash + canonical row). The
    head is read and the rows are chained in Python while the writer lock is held (the PostgreSQL advisory
    lock, taken here; SQLite's BEGIN IMMEDIATE), and ``seq`` follows the order of ``entries``. Returns the
    inserted rows as column dicts (without ``seq``).
    """
    if not entries:
        return []
    if is_postgres:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK_KEY})
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    head = conn.execute(select(table.c.hash).order_by(table.c.seq.desc()).limit(1)).scalar()
    rows = chain_rows(head or GENESIS, entries)
    # One executemany without RETURNING (SQLite would fall back to a statement per row to keep the order);
    # the rows are inserted in list order, so ``seq`` follows the chain.
    conn.execute(insert(table), rows)
    return rows


async def audit_many(db: Database, session: AsyncSession, entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    """``append_entries`` inside ``session``'s transaction (a bulk change and its audit rows commit together)."""
    return await session.run_sync(lambda sync: append_entries(sync.connection(), entries, db.is_postgres))


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None = None
    reason: str = ""


async def iter_rows(db: Database, batch: int = 1000) -> AsyncIterator[AuditEvent]:
    last = -1
    while True:
        async with db.session() as s:
            rows = (
                await s.exec(select(AuditEvent).where(col(AuditEvent.seq) > last).order_by(col(AuditEvent.seq)).limit(batch))
            ).all()
        if not rows:
            return
        for r in rows:
            yield r
        last = rows[-1].seq or last


async def verify_chain(db: Database) -> VerifyResult:
    """Walk the chain in order; name the first row that was altered, or whose predecessor was removed or inserted."""
    prev = GENESIS
    n = 0
    async for row in iter_rows(db):
        n += 1
        if row.prev_hash != prev:
            return VerifyResult(False, n, row.seq, "its prev_hash does not match the row before it (a row was removed or inserted)")
        if chain_hash(row.prev_hash, row) != row.hash:
            return VerifyResult(False, n, row.seq, "its content does not match its hash (the row was altered)")
        prev = row.hash
    return VerifyResult(True, n)
