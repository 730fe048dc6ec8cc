"""``onwatch watch list|close``: the live early warnings, and ending one by hand (audited, said in its thread)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.app import close_watch_item
from bot.audit import Actor
from bot.cli import main
from bot.config import WatchSettings
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import AuditEvent, WatchItem
from bot.watch.model import WatchOutcome, WatchStatus
from bot.watch.service import WatchService
from tests.fakes.slack_api import FakeSlack
from tests.slack_fixtures import slack_settings
from tests.watch_fixtures import finding, rig


async def _open(url: str, *names: str) -> None:
    db = Database(url)
    try:
        watch = WatchService(WatchSettings(min_interval_s=0), db)
        for name in names:
            assert await watch.observe(finding(name, title=f"{name} latency\x1b[31m rising")) == WatchOutcome.OPENED
    finally:
        await db.dispose()


async def _audit(url: str) -> list[AuditEvent]:
    db = Database(url)
    try:
        async with db.session() as s:
            return list((await s.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))).all())
    finally:
        await db.dispose()


def test_list_then_close_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    monkeypatch.setenv("ONWATCH_DATABASE__URL", url)
    assert main(["watch", "list"]) == 0
    assert "no live early warnings" in capsys.readouterr().out
    asyncio.run(_open(url, "checkout", "cart"))

    assert main(["watch", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["service"], r["status"]) for r in rows] == [(1, "checkout", "open"), (2, "cart", "open")]
    assert main(["watch", "list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[31m" in out  # a title's escape sequence is shown, not run

    assert main(["watch", "close", "1", "--reason", "the new normal after the v2 migration"]) == 0
    assert "closed early warning 1" in capsys.readouterr().out
    assert main(["watch", "close", "1"]) == 1  # closed already
    assert main(["watch", "close", "99"]) == 1
    assert "no live early warning has id 99" in capsys.readouterr().err
    assert main(["watch", "close", "2", "--reason", "x" * 501]) == 2
    assert "at most 500" in capsys.readouterr().err
    assert main(["watch", "list", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [2]
    (closed,) = [a for a in asyncio.run(_audit(url)) if a.action == "watch.closed"]
    assert closed.actor_platform == "cli" and closed.result == "the new normal after the v2 migration"


async def test_a_close_by_hand_is_said_under_the_post(db: Database, slack: FakeSlack, sqlite_url: str) -> None:
    r = rig(db, slack, sqlite_url, min_interval_s=0)
    await r.service().observe(finding())
    (post,) = r.posts()
    settings = slack_settings(sqlite_url, slack.api_url)
    alice = Actor("cli", "alice", "alice")
    assert await close_watch_item(settings, db, 1, "expected after the *batch* job", alice) is True
    (reply,) = r.replies(post["ts"])
    text = json.dumps(reply["blocks"])
    assert "Closed by `alice`" in text and "`expected after the *batch* job`" in text and "Recovered" not in text
    async with db.session() as s:
        (item,) = (await s.exec(select(WatchItem))).all()
    assert item.status == WatchStatus.CLOSED
    assert await close_watch_item(settings, db, 1, "", alice) is False
    assert len(r.replies(post["ts"])) == 1
