"""The database handle: one async engine, SQLite (WAL) embedded by default or PostgreSQL by URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.errors import DatabaseError
from bot.masking import mask

DEFAULT_SQLITE = "sqlite:///onwatch.db"
BUSY_TIMEOUT_S = 60
# Every SQLite connection onwatch opens runs these first.
SQLITE_PRAGMAS = (f"busy_timeout={BUSY_TIMEOUT_S * 1000}", "foreign_keys=ON", "synchronous=NORMAL")
_READ_ONLY = "onwatch_read_only"  # the execution option of ``session()``'s connections (SQLite: a plain BEGIN)


def normalise_urls(url: str) -> tuple[str, str]:
    """Return (sync_url, async_url) for a user-facing URL such as ``postgresql://u@h/db``."""
    try:
        u = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise DatabaseError(f"database.url is not a valid URL: {mask(url)!r} ({mask(str(exc))})") from None
    backend = u.get_backend_name()
    if backend == "sqlite":
        return str(u.set(drivername="sqlite")), str(u.set(drivername="sqlite+aiosqlite"))
    if backend == "postgresql":
        s = u.set(drivername="postgresql+psycopg")
        return s.render_as_string(hide_password=False), s.render_as_string(hide_password=False)
    raise DatabaseError(f"database.url: unsupported backend {backend!r}; use sqlite:/// or postgresql://")


def migrations_dir() -> Path:
    """The Alembic folder: next to the source tree, or in the working directory (container layout)."""
    for candidate in (Path(__file__).resolve().parents[2] / "migrations", Path.cwd() / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise DatabaseError("cannot find the migrations/ folder (run from the project or image root)")


def head_revision() -> str | None:
    """The newest migration of this onwatch (``bot.store.migrate`` upgrades to it)."""
    return ScriptDirectory(str(migrations_dir())).get_current_head()


def describe_db_error(exc: BaseException) -> str:
    msg = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
    if "file is not a database" in msg or "malformed" in msg:
        return f"the SQLite file is corrupted or not a database ({msg})"
    if "Connection refused" in msg or "could not connect" in msg or "connection failed" in msg:
        return f"the database is unreachable ({msg})"
    return msg


class WriteGate:
    """This process's turns at SQLite's one write lock, first come first served.

    Without it a writer that finds the lock taken sleeps in SQLite's busy handler (with back-off) and, under a
    storm, rarely wakes in the gap between two triage batches: the outbox's writes starved. Here it waits in
    line and gets the lock after the transaction ahead of it. A write opened inside one that holds the gate (or
    in a task started there) passes through, as before: SQLite decides. Waiting longer than SQLite's own busy
    timeout raises ``TimeoutError`` rather than hanging."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._held: ContextVar[bool] = ContextVar(f"onwatch_write_gate_{id(self)}", default=False)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self._held.get():
            yield
            return
        async with asyncio.timeout(BUSY_TIMEOUT_S):
            await self._lock.acquire()
        token = self._held.set(True)
        try:
            yield
        finally:
            self._held.reset(token)
            self._lock.release()


class Database:
    """Owns the engine. ``session()`` yields an AsyncSession for reading; ``begin()`` a session inside a write
    transaction, ``transaction()`` a connection inside one (on SQLite both queue at the ``WriteGate``)."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10):
        self.url = url
        self.sync_url, self.async_url = normalise_urls(url)
        self.is_postgres = self.sync_url.startswith("postgresql")
        self.is_sqlite = not self.is_postgres
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_postgres:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        else:
            kwargs.update(connect_args={"timeout": 60})
            if self.sqlite_file is not None:
                Path(self.sqlite_file).parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(self.async_url, **kwargs)
        self._reader = self.engine
        self._gate: WriteGate | None = None
        if self.is_sqlite:
            _install_sqlite_pragmas(self.engine)
            self._reader = self.engine.execution_options(**{_READ_ONLY: True})
            self._gate = WriteGate()

    @property
    def sqlite_file(self) -> str | None:
        """The SQLite database file, when there is one another connection can open (not in-memory databases)."""
        if not self.is_sqlite:
            return None
        url = make_url(self.sync_url)
        path = url.database
        if not path or path == ":memory:" or url.query.get("mode") == "memory" or path.startswith("file:"):
            return None
        return path

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reading (it never commits). On SQLite a WAL snapshot: it never waits for a writer."""
        async with AsyncSession(self._reader, expire_on_commit=False) as s:
            yield s

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error."""
        async with self._write_turn(), AsyncSession(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection whose transaction commits on success and rolls back on error (for Core statements)."""
        async with self._write_turn(), self.engine.begin() as conn:
            yield conn

    def _write_turn(self) -> AbstractAsyncContextManager[None]:
        return self._gate.turn() if self._gate is not None else nullcontext()

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                if self.is_sqlite:
                    await conn.execute(text("SELECT count(*) FROM sqlite_master"))
        except (OperationalError, DBAPIError, OSError) as exc:
            raise DatabaseError(describe_db_error(exc)) from None

    async def current_revision(self) -> str | None:
        def _rev(conn: Connection) -> str | None:
            return MigrationContext.configure(conn).get_current_revision()

        try:
            async with self.engine.connect() as conn:
                return await conn.run_sync(_rev)
        except (OperationalError, DBAPIError, OSError) as exc:
            raise DatabaseError(describe_db_error(exc)) from None

    async def check_schema(self) -> None:
        """Raise ``DatabaseError`` unless the schema is at the newest migration."""
        current, head = await self.current_revision(), head_revision()
        if current != head:
            raise DatabaseError(
                f"the database schema is at {current or 'nothing'} but this onwatch needs {head}: run `onwatch migrate`"
            )

    async def dispose(self) -> None:
        await self.engine.dispose()


def _install_sqlite_pragmas(engine: AsyncEngine) -> None:
    """WAL, foreign keys, and BEGIN IMMEDIATE for writes so concurrent writers queue instead of failing mid-way
    (a read's plain BEGIN takes no lock: it reads a snapshot)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        for pragma in SQLITE_PRAGMAS:
            cur.execute(f"PRAGMA {pragma}")
        # WAL is stored in the file: `onwatch migrate` switches it once (``bot.store.migrate``); a file it did
        # not create is switched by its first connection, and only when it is not WAL already (the switch takes
        # a lock a second replica's connect could lose).
        cur.execute("PRAGMA journal_mode")
        if str(cur.fetchone()[0]).lower() != "wal":
            cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")


async def open_database(url: str | None, *, echo: bool = False, pool_size: int = 10) -> Database:
    db = Database(url or DEFAULT_SQLITE, echo=echo, pool_size=pool_size)
    await db.ping()
    return db
