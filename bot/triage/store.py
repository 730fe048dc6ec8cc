"""Where a triage transaction reads and writes: one small interface, two implementations, two runners.

The triage pass (``txn.py``) is synchronous and runs inside one database transaction, so a storm's batch
pays no event-loop round trip per statement.

* ``SqliteStore`` on a plain ``sqlite3`` connection, driven by ``SqliteRunner`` in one thread of its own:
  the transaction runs start to finish off the event loop (SQLite's C code releases the GIL, so the loop
  keeps reading and validating the next requests meanwhile), without SQLAlchemy's per-statement and per-row
  costs. This is the embedded default's hot path.
* ``SqlaStore`` on a SQLAlchemy ``Connection``, driven by ``SqlaRunner`` through ``AsyncConnection.run_sync``:
  PostgreSQL (with its advisory locks), and SQLite databases another connection cannot open (in-memory).

Both write the same rows (``tests/test_triage_store.py`` compares them). On SQLite, JSON columns hold JSON text
(compact, from orjson; SQLAlchemy's JSON type reads any JSON back the same), and a value that is already a
``str`` in a JSON column is taken as serialised JSON: the triage pass hands labels and annotations over as the
canonical JSON it hashed. Table and column names come from the models, never from input.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import orjson
from sqlalchemy import JSON, Table, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from bot.audit import GENESIS, AuditEntry, append_entries, chain_rows
from bot.errors import DatabaseError
from bot.store.db import SQLITE_PRAGMAS, Database, describe_db_error
from bot.store.models import (
    Alert,
    AuditEvent,
    Incident,
    IncidentAlert,
    Investigation,
    Job,
    NoiseCounter,
    Silence,
)

T = TypeVar("T")

TRIAGE_LOCK_KEY = 0x6F6E7472  # "ontr"
_CHUNK = 500  # fingerprints / incident ids per IN (...) list

TABLES: dict[str, Table] = {m.__tablename__: m.__table__  # type: ignore[attr-defined,misc,union-attr]
                            for m in (Alert, Incident, IncidentAlert, Investigation, Job, AuditEvent, NoiseCounter)}
_JSON_COLS = {name: frozenset(c.name for c in t.columns if isinstance(c.type, JSON)) for name, t in TABLES.items()}

STATE_COLS = ("id", "fingerprint", "status", "content_hash", "incident_id", "flips", "suppressed", "duplicates",
              "first_seen", "service", "severity")
INCIDENT_COLS = ("id", "title", "status", "severity", "services", "group_key", "alert_count", "updated_at",
                 "resolved_at", "stats")


class TriageStore(Protocol):
    """What the triage pass asks of the database, inside the transaction the runner opened."""

    raw_json: bool  # JSON columns take pre-serialised text (labels, annotations) instead of mappings

    def lock(self) -> None:
        """Serialise triage across replicas (the transaction is already exclusive on SQLite)."""

    def load_states(self, fps: Sequence[str]) -> list[tuple[Any, ...]]:
        """``STATE_COLS`` of the stored alerts with these fingerprints (``flips`` decoded)."""

    def active_silences(self, now: float) -> list[tuple[dict[str, str], float, float, str]]: ...

    def candidate_incidents(self, now: float, window_s: float, cooloff_s: float,
                            referenced: set[str]) -> list[tuple[Any, ...]]:
        """``INCIDENT_COLS`` of incidents open and active within the window, resolved within the cool-off, or
        referenced by a stored alert of the batch (``services`` and ``stats`` decoded)."""

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None: ...

    def insert_alerts(self, cols: Sequence[str], rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert alert rows (values in ``cols`` order); return their ids, in row order."""

    def update_alerts(self, cols: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """``UPDATE alert SET <cols> WHERE id = <the row's last value>`` for each row."""

    def update(self, table: str, key_col: str, rows: list[dict[str, Any]]) -> None:
        """``UPDATE table SET <every key but b_id> WHERE key_col = row["b_id"]`` for each row."""

    def link(self, rows: list[tuple[str, int, float]]) -> None:
        """Insert ``incident_alert`` rows ``(incident_id, alert_id, attached_at)``, ignoring links that exist."""

    def alert_aggregates(self, incident_ids: Sequence[str]) -> list[tuple[str, str, str, str, bool, int]]:
        """``(incident_id, service, severity, status, suppressed, count)`` over those incidents' alerts."""

    def add_noise(self, day: str, counts: Mapping[str, int]) -> None: ...

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Chain ``entries`` after the audit head and insert them, under the chain's writer lock."""


def _where_recent(c: Any, now: float, window_s: float, cooloff_s: float) -> Any:
    return ((c.status != "resolved") & (c.updated_at >= now - window_s)) | (
        (c.status == "resolved") & (c.resolved_at >= now - cooloff_s))


class SqlaStore:
    """The store on a SQLAlchemy connection: Core statements, any dialect."""

    def __init__(self, conn: Connection, is_postgres: bool):
        self.conn = conn
        self.is_postgres = is_postgres
        self.raw_json = False

    def lock(self) -> None:
        if self.is_postgres:
            self.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": TRIAGE_LOCK_KEY})

    def load_states(self, fps: Sequence[str]) -> list[tuple[Any, ...]]:
        c = TABLES["alert"].c
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(fps), _CHUNK):
            q = select(*(c[k] for k in STATE_COLS)).where(c.fingerprint.in_(fps[i:i + _CHUNK]))
            out.extend(tuple(r) for r in self.conn.execute(q))
        return out

    def active_silences(self, now: float) -> list[tuple[dict[str, str], float, float, str]]:
        q = select(Silence.matchers, Silence.starts_at, Silence.ends_at, Silence.comment).where(  # type: ignore[call-overload]
            Silence.starts_at <= now, Silence.ends_at > now)  # type: ignore[operator]
        return [tuple(r) for r in self.conn.execute(q)]  # type: ignore[misc]

    def candidate_incidents(self, now: float, window_s: float, cooloff_s: float,
                            referenced: set[str]) -> list[tuple[Any, ...]]:
        c = TABLES["incident"].c
        where = _where_recent(c, now, window_s, cooloff_s)
        if referenced:
            where = where | c.id.in_(sorted(referenced))
        return [tuple(r) for r in self.conn.execute(select(*(c[k] for k in INCIDENT_COLS)).where(where))]

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(TABLES[table]), rows)

    def insert_alerts(self, cols: Sequence[str], rows: list[tuple[Any, ...]]) -> list[int]:
        if not rows:
            return []
        stmt = insert(TABLES["alert"]).returning(TABLES["alert"].c.id, sort_by_parameter_order=True)
        return [r.id for r in self.conn.execute(stmt, [dict(zip(cols, r, strict=True)) for r in rows])]

    def update_alerts(self, cols: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.update("alert", "id", [{**dict(zip(cols, r[:-1], strict=True)), "b_id": r[-1]} for r in rows])

    def update(self, table: str, key_col: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        t = TABLES[table]
        cols = [k for k in rows[0] if k != "b_id"]
        self.conn.execute(update(t).where(t.c[key_col] == bindparam("b_id")).values({k: bindparam(k) for k in cols}),
                          rows)

    def link(self, rows: list[tuple[str, int, float]]) -> None:
        if rows:
            ins: Any = pg_insert(TABLES["incident_alert"]) if self.is_postgres else sqlite_insert(TABLES["incident_alert"])
            self.conn.execute(ins.on_conflict_do_nothing(),
                              [{"incident_id": i, "alert_id": a, "attached_at": t} for i, a, t in rows])

    def alert_aggregates(self, incident_ids: Sequence[str]) -> list[tuple[str, str, str, str, bool, int]]:
        c = TABLES["alert"].c
        supp = (c.suppressed != "").label("supp")
        q = (select(c.incident_id, c.service, c.severity, c.status, supp, func.count())
             .where(c.incident_id.in_(list(incident_ids)))
             .group_by(c.incident_id, c.service, c.severity, c.status, supp))
        return [(i, sv, sev, st, bool(sp), int(n)) for i, sv, sev, st, sp, n in self.conn.execute(q)]

    def add_noise(self, day: str, counts: Mapping[str, int]) -> None:
        if not counts:
            return
        table = TABLES["noise_counter"]
        stmt: Any = pg_insert(table) if self.is_postgres else sqlite_insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=["day", "name"],
                                          set_={"value": table.c.value + stmt.excluded.value})
        self.conn.execute(stmt, [{"day": day, "name": n, "value": v} for n, v in sorted(counts.items())])

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        append_entries(self.conn, entries, self.is_postgres)


def dumps(value: Any) -> Any:
    """JSON text for a JSON column (a ``str`` is taken as JSON text already; see the module docstring)."""
    return value if isinstance(value, str) or value is None else orjson.dumps(value).decode()


def _loads(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str) else value


class SqliteStore:
    """The store on a plain ``sqlite3`` connection (statements are cached by the driver)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.raw_json = True

    def lock(self) -> None:
        """``SqliteRunner`` opened the transaction with BEGIN IMMEDIATE: it holds the write lock already."""

    def _in(self, sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(values), _CHUNK):
            part = values[i:i + _CHUNK]
            out.extend(self.conn.execute(sql.format(marks=",".join("?" * len(part))), part).fetchall())
        return out

    def load_states(self, fps: Sequence[str]) -> list[tuple[Any, ...]]:
        rows = self._in(f"SELECT {', '.join(STATE_COLS)} FROM alert WHERE fingerprint IN ({{marks}})", fps)
        flips = STATE_COLS.index("flips")
        return [(*r[:flips], _loads(r[flips]) or [], *r[flips + 1:]) for r in rows]

    def active_silences(self, now: float) -> list[tuple[dict[str, str], float, float, str]]:
        rows = self.conn.execute("SELECT matchers, starts_at, ends_at, comment FROM silence "
                                 "WHERE starts_at <= ? AND ends_at > ?", (now, now)).fetchall()
        return [(_loads(m) or {}, s, e, c) for m, s, e, c in rows]

    def candidate_incidents(self, now: float, window_s: float, cooloff_s: float,
                            referenced: set[str]) -> list[tuple[Any, ...]]:
        sql = (f"SELECT {', '.join(INCIDENT_COLS)} FROM incident WHERE (status != 'resolved' AND updated_at >= ?) "
               "OR (status = 'resolved' AND resolved_at >= ?)")
        rows = {r[0]: r for r in self.conn.execute(sql, (now - window_s, now - cooloff_s))}
        missing = sorted(referenced - rows.keys())
        if missing:
            rows.update((r[0], r) for r in self._in(f"SELECT {', '.join(INCIDENT_COLS)} FROM incident "
                                                    "WHERE id IN ({marks})", missing))
        sv, st = INCIDENT_COLS.index("services"), INCIDENT_COLS.index("stats")
        return [(*r[:sv], _loads(r[sv]) or [], *r[sv + 1:st], _loads(r[st]) or {}, *r[st + 1:]) for r in rows.values()]

    def _params(self, table: str, cols: Sequence[str], rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        js = _JSON_COLS[table]
        if not js.intersection(cols):
            return [tuple(r[c] for c in cols) for r in rows]
        return [tuple(dumps(r[c]) if c in js else r[c] for c in cols) for r in rows]

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            cols = list(rows[0])
            self.conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                                  self._params(table, cols, rows))

    def insert_alerts(self, cols: Sequence[str], rows: list[tuple[Any, ...]]) -> list[int]:
        """SQLite numbers the rows after the highest stored id (``alert.id`` is the rowid), and the pass holds the
        write lock, so the ids are known without a ``RETURNING`` round per row; they are checked once after.
        The rows arrive with their JSON columns serialised (``raw_json``)."""
        if not rows:
            return []
        highest = "SELECT coalesce(max(id), 0) FROM alert"
        first = (self.conn.execute(highest).fetchone() or (0,))[0] + 1
        self.conn.executemany(f"INSERT INTO alert ({', '.join(cols)}) VALUES ({','.join('?' * len(cols))})", rows)
        last = (self.conn.execute(highest).fetchone() or (0,))[0]
        if last != first + len(rows) - 1:
            raise DatabaseError(f"alert ids {first}..{last} are not the {len(rows)} consecutive ids expected")
        return list(range(first, last + 1))

    def update_alerts(self, cols: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.conn.executemany(f"UPDATE alert SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?", rows)

    def update(self, table: str, key_col: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        cols = [k for k in rows[0] if k != "b_id"]
        sql = f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in cols)} WHERE {key_col} = ?"
        self.conn.executemany(sql, self._params(table, [*cols, "b_id"], rows))

    def link(self, rows: list[tuple[str, int, float]]) -> None:
        if rows:
            self.conn.executemany("INSERT INTO incident_alert (incident_id, alert_id, attached_at) VALUES (?, ?, ?) "
                                  "ON CONFLICT DO NOTHING", rows)

    def alert_aggregates(self, incident_ids: Sequence[str]) -> list[tuple[str, str, str, str, bool, int]]:
        rows = self._in("SELECT incident_id, service, severity, status, suppressed != '' AS supp, count(*) FROM alert "
                        "WHERE incident_id IN ({marks}) GROUP BY incident_id, service, severity, status, supp",
                        list(incident_ids))
        return [(i, sv, sev, st, bool(sp), int(n)) for i, sv, sev, st, sp, n in rows]

    def add_noise(self, day: str, counts: Mapping[str, int]) -> None:
        self.conn.executemany("INSERT INTO noise_counter (day, name, value) VALUES (?, ?, ?) "
                              "ON CONFLICT (day, name) DO UPDATE SET value = value + excluded.value",
                              [(day, n, v) for n, v in sorted(counts.items())])

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        if entries:
            head = self.conn.execute("SELECT hash FROM audit_event ORDER BY seq DESC LIMIT 1").fetchone()
            self.insert("audit_event", chain_rows(head[0] if head else GENESIS, entries))


class TriageRunner(Protocol):
    """Runs one triage pass inside one committed transaction, off the caller's coroutine."""

    async def run(self, fn: Callable[[TriageStore], T]) -> T: ...

    async def aclose(self) -> None: ...


class SqlaRunner:
    """One transaction on the application's async engine; the pass runs in SQLAlchemy's sync bridge."""

    def __init__(self, db: Database):
        self.db = db

    async def run(self, fn: Callable[[TriageStore], T]) -> T:
        async with self.db.engine.begin() as conn:
            return await conn.run_sync(lambda c: fn(SqlaStore(c, self.db.is_postgres)))

    async def aclose(self) -> None:
        return None


class SqliteWriter:
    """A plain ``sqlite3`` connection to the database file that runs triage passes, one transaction each.

    Each pass is one ``BEGIN IMMEDIATE`` ... ``COMMIT``: SQLite's write lock is taken up front (so two
    writers never deadlock upgrading a read lock) and waited for by the caller's thread. Driver errors
    surface as ``DatabaseError`` with the same wording as the rest of onwatch. Used from one thread at a time.
    """

    def __init__(self, path: str):
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        # The application's own connections keep SQLite's default checkpoint interval (1000 pages) and take
        # the checkpoints between storms; on this one a checkpoint inside a storm's commit doubled its cost.
        for pragma in (*SQLITE_PRAGMAS, "wal_autocheckpoint=20000"):
            conn.execute(f"PRAGMA {pragma}")
        return conn

    def run(self, fn: Callable[[SqliteStore], T]) -> T:
        try:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(SqliteStore(conn))
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            raise DatabaseError(describe_db_error(exc)) from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class SqliteRunner:
    """A ``SqliteWriter`` in a dedicated thread of this process: passes run off the event loop."""

    def __init__(self, path: str):
        self.path = path
        self._writer = SqliteWriter(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onwatch-triage")

    async def run(self, fn: Callable[[TriageStore], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._writer.run, fn)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._writer.close)
        self._pool.shutdown(wait=False)


def runner_for(db: Database) -> TriageRunner:
    """SQLite files get a connection of their own in a thread; PostgreSQL and in-memory SQLite go through the
    application's engine."""
    return SqlaRunner(db) if db.sqlite_file is None else SqliteRunner(db.sqlite_file)
