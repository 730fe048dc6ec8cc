"""Journaled triage: the grouper triages each journaled batch exactly once, survives crashes and bad records.

The grouper's core (``Grouper.step``) is driven in-process against a real SQLite file; the service-level tests
run the real grouper process started by ``TriageService``, kill it, and check nothing journaled is lost.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import select

from bot.audit import Actor
from bot.config import TriageSettings
from bot.errors import ConfigError
from bot.intake.journal import JournalReader, JournalWriter
from bot.investigate.service import investigation_rows
from bot.store.db import Database
from bot.store.models import IntakeCursor
from bot.triage.alert import AlertIn, make_alert
from bot.triage.grouper import BadRecord, Grouper, Record, encode_record
from bot.triage.prepared import Prepared, prepare
from tests.slack_fixtures import eventually
from tests.triage_fixtures import alerts, dead_letters, incidents, jobs, make_ctx

HOOK = Actor("webhook", "alertmanager", "token")


def alert(name: str, service: str, status: str = "firing", **labels: str) -> AlertIn:
    lb = {"alertname": name, "service": service, "cluster": "prod", "namespace": "shop", **labels}
    return make_alert(source="alertmanager", labels=lb, annotations={"summary": f"{name} {service}"}, status=status,
                      starts_at=time.time() - 60)


def journal_dir(db: Database) -> Path:
    assert db.sqlite_file is not None
    return Path(f"{db.sqlite_file}.journal")


def journal(db: Database, *batches: list[AlertIn], raw: list[bytes] | None = None) -> list[int]:
    """Append batches the way the webhook does (and raw payloads, for bad records); return their tickets."""
    w = JournalWriter(journal_dir(db))
    w.open()
    try:
        tickets = [w.append(encode_record("alertmanager", HOOK, time.time(), [prepare(a) for a in b]))
                   for b in batches]
        tickets += [w.append(p) for p in raw or []]
    finally:
        w.close()
    return tickets


def grouper(db: Database) -> Grouper:
    assert db.sqlite_file is not None
    return Grouper(db.sqlite_file, journal_dir(db), TriageSettings(), investigation_rows)


def drain(g: Grouper) -> list:
    reports = []
    while (r := g.step()) is not None:
        reports.append(r)
    return reports


async def drained(db: Database) -> list:
    """Every report of a fresh grouper run until the journal is triaged (the grouper closed after)."""
    g = grouper(db)
    try:
        return await asyncio.to_thread(drain, g)
    finally:
        g.close()


async def cursor(db: Database) -> int:
    async with db.session() as s:
        row = (await s.exec(select(IntakeCursor))).first()
    return row.position if row else 0


async def test_journaled_batches_are_triaged_once_with_their_own_outcomes(db: Database) -> None:
    tickets = journal(db, [alert("HighLatency", "checkout"), alert("HighErrorRate", "checkout")],
                      [alert("HighLatency", "checkout")],  # a re-send: a duplicate
                      [alert("DiskFull", "billing-db")])
    reports = await drained(db)
    outcomes = dict(o for r in reports for o in r.outcomes)
    assert list(outcomes) == tickets
    assert [(o["stored"], o["duplicates"], len(o["opened"])) for o in outcomes.values()] == [(2, 0, 1), (0, 1, 0),
                                                                                            (1, 0, 1)]
    assert len(await incidents(db)) == 2 and len(await alerts(db)) == 3
    assert len(await jobs(db)) == 2  # one durable investigation per opened incident
    assert await cursor(db) == tickets[-1]
    assert await drained(db) == []  # as after a restart: it starts at the committed cursor, finds nothing to do
    assert (await alerts(db))[0].duplicates == 1


async def test_batches_a_second_grouper_already_triaged_are_skipped(db: Database) -> None:
    """An orphaned grouper of a crashed server re-reading what its successor committed changes nothing."""
    tickets = journal(db, [alert("HighLatency", "checkout")], [alert("HighLatency", "checkout", pod="b")])
    first, late = grouper(db), grouper(db)
    try:
        late.reader = JournalReader(journal_dir(db), 0)  # it read the journal before the other committed
        await asyncio.to_thread(drain, first)
        reports = await asyncio.to_thread(drain, late)
    finally:
        first.close()
        late.close()
    assert all(r.outcomes == [] for r in reports)
    rows = await alerts(db)
    assert len(rows) == 2 and all(a.duplicates == 0 for a in rows)
    assert await cursor(db) == tickets[-1]


async def test_a_bad_record_is_dead_lettered_and_the_journal_moves_on(db: Database) -> None:
    tickets = journal(db, [alert("HighLatency", "checkout")], raw=[b"not a journal record"])
    tickets += journal(db, [alert("DiskFull", "billing-db")])
    reports = await drained(db)
    outcomes = dict(o for r in reports for o in r.outcomes)
    assert "unreadable journal record" in outcomes[tickets[1]]["error"]
    assert outcomes[tickets[0]]["stored"] == 1 and outcomes[tickets[2]]["stored"] == 1
    (dead,) = await dead_letters(db)
    assert dead.source == "journal" and dead.body == b"not a journal record" and "unreadable" in dead.reason
    assert len(await alerts(db)) == 2 and await cursor(db) == tickets[-1]


async def test_the_service_triages_what_a_crash_left_journaled(db: Database) -> None:
    """The server acknowledged these and died before they were triaged: the next start triages them."""
    journal(db, [alert("HighLatency", "checkout")], [alert("DiskFull", "billing-db")])
    ctx = make_ctx(db)
    try:
        async with asyncio.timeout(60):
            await ctx.triage.start()
            await ctx.triage.drained()
    finally:
        await ctx.triage.aclose()
    assert len(await incidents(db)) == 2


async def test_a_killed_grouper_is_restarted_and_nothing_is_lost(db: Database) -> None:
    ctx = make_ctx(db)
    tr = ctx.triage
    assert tr.journal is not None
    try:
        async with asyncio.timeout(90):
            await tr.start()
            first = [await tr.enqueue([prepare(alert("HighLatency", f"svc-{i}", pod=f"p{k}")) for k in range(20)],
                                      source="alertmanager", actor=HOOK) for i in range(5)]
            proc = tr.journal._proc
            assert proc is not None
            proc.kill()
            later = [await tr.enqueue([prepare(alert("HighLatency", f"svc-{i}", pod=f"q{k}")) for k in range(20)],
                                      source="alertmanager", actor=HOOK) for i in range(5)]
            await tr.drained()
            assert tr.journal._proc is not proc  # a new grouper took over from the committed cursor
            outcome = await tr.journal.outcome(later[-1])
    finally:
        await tr.aclose()
    assert outcome.stored == 20
    assert ctx.metrics.registry.get_sample_value("onwatch_intake_backlog_batches") == 0
    assert (ctx.metrics.registry.get_sample_value("onwatch_triage_pass_duration_seconds_count") or 0) >= 1
    assert len(await alerts(db)) == 200 and len(await incidents(db)) == 1  # one family in one namespace
    assert await cursor(db) == later[-1] > first[-1]


async def test_closing_lets_the_grouper_finish_the_backlog(db: Database) -> None:
    ctx = make_ctx(db)
    tr = ctx.triage
    await tr.start()
    for i in range(10):
        await tr.enqueue([prepare(alert("HighLatency", "checkout", pod=f"{i}-{k}")) for k in range(50)],
                         source="alertmanager", actor=HOOK)
    async with asyncio.timeout(60):
        await tr.aclose()
    assert len(await alerts(db)) == 500


def test_journal_on_needs_a_sqlite_file() -> None:
    from bot.config import Settings
    from bot.context import AppContext
    from bot.triage.service import TriageService

    memory = Database("sqlite://")
    settings = Settings(database={"url": "sqlite://"}, triage={"journal": "on"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs the database to be a SQLite file"):
        TriageService(AppContext.for_db(settings, memory))
    auto = Settings(database={"url": "sqlite://"})  # type: ignore[arg-type]
    assert TriageService(AppContext.for_db(auto, memory)).journal is None  # acknowledged after the commit


@settings(max_examples=200, deadline=None)
@given(payload=st.one_of(
    st.binary(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
                 | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=5), max_leaves=30).map(msgpack.packb),
))
def test_any_journal_payload_decodes_or_is_a_bad_record(payload: bytes) -> None:
    """A damaged or foreign record is a ``BadRecord`` (dead-lettered by the grouper), never another exception."""
    try:
        rec = Record.decode(1, payload)
    except BadRecord:
        return
    assert all(isinstance(a, Prepared) for a in rec.alerts)


def test_a_journal_record_round_trips() -> None:
    batch = [prepare(alert("HighLatency", "checkout")), prepare(alert("DiskFull", "db", status="resolved"))]
    rec = Record.decode(7, encode_record("grafana", HOOK, 1714557600.5, batch))
    assert (rec.ticket, rec.source, rec.actor, rec.received_at, rec.alerts) == (7, "grafana", HOOK, 1714557600.5,
                                                                                batch)


def _storm_batches(n: int) -> list[list[AlertIn]]:
    """Batches with re-sends, changes (firing -> resolved) and several services, in arrival order."""
    batches = []
    for i in range(n):
        batch = [alert("HighLatency", f"svc-{k % 4}", pod=f"p{k}") for k in range(i * 5, i * 5 + 8)]  # overlaps
        if i % 3 == 2:
            batch.append(alert("HighLatency", "svc-1", status="resolved", pod=f"p{i * 5 - 4}"))
        batches.append(batch)
    return batches


async def _rows(db: Database) -> tuple[list[tuple], list[tuple]]:
    incs = {i.id: i.group_key for i in await incidents(db)}
    rows = sorted((a.fingerprint, a.status, a.duplicates, a.suppressed, incs.get(a.incident_id or ""))
                  for a in await alerts(db))
    return rows, sorted((i.group_key, i.status, i.alert_count, i.severity) for i in await incidents(db))


async def test_remembered_states_change_nothing_but_the_reads(db: Database, tmp_path: Path) -> None:
    """The grouper's state cache gives the same rows as reading every state from the database."""
    from bot.store.migrate import upgrade
    from bot.triage.txn import StateCache

    other = Database(f"sqlite:///{tmp_path / 'uncached.db'}")
    await asyncio.to_thread(upgrade, other.url)
    try:
        remembered = []
        for target, limit in ((db, 50_000), (other, 0)):  # limit 0: nothing is remembered
            g = grouper(target)
            g.known = StateCache(limit=limit)
            try:
                for batch in _storm_batches(12):  # one pass per batch, each after the previous committed
                    journal(target, batch)
                    await asyncio.to_thread(drain, g)
                    remembered.append(len(g.known))
            finally:
                g.close()
        assert max(remembered[:12]) > 0 and max(remembered[12:]) == 0
        assert await _rows(db) == await _rows(other)
    finally:
        await other.dispose()


async def test_a_write_by_another_connection_is_seen_by_the_next_pass(db: Database) -> None:
    import sqlite3

    journal(db, [alert("HighLatency", "checkout")])
    g = grouper(db)
    try:
        await asyncio.to_thread(drain, g)
        assert len(g.known) == 1
        assert db.sqlite_file is not None
        with sqlite3.connect(db.sqlite_file) as other:  # e.g. an operator's tool, or the inline path
            other.execute("UPDATE alert SET duplicates = 41")
        journal(db, [alert("HighLatency", "checkout")])
        await asyncio.to_thread(drain, g)
    finally:
        g.close()
    (row,) = await alerts(db)
    assert row.duplicates == 42  # counted on from what the other connection wrote, not from the cache


async def test_a_grouper_that_cannot_start_is_retried_and_closing_does_not_wait_for_it(tmp_path: Path) -> None:
    """The database is not migrated: the grouper dies at start, is started again, and closing ends that."""
    unmigrated = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    ctx = make_ctx(unmigrated)
    tr = ctx.triage
    assert tr.journal is not None
    try:
        await tr.journal.start(wait_ready=False)
        first = tr.journal._proc
        await eventually(lambda: tr.journal._proc is not first and tr.journal._restarts >= 2, within=30)
        started = time.monotonic()
        async with asyncio.timeout(10):
            await tr.aclose()
        assert time.monotonic() - started < 3  # not the 5 s restart pause
    finally:
        await unmigrated.dispose()


async def test_readyz_says_whether_the_grouper_runs_and_what_waits_for_it(db: Database) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.web import create_app

    ctx = make_ctx(db)
    async with TestClient(TestServer(create_app(ctx, installers=[]))) as client:
        body = await (await client.get("/readyz")).json()
        assert body == {"status": "ready", "intake": {"journal": "on", "grouper": "not started",
                                                      "backlog_batches": 0, "restarts": 0}}
        try:
            async with asyncio.timeout(60):
                await ctx.triage.start()
            await ctx.triage.enqueue([prepare(alert("HighLatency", "checkout"))], source="alertmanager", actor=HOOK)
            async with asyncio.timeout(60):
                await ctx.triage.drained()
            body = await (await client.get("/readyz")).json()
            assert body["intake"] == {"journal": "on", "grouper": "running", "backlog_batches": 0, "restarts": 0}
        finally:
            await ctx.triage.aclose()
