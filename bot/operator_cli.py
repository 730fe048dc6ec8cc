"""What every operator command shares: who is at the terminal, and a database opened, checked and closed.

A command run on the host is an operator's act: it is audited as ``cli:<login>``. Each command opens its own
database for one ``asyncio.run``, refuses a schema behind head (exit code 3 through ``DatabaseError``), and
always disposes of the engine, so a failed command leaves no connection behind.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.audit import Actor
from bot.config import Settings
from bot.store.db import Database, open_database

T = TypeVar("T")


def operator() -> Actor:
    """The person at the terminal, by login name ("operator" when the system cannot say)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "operator"
    return Actor("cli", user, user)


async def with_database(settings: Settings, fn: Callable[[Database], Awaitable[T]]) -> T:
    """``fn`` on the configured database, schema checked first, the engine disposed of after."""
    db = await open_database(settings.database.url)
    try:
        await db.check_schema()
        return await fn(db)
    finally:
        await db.dispose()


def run_on_database(settings: Settings, fn: Callable[[Database], Awaitable[T]]) -> T:
    """``with_database`` for a synchronous command handler."""
    return asyncio.run(with_database(settings, fn))
