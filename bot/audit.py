"""The one function that writes audit rows, and the chain check.

Each row stores HMAC-SHA256(key, previous hash + canonical content) when ``audit.chain_key`` is set, else
SHA-256 of the same text. The key lives in the process (settings, environment or a mounted file), never in
the database, so whoever holds the database can delete or alter rows but cannot recompute a valid chain
after them. Deleting the newest rows (or all) is caught against a checkpoint — the row count and head hash,
logged and posted outside the database (``bot.chat.checkpoints``) — with ``verify_chain(..., checkpoint=)``.
Writers serialise on the chain head (a PostgreSQL advisory transaction lock; SQLite's BEGIN IMMEDIATE), so
concurrent tasks and replicas never fork it. Nothing in onwatch updates or deletes these rows; PostgreSQL
refuses it outright, and the role split of ``deploy/postgres/`` keeps the server from changing that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, text
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


class _Key:
    """The chain key of this process (set once at start-up by ``configure``; None: plain SHA-256)."""

    value: bytes | None = None


def set_chain_key(key: bytes | str | None) -> None:
    _Key.value = key.encode() if isinstance(key, str) else key


def configure(chain_key: str | None) -> None:
    """Use ``audit.chain_key`` (already read from the environment or its file by the settings)."""
    set_chain_key(chain_key or None)


def chain_key() -> bytes | None:
    return _Key.value


def digest(prev_hash: str, canonical_text: str, key: bytes | None) -> str:
    data = (prev_hash + canonical_text).encode()
    return hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()


def chain_hash(prev_hash: str, row: AuditEvent, key: bytes | None = None) -> str:
    """The hash ``row`` must carry after ``prev_hash`` (with ``key``, else this process's key)."""
    return digest(prev_hash, canonical(row), key if key is not None else _Key.value)


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
        row["hash"] = prev = digest(row["prev_hash"], canonical_fields(row), _Key.value)
        rows.append(row)
    return rows


def append_entries(conn: Connection, entries: Sequence[AuditEntry], is_postgres: bool) -> list[dict[str, Any]]:
    """Append several audit rows in ``conn``'s transaction with one read of the chain head and one insert.

    The chain rules are those of ``audit``: each row's hash is the keyed digest of previous hash + row. The
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
    unkeyed: int = 0  # leading rows written before the key was configured (plain SHA-256)
    head: str = GENESIS


CHECKPOINT = re.compile(r"^\s*(\d{1,15}):([0-9a-f]{64})\s*$")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain's row count and head hash at one moment, kept outside the database."""

    count: int
    head: str

    @property
    def token(self) -> str:
        return f"{self.count}:{self.head}"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        m = CHECKPOINT.match(text)
        if not m:
            raise ValueError("a checkpoint looks like COUNT:HEAD (64 hex digits), as logged by onwatch")
        return cls(int(m.group(1)), m.group(2))


def last_checkpoint_in(text: str) -> Checkpoint:
    """The last ``COUNT:HEAD`` found in a file's text (a saved log, a channel export, or one line)."""
    found = re.findall(r"(\d{1,15}):([0-9a-f]{64})", text)
    if not found:
        raise ValueError("no COUNT:HEAD checkpoint found in that file")
    count, head = found[-1]
    return Checkpoint(int(count), head)


def _field(row: AuditEvent | Mapping[str, Any], name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def _canonical_of(row: AuditEvent | Mapping[str, Any]) -> str:
    return canonical_fields({k: _field(row, k) for k in _CHAINED})


class ChainWalk:
    """The chain check, one row at a time (so the database's chain is streamed, not loaded whole).

    With ``key``, each row must carry the keyed digest; plain SHA-256 rows are accepted only before the
    first keyed row (written before the key was set) and counted in ``unkeyed``. With ``checkpoint``, the
    chain must reach ``count`` rows and its row number ``count`` must carry ``head``: rows deleted from
    the end (or all of them), or rewritten before the checkpoint, are then found too.
    """

    def __init__(self, key: bytes | None = None, checkpoint: Checkpoint | None = None) -> None:
        self.key, self.checkpoint = key, checkpoint
        self.prev, self.n, self.unkeyed, self.keyed_seen = GENESIS, 0, 0, False

    def _bad(self, seq: int | None, reason: str) -> VerifyResult:
        return VerifyResult(False, self.n, seq, reason, self.unkeyed, self.prev)

    def step(self, row: AuditEvent | Mapping[str, Any]) -> VerifyResult | None:
        """None while the chain holds; the failure at the first bad row."""
        self.n += 1
        seq, key, prev = _field(row, "seq"), self.key, self.prev
        if _field(row, "prev_hash") != prev:
            return self._bad(seq, "its prev_hash does not match the row before it (a row was removed or inserted)")
        text, stored = _canonical_of(row), _field(row, "hash")
        if key is not None and hmac.compare_digest(digest(prev, text, key), stored):
            self.keyed_seen = True
        elif digest(prev, text, None) == stored:
            if key is not None:
                if self.keyed_seen:
                    return self._bad(seq, "it is not keyed although rows before it are (it was written or rewritten "
                                          "without the chain key)")
                self.unkeyed += 1
        elif key is None:
            return self._bad(seq, "its content does not match its hash (the row was altered, or the chain is "
                                  "keyed: give audit.chain_key)")
        else:
            return self._bad(seq, "its content does not match its keyed hash (the row was altered)")
        self.prev = stored
        cp = self.checkpoint
        if cp is not None and self.n == cp.count and stored != cp.head:
            return self._bad(seq, f"it is row {self.n} but not the head {cp.head[:12]}… the checkpoint recorded "
                                  "(rows up to it were rewritten)")
        return None

    def finish(self) -> VerifyResult:
        cp = self.checkpoint
        if cp is not None and self.n < cp.count:
            return self._bad(None, f"the chain has {self.n} rows but the checkpoint saw {cp.count}: "
                                   f"{cp.count - self.n} rows were deleted from its end")
        return VerifyResult(True, self.n, unkeyed=self.unkeyed, head=self.prev)


def verify_rows(rows: Iterable[AuditEvent | Mapping[str, Any]], key: bytes | None = None,
                checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Walk rows in chain order (``ChainWalk``); name the first altered, removed or inserted one."""
    walk = ChainWalk(key, checkpoint)
    for row in rows:
        if (bad := walk.step(row)) is not None:
            return bad
    return walk.finish()


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


async def verify_chain(db: Database, checkpoint: Checkpoint | None = None, key: bytes | None = None) -> VerifyResult:
    """Verify the chain in the database (``verify_rows``) with this process's key unless ``key`` is given."""
    walk = ChainWalk(key if key is not None else _Key.value, checkpoint)
    async for row in iter_rows(db):
        if (bad := walk.step(row)) is not None:
            return bad
    return walk.finish()


async def current_checkpoint(db: Database) -> Checkpoint:
    """The count and head hash now (what the leader logs and posts periodically)."""
    async with db.session() as s:
        count = (await s.exec(select(func.count()).select_from(AuditEvent))).one()  # type: ignore[call-overload]
        head = (await s.exec(select(AuditEvent.hash).order_by(col(AuditEvent.seq).desc()).limit(1))).first()
    return Checkpoint(int(count), head or GENESIS)


def read_export(path: str) -> list[dict[str, Any]]:
    """The rows of an ``onwatch audit export --jsonl`` file, in file order (ValueError on a bad line)."""
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{i}: not a JSON line ({exc})") from None
            if not isinstance(row, dict) or not all(k in row for k in (*_CHAINED, "prev_hash", "hash")):
                raise ValueError(f"{path}:{i}: not an audit row (fields {', '.join(_CHAINED)}, prev_hash, hash)")
            rows.append(row)
    return rows
