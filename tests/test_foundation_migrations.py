"""Migrations are the only way the schema changes: on empty SQLite and PostgreSQL they produce the models."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import bot.store.models  # noqa: F401
from bot.store.db import normalise_urls
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
