"""Commands already handled, remembered in the database so a replay runs nothing twice.

Slack signs a request with a timestamp and accepts it for five minutes, so the same signed body can be
sent again in that window (the probe ran five investigations from one ``/investigate``). Each command's
unique id (its ``trigger_id``, else its signature) is inserted once; a second insert of the same key fails
on the primary key, on every replica, so only the first request runs. An in-process cache would not
survive a restart nor be shared by replicas. Rows older than ``KEEP_S`` are pruned by the leader.
"""

from __future__ import annotations

import hashlib
import time

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from bot.store.db import Database
from bot.store.models import SeenCommand

KEEP_S = 3600.0  # well past Slack's five-minute signature window


def command_key(platform: str, unique_id: str) -> str:
    return f"{platform}:" + hashlib.sha256(unique_id.encode()).hexdigest()[:64]


async def first_time(db: Database, key: str, now: float | None = None) -> bool:
    """True for the first request with ``key``; False for a replay (already recorded)."""
    try:
        async with db.begin() as s:
            s.add(SeenCommand(key=key[:128], seen_at=time.time() if now is None else now))
    except IntegrityError:
        return False
    return True


async def prune(db: Database, keep_s: float = KEEP_S, now: float | None = None) -> int:
    cutoff = (time.time() if now is None else now) - keep_s
    async with db.begin() as s:
        res = await s.exec(delete(SeenCommand).where(col(SeenCommand.seen_at) < cutoff))  # type: ignore[call-overload]
    return int(res.rowcount or 0)
