"""Alembic glue: upgrade to head and tell the head revision. Migrations are the only way the schema changes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from bot.store.db import head_revision, migrations_dir, normalise_urls

__all__ = ["alembic_config", "head_revision", "upgrade"]


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", normalise_urls(url)[0].replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Blocking: call through ``asyncio.to_thread`` from async code."""
    _sqlite_wal(normalise_urls(url)[0])
    command.upgrade(alembic_config(url), revision)


def _sqlite_wal(sync_url: str) -> None:
    """An SQLite file is switched to WAL here, once, before any server opens it: the switch needs the file to
    itself, and replicas that each tried it on their first connection could lose that race ("locked")."""
    u = make_url(sync_url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return
    Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(u.database, timeout=60)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
