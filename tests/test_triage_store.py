"""The two triage stores write the same rows.

SQLite file databases run triage passes on a raw ``sqlite3`` connection in a thread (``SqliteStore``);
PostgreSQL and in-memory SQLite go through SQLAlchemy (``SqlaStore``). The same mixed sequence of batches
(new alerts, re-sends, changes, resolves, flapping, a silence, reopen within the cool-off) is run through both
on SQLite files, and through ``SqlaStore`` on PostgreSQL; every table triage writes is compared row by row, with
incident and investigation ids (random) replaced by their order of appearance.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import text

from bot.store.db import Database
from bot.store.models import Silence
from bot.triage.store import SqlaRunner, SqliteRunner, runner_for
from tests.test_triage_scenarios import T0, alert, ctx_with_clock


def _again(a: Any, status: str = "firing") -> Any:
    """The same alert (same labels, so the same fingerprint) with ``status``."""
    return alert(a.name, a.service, status, **{k: v for k, v in a.labels.items() if k not in ("alertname", "service")})


async def _sequence(db: Database, *, sqla: bool, seed: int) -> None:
    ctx, clock = ctx_with_clock(db, flap_threshold=3, flap_window_s=600)
    if sqla:
        ctx.triage.runner = SqlaRunner(db)
    async with db.begin() as s:
        s.add(Silence(matchers={"alertname": "Noisy"}, starts_at=T0 - 10, ends_at=T0 + 10_000, comment="known"))
    rng = random.Random(seed)
    services = ["checkout", "payments", "search", "frontend"]
    sent: list[Any] = []
    for step in range(12):
        batch = []
        for k in range(rng.randint(1, 25)):
            roll = rng.random()
            if sent and roll < 0.3:
                batch.append(rng.choice(sent))  # an identical re-send
            elif sent and roll < 0.45:
                old = rng.choice(sent)
                batch.append(_again(old, "resolved" if old.status == "firing" else "firing"))
            else:
                name = rng.choice(["HighLatency", "HighErrorRate", "Noisy", "PodCrashLooping"])
                batch.append(alert(name, rng.choice(services), pod=f"p{step}-{k}",
                                   severity=rng.choice(["critical", "warning"]), cluster=rng.choice(["eu", "us"]),
                                   namespace=rng.choice(["shop", "data"])))
        sent.extend(batch)
        await ctx.triage.ingest(batch)
        clock.t += rng.choice([5, 60, 400])
    flapper = sent[0]
    for k in range(4):  # flapping: said once, suppressed
        await ctx.triage.ingest([_again(flapper, ("resolved", "firing")[k % 2])])
        clock.t += 5
    last = {a.labels["pod"]: a for a in sent}
    await ctx.triage.ingest([_again(a, "resolved") for a in last.values()])  # every incident resolves
    clock.t += 60
    a = sent[-1]
    await ctx.triage.ingest([_again(a)])  # reopens within the cool-off
    clock.t += 100_000
    await ctx.triage.ingest([_again(sent[1])])  # long after: a new incident, and a link keeps it in its first one
    await ctx.triage.aclose()


async def _dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    queries = {
        "incident": "SELECT id, title, status, phase, severity, services, group_key, source, alert_count, opened_at, "
                    "updated_at, resolved_at, stats FROM incident ORDER BY opened_at, group_key, title",
        "alert": "SELECT fingerprint, source, name, status, severity, service, labels, annotations, starts_at, ends_at, "
                 "content_hash, first_seen, last_seen, duplicates, flips, suppressed, incident_id FROM alert "
                 "ORDER BY fingerprint",
        "incident_alert": "SELECT l.incident_id, a.fingerprint, l.attached_at FROM incident_alert l JOIN alert a "
                          "ON a.id = l.alert_id ORDER BY a.fingerprint, l.incident_id",
        "noise_counter": "SELECT day, name, value FROM noise_counter ORDER BY day, name",
        "audit_event": "SELECT actor_platform, actor_id, action, incident_id, params, result FROM audit_event ORDER BY seq",
        "investigation": "SELECT i.id, i.incident_id, i.status, i.requested_by FROM investigation i JOIN incident n "
                         "ON n.id = i.incident_id ORDER BY n.opened_at, n.group_key, n.title",
        "job": "SELECT kind, payload, status FROM job ORDER BY id",
    }
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with db.engine.connect() as conn:
        for table, sql in queries.items():
            out[table] = [tuple(r) for r in (await conn.execute(text(sql))).all()]
    return out


def _normalised(dump: dict[str, list[tuple[Any, ...]]]) -> str:
    """The dump as text, random ids replaced by their order of appearance, JSON text in one canonical form (the
    raw store writes labels with sorted keys and no spaces, SQLAlchemy in insertion order)."""
    import json
    import re

    def parse(v: Any) -> Any:
        if isinstance(v, dict | list):  # PostgreSQL's driver hands JSON columns back decoded
            return json.dumps(v, sort_keys=True)
        if isinstance(v, str) and v[:1] in "[{":
            try:
                return json.dumps(json.loads(v), sort_keys=True)
            except ValueError:
                return v
        return v

    body = repr({t: [tuple(parse(v) for v in row) for row in rows] for t, rows in dump.items()})
    names: dict[str, str] = {}
    return re.sub(r"\b(INC-[0-9A-F]{6}|inv_[0-9a-f]{16})\b", lambda m: names.setdefault(m[0], f"<{len(names)}>"), body)


async def test_raw_sqlite_store_and_sqlalchemy_store_write_the_same_rows(tmp_path) -> None:
    from tests.conftest import _migrated

    for seed in (1, 2):
        dumps = []
        for sqla in (False, True):
            db = await _migrated(f"sqlite:///{tmp_path / f'{seed}-{sqla}.db'}")
            try:
                assert isinstance(runner_for(db), SqliteRunner)
                await _sequence(db, sqla=sqla, seed=seed)
                dumps.append(await _dump(db))
            finally:
                await db.dispose()
        raw, sqla_dump = dumps
        assert raw["alert"] and raw["incident"] and raw["audit_event"] and raw["incident_alert"]
        assert any(r[15] for r in raw["alert"]), "the sequence should suppress something"
        actions = {r[2] for r in raw["audit_event"]}
        assert {"incident.opened", "incident.resolved", "incident.reopened", "alert.flapping"} <= actions, actions
        assert _normalised(raw) == _normalised(sqla_dump)


@pytest.mark.postgres
async def test_postgres_triage_writes_what_the_raw_sqlite_store_writes(tmp_path, pg_db: Database) -> None:
    """The production path for replicas (``SqlaStore`` on PostgreSQL, advisory locks) against the embedded one."""
    from tests.conftest import _migrated

    lite = await _migrated(f"sqlite:///{tmp_path / 'lite.db'}")
    try:
        await _sequence(lite, sqla=False, seed=3)
        expected = _normalised(await _dump(lite))
    finally:
        await lite.dispose()
    assert isinstance(runner_for(pg_db), SqlaRunner)
    await _sequence(pg_db, sqla=False, seed=3)
    assert _normalised(await _dump(pg_db)) == expected


def test_in_memory_sqlite_uses_sqlalchemy() -> None:
    db = Database("sqlite://")
    assert db.sqlite_file is None and isinstance(runner_for(db), SqlaRunner)


async def test_a_driver_error_in_a_pass_is_a_database_error_and_rolls_back(tmp_path) -> None:
    from bot.errors import DatabaseError
    from tests.conftest import _migrated

    db = await _migrated(f"sqlite:///{tmp_path / 'e.db'}")
    runner = SqliteRunner(str(tmp_path / "e.db"))
    try:
        def bad(store: Any) -> None:
            store.conn.execute("INSERT INTO noise_counter (day, name, value) VALUES ('d', 'n', 1)")
            store.conn.execute("INSERT INTO no_such_table VALUES (1)")

        try:
            await runner.run(bad)
        except DatabaseError as exc:
            assert "no_such_table" in str(exc)
        else:
            raise AssertionError("expected a DatabaseError")
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM noise_counter"))).scalar() == 0
        assert await runner.run(lambda store: store.conn.execute("SELECT 1").fetchone()[0]) == 1
    finally:
        await runner.aclose()
        await db.dispose()


