"""Migrations are the only way the schema changes: on empty SQLite and PostgreSQL they produce the models."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import bot.store.models  # noqa: F401
from bot.store.db import Database, normalise_urls
from bot.store.migrate import head_revision, upgrade


def _diff(url: str) -> list[Any]:
    engine = create_engine(normalise_urls(url)[0])
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert ctx.get_current_revision() == head_revision()
            return list(compare_metadata(ctx, SQLModel.metadata))
    finally:
        engine.dispose()


def test_sqlite_migrations_match_models(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    assert _diff(sqlite_url) == []


@pytest.mark.postgres
def test_postgres_migrations_match_models(pg_url: str) -> None:
    upgrade(pg_url)
    assert _diff(pg_url) == []


def test_upgrade_is_idempotent(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    upgrade(sqlite_url)
    assert _diff(sqlite_url) == []


async def test_a_migrated_sqlite_file_is_wal_before_any_replica_opens_it(sqlite_url: str) -> None:
    """Two replicas' first connections racing to switch a fresh file to WAL could lose with "database is
    locked"; `onwatch migrate` switches it once, so their connects only read the mode."""
    upgrade(sqlite_url)
    path = make_url(sqlite_url).database
    assert path is not None
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    replicas = [Database(sqlite_url) for _ in range(4)]
    try:
        await asyncio.gather(*(r.ping() for r in replicas for _ in range(3)))
    finally:
        for r in replicas:
            await r.dispose()
