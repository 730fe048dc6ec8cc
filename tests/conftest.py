"""Shared fixtures: a migrated SQLite database, a fresh migrated PostgreSQL database, settings, datasets, and the
local stand-ins for Slack's and Microsoft's servers."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.app import context_for
from bot.config import Settings
from bot.context import AppContext
from bot.store.db import Database
from bot.store.migrate import upgrade
from tests.fakes.bot_connector import FakeBotConnector
from tests.fakes.slack_api import FakeSlack

ROOT = Path(__file__).resolve().parents[1]
DATASETS = (ROOT / ".." / "shared" / "datasets").resolve()
PG_ADMIN_URL = os.environ.get("ONWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def datasets_dir() -> Path:
    """The shared case-bundle datasets; tests that need them skip with a reason when absent."""
    if not DATASETS.is_dir():
        pytest.skip(f"../shared/datasets not found at {DATASETS} (only present in the project's CI checkout)")
    return DATASETS


@pytest.fixture
def datasets() -> Path:
    return datasets_dir()


def _pg_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def create_pg_database() -> str:
    """Create an empty uniquely named PostgreSQL database and return its URL."""
    import psycopg

    if not _pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    name = f"onwatch_t_{secrets.token_hex(5)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'onwatch.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


async def _migrated(url: str) -> Database:
    await asyncio.to_thread(upgrade, url)
    return Database(url)


@pytest.fixture
async def db(sqlite_url: str) -> AsyncIterator[Database]:
    d = await _migrated(sqlite_url)
    try:
        yield d
    finally:
        await d.dispose()


@pytest.fixture
async def pg_db(pg_url: str) -> AsyncIterator[Database]:
    d = await _migrated(pg_url)
    try:
        yield d
    finally:
        await d.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def anydb(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """The same test on the embedded SQLite default and on PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'any.db'}" if request.param == "sqlite" else create_pg_database()
    d = await _migrated(url)
    try:
        yield d
    finally:
        await d.dispose()
        if request.param == "postgres":
            drop_pg_database(url)


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return Settings(database={"url": sqlite_url}, runbooks={"dir": ROOT / "runbooks"})  # type: ignore[arg-type]


@pytest.fixture
def ctx(settings: Settings, db: Database) -> AppContext:
    return context_for(settings, db)


@pytest.fixture
async def connector() -> AsyncIterator[FakeBotConnector]:
    """A local Bot Connector (Teams' outbound API) for the real botbuilder adapters to call."""
    async with FakeBotConnector() as fake:
        yield fake


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """A local Slack Web API for the real slack-sdk clients to call."""
    async with FakeSlack() as fake:
        yield fake
