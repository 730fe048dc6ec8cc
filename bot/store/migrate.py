"""Alembic glue: upgrade to head and tell the head revision. Migrations are the only way the schema changes."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from bot.store.db import head_revision, migrations_dir, normalise_urls

__all__ = ["alembic_config", "head_revision", "upgrade"]


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", normalise_urls(url)[0].replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Blocking: call through ``asyncio.to_thread`` from async code."""
    command.upgrade(alembic_config(url), revision)
