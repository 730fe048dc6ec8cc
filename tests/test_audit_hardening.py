"""Issue 17 item 6: an audit chain that survives whoever holds the database.

A keyed chain (HMAC with ``audit.chain_key``, never stored in the database) cannot be recomputed after an
altered row; deleting the newest rows or every row is found against a checkpoint kept outside the database;
an export verifies on its own; and on PostgreSQL the server's role can only SELECT and INSERT audit rows.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlmodel import select

from bot.audit import (
    BOT,
    Actor,
    Checkpoint,
    audit,
    canonical,
    current_checkpoint,
    digest,
    read_export,
    set_chain_key,
    verify_chain,
    verify_rows,
)
from bot.chat.checkpoints import write_checkpoint
from bot.cli import main
from bot.context import AppContext
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import AuditEvent
from tests.conftest import PG_ADMIN_URL, create_pg_database, drop_pg_database

KEY = b"k" * 32
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_key_after() -> Iterator[None]:
    yield
    set_chain_key(None)


async def fill(db: Database, n: int) -> None:
    for i in range(n):
        await audit(db, BOT, "test.step", params={"i": i})


def drop_sqlite_triggers(db: Database) -> None:
    """The holder of an SQLite file can do anything: drop the append-only triggers first."""
    import sqlite3

    assert db.sqlite_file is not None
    with sqlite3.connect(db.sqlite_file) as c:
        c.execute("DROP TRIGGER audit_event_no_update")
        c.execute("DROP TRIGGER audit_event_no_delete")


def sql(db: Database, statement: str) -> None:
    import sqlite3

    assert db.sqlite_file is not None
    with sqlite3.connect(db.sqlite_file) as c:
        c.execute(statement)


async def test_deleting_the_last_rows_or_all_is_found_against_a_checkpoint(db: Database) -> None:
    """The probe's finding: after deleting every row the chain still verified ("intact: 0 rows")."""
    set_chain_key(KEY)
    await fill(db, 5)
    cp = await current_checkpoint(db)
    assert cp.count == 5 and (await verify_chain(db, cp)).ok
    drop_sqlite_triggers(db)
    sql(db, "DELETE FROM audit_event WHERE seq > 3")
    assert (await verify_chain(db)).ok  # without the checkpoint nothing can tell
    res = await verify_chain(db, cp)
    assert not res.ok and "2 rows were deleted from its end" in res.reason
    sql(db, "DELETE FROM audit_event")
    res = await verify_chain(db, cp)
    assert not res.ok and "has 0 rows but the checkpoint saw 5" in res.reason


async def test_a_keyed_chain_cannot_be_recomputed_without_the_key(db: Database) -> None:
    """The probe's finding: altering a row and recomputing plain SHA-256 after it still verified."""
    set_chain_key(KEY)
    await fill(db, 4)
    drop_sqlite_triggers(db)
    async with db.session() as s:
        rows = list((await s.exec(select(AuditEvent).order_by(AuditEvent.seq))).all())
    # the holder alters row 2 and re-chains every row after it with plain SHA-256 (no key)
    rows[1].result = "nothing to see"
    prev = rows[0].hash
    for r in rows[1:]:
        r.prev_hash = prev
        r.hash = prev = digest(prev, canonical(r), None)
        sql(db, f"UPDATE audit_event SET result = '{r.result}', prev_hash = '{r.prev_hash}', hash = '{r.hash}' "
                f"WHERE seq = {r.seq}")
    res = await verify_chain(db)
    assert not res.ok and res.bad_seq == rows[1].seq and "not keyed although rows before it are" in res.reason
    # and with a wrong key nothing verifies
    res = await verify_chain(db, key=b"wrong" * 8)
    assert not res.ok


async def test_unkeyed_rows_before_the_key_are_counted(db: Database) -> None:
    await fill(db, 2)
    set_chain_key(KEY)
    await fill(db, 3)
    res = await verify_chain(db)
    assert res.ok and res.checked == 5 and res.unkeyed == 2
    set_chain_key(None)
    res = await verify_chain(db)  # without the key the keyed rows cannot be checked
    assert not res.ok and "give audit.chain_key" in res.reason


async def test_a_rewrite_before_the_checkpoint_is_found_even_unkeyed(db: Database) -> None:
    await fill(db, 3)
    cp = await current_checkpoint(db)
    drop_sqlite_triggers(db)
    async with db.session() as s:
        rows = list((await s.exec(select(AuditEvent).order_by(AuditEvent.seq))).all())
    prev = rows[0].prev_hash
    for r in rows:
        r.result = "rewritten"
        r.prev_hash = prev
        r.hash = prev = digest(prev, canonical(r), None)
        sql(db, f"UPDATE audit_event SET result = 'rewritten', prev_hash = '{r.prev_hash}', hash = '{r.hash}' "
                f"WHERE seq = {r.seq}")
    assert (await verify_chain(db)).ok  # a consistent plain chain...
    res = await verify_chain(db, cp)  # ...but not the one the checkpoint saw
    assert not res.ok and "not the head" in res.reason


def test_checkpoint_parsing() -> None:
    cp = Checkpoint.parse("12:" + "a" * 64)
    assert cp.count == 12 and cp.token == "12:" + "a" * 64
    with pytest.raises(ValueError):
        Checkpoint.parse("12:xyz")


async def test_checkpoints_are_logged_and_posted(ctx: AppContext, caplog: pytest.LogCaptureFixture) -> None:
    await fill(ctx.db, 2)
    said: list[tuple[str, str]] = []

    class Poster:
        platform = "slack"  # posted to audit.slack_channel (tests/test_chat_notes.py: the real adapters)

        async def say(self, channel: str, text: str) -> str | None:
            said.append((channel, text))
            return "1.0"

    ctx.chat.adapters.append(Poster())  # type: ignore[arg-type]
    ctx.settings.audit.slack_channel = "CAUDIT"
    with caplog.at_level(logging.INFO, logger="onwatch.audit"):
        cp = await write_checkpoint(ctx)
    assert cp.count == 2 and any(cp.token in r.getMessage() for r in caplog.records)
    assert said == [("CAUDIT", said[0][1])] and cp.token in said[0][1]


def test_cli_verify_file_and_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    monkeypatch.setenv("ONWATCH_DATABASE__URL", url)
    monkeypatch.setenv("ONWATCH_AUDIT__CHAIN_KEY", KEY.decode())
    set_chain_key(KEY)

    async def go() -> None:
        db = Database(url)
        await fill(db, 3)
        await db.dispose()

    asyncio.run(go())
    assert main(["audit", "checkpoint"]) == 0
    token = capsys.readouterr().out.strip()
    assert main(["audit", "verify", "--checkpoint", token]) == 0
    assert "intact: 3 rows in database, keyed" in capsys.readouterr().out
    export = tmp_path / "export.jsonl"
    assert main(["audit", "export", "--jsonl", "-o", str(export)]) == 0
    assert main(["audit", "verify", "--file", str(export), "--checkpoint", token]) == 0
    assert f"intact: 3 rows in {export}" in capsys.readouterr().out
    log = tmp_path / "onwatch.log"
    log.write_text(f"x INFO audit checkpoint 1:{'0' * 64}\ny INFO audit checkpoint {token}\n")
    assert main(["audit", "verify", "--file", str(export), "--checkpoint-file", str(log)]) == 0
    # an export with its last row removed, or one row altered
    lines = export.read_text().splitlines()
    (tmp_path / "short.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    assert main(["audit", "verify", "--file", str(tmp_path / "short.jsonl"), "--checkpoint", token]) == 1
    assert "1 rows were deleted" in capsys.readouterr().err
    row = json.loads(lines[1])
    row["result"] = "forged"
    (tmp_path / "forged.jsonl").write_text("\n".join([lines[0], json.dumps(row), lines[2]]) + "\n")
    assert main(["audit", "verify", "--file", str(tmp_path / "forged.jsonl")]) == 1
    assert "keyed hash" in capsys.readouterr().err
    (tmp_path / "junk.jsonl").write_text("not json\n")
    assert main(["audit", "verify", "--file", str(tmp_path / "junk.jsonl")]) == 2
    assert main(["audit", "verify", "--checkpoint", "nonsense"]) == 2
    assert len(read_export(str(export))) == 3 and verify_rows(read_export(str(export)), KEY).ok


# ------------------------------------------------------------------ PostgreSQL role split


@pytest.fixture
def split_roles() -> Iterator[tuple[str, str]]:
    """deploy/postgres/roles.sql and grants.sql applied with unique role names; (owner URL, app URL)."""
    url = create_pg_database()
    suffix = secrets.token_hex(4)
    owner, app = f"onwatch_owner_{suffix}", f"onwatch_app_{suffix}"
    name = url.rsplit("/", 1)[1]
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    host = base.split("@", 1)[1]
    roles = (ROOT / "deploy/postgres/roles.sql").read_text().replace("onwatch_owner", owner).replace("onwatch_app", app)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(roles)
        c.execute(f'ALTER DATABASE "{name}" OWNER TO {owner}')
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"ALTER SCHEMA public OWNER TO {owner}")
    owner_url, app_url = f"postgresql://{owner}@{host}/{name}", f"postgresql://{app}@{host}/{name}"
    try:
        upgrade(owner_url)  # migrations as the owner
        grants = (ROOT / "deploy/postgres/grants.sql").read_text().replace("onwatch_owner", owner) \
            .replace("onwatch_app", app)
        with psycopg.connect(owner_url, autocommit=True) as c:
            c.execute(grants)
        yield owner_url, app_url
    finally:
        drop_pg_database(url)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
            c.execute(f"DROP ROLE IF EXISTS {app}")
            c.execute(f"DROP ROLE IF EXISTS {owner}")


async def test_the_server_role_can_only_select_and_insert_audit_rows(split_roles: tuple[str, str]) -> None:
    _, app_url = split_roles
    db = Database(app_url)
    try:
        await db.check_schema()  # the server can read the schema version
        await audit(db, Actor("cli", "op"), "test.insert")  # and append
        assert (await verify_chain(db)).ok
        refused = []
        for statement in ("UPDATE audit_event SET result = 'x'", "DELETE FROM audit_event",
                          "TRUNCATE audit_event", "ALTER TABLE audit_event DISABLE TRIGGER ALL",
                          "DROP TRIGGER audit_event_no_update_delete ON audit_event",
                          "DROP TABLE audit_event", "UPDATE alembic_version SET version_num = '0001'"):
            try:
                async with db.begin() as s:
                    await s.exec(text(statement))  # type: ignore[call-overload]
            except Exception as exc:  # noqa: BLE001 - we assert on what the database said
                refused.append((statement, str(getattr(exc, "orig", exc))))
        assert len(refused) == 7, refused
        assert all("permission denied" in why or "must be owner" in why for _, why in refused), refused
        async with db.session() as s:  # the rest of onwatch's tables stay writable
            await s.exec(text("INSERT INTO silence (matchers, starts_at, ends_at, created_by, comment) "  # type: ignore[call-overload]
                              "VALUES ('{}', 0, 1, 'x', '')"))
            await s.commit()
    finally:
        await db.dispose()
