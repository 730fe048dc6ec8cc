"""The bulk paths that keep an alert storm cheap: chained audit rows in one insert, investigations queued in the
triage transaction, and group commit of concurrent batches. Each must behave exactly like the one-by-one path."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import col, select

from bot.audit import BOT, Actor, AuditEntry, audit, audit_many, verify_chain
from bot.store.db import Database
from bot.store.models import AuditEvent, Investigation
from bot.triage.alert import AlertIn, make_alert
from tests.triage_fixtures import alerts, incidents, jobs, make_ctx

T0 = 1_714_557_600.0


def alert(name: str, service: str, status: str = "firing", **labels: str) -> AlertIn:
    lb = {"alertname": name, "service": service, "cluster": "prod", "namespace": labels.pop("namespace", "shop"),
          **labels}
    return make_alert(source="alertmanager", labels=lb, annotations={"summary": f"{name} {service}"},
                      status=status, starts_at=T0)


async def _actions(db: Database) -> list[AuditEvent]:
    async with db.session() as s:
        return list((await s.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))).all())


async def test_audit_many_chains_like_audit_and_never_forks_under_concurrency(anydb: Database) -> None:
    async def bulk_writer(k: int) -> None:
        for r in range(3):
            async with anydb.begin() as s:
                await audit_many(anydb, s, [AuditEntry(Actor("cli", f"w{k}"), "test.bulk", incident_id="INC-1",
                                                       params={"k": k, "r": r, "i": i}, result="ok")
                                            for i in range(4)])

    async def single_writer(k: int) -> None:
        for i in range(4):
            await audit(anydb, Actor("cli", f"s{k}"), "test.single", params={"i": i})

    await asyncio.gather(*(bulk_writer(k) for k in range(3)), *(single_writer(k) for k in range(2)))
    res = await verify_chain(anydb)
    assert res.ok, res
    rows = await _actions(anydb)
    assert len(rows) == 3 * 3 * 4 + 2 * 4 and res.checked == len(rows)
    # Each bulk call's rows are contiguous and in the order they were given.
    bulk = [(r.params["k"], r.params["r"], r.params["i"]) for r in rows if r.action == "test.bulk"]
    for j in range(0, len(bulk), 4):
        k, r, _ = bulk[j]
        assert bulk[j:j + 4] == [(k, r, i) for i in range(4)]


async def test_audit_many_in_a_rolled_back_transaction_leaves_no_row(db: Database) -> None:
    await audit(db, BOT, "before")
    with pytest.raises(RuntimeError):
        async with db.begin() as s:
            await audit_many(db, s, [AuditEntry(BOT, "lost", params={"i": i}) for i in range(3)])
            raise RuntimeError("boom")
    async with db.begin() as s:
        assert await audit_many(db, s, []) == []
    await audit(db, BOT, "after")
    assert [r.action for r in await _actions(db)] == ["before", "after"] and (await verify_chain(db)).ok


async def concurrent_storm(db: Database) -> None:
    ctx = make_ctx(db)
    services = ["checkout", "payments", "search", "ledger"]
    batches: list[list[AlertIn]] = []
    for b in range(8):
        batch = [alert("HighLatency", services[(b + i) % 4], namespace=services[(b + i) % 4], pod=f"p{b}-{i}")
                 for i in range(6)]
        if b:
            batch += batches[b - 1][:3]  # re-sends of the previous batch
        batches.append(batch)
    outs = await asyncio.gather(*(ctx.triage.ingest(batch) for batch in batches))
    assert sum(o.stored for o in outs) == 8 * 6 and sum(o.duplicates for o in outs) == 7 * 3
    assert all(o.received == len(b) for o, b in zip(outs, batches, strict=True))
    incs = await incidents(db)
    # One incident per service (namespaces differ): never two for one group, whatever the interleaving.
    assert sorted(i.services[0] for i in incs) == sorted(services)
    assert sorted(i for o in outs for i in o.opened) == sorted(i.id for i in incs)
    assert sum(i.alert_count for i in incs) == len(await alerts(db)) == 48
    for o, batch in zip(outs, batches, strict=True):
        by_service = {i.services[0]: i.id for i in incs}
        assert set(o.incident_ids) == {by_service[a.service] for a in batch[:6]}
    # One investigation, one durable job and one audit row of each kind per opened incident, all chained.
    async with db.session() as s:
        invs = (await s.exec(select(Investigation))).all()
    queued = await jobs(db)
    assert sorted(i.incident_id for i in invs) == sorted(i.id for i in incs)
    assert sorted(j.payload["investigation_id"] for j in queued) == sorted(i.id for i in invs)
    rows = await _actions(db)
    assert sorted(r.incident_id or "" for r in rows if r.action == "incident.opened") == sorted(i.id for i in incs)
    requested = [r for r in rows if r.action == "investigation.requested"]
    assert sorted(r.params["investigation_id"] for r in requested) == sorted(i.id for i in invs)
    assert (await verify_chain(db)).ok


async def test_concurrent_batches_sqlite(db: Database) -> None:
    await concurrent_storm(db)


@pytest.mark.postgres
async def test_concurrent_batches_postgres(pg_db: Database) -> None:
    await concurrent_storm(pg_db)


async def test_ingest_bench_reports_both_databases_and_no_loss() -> None:
    from bot.benchmarks.ingest import run

    r = await run(300, 50, concurrency=2)
    for name in ("sqlite", "postgresql"):
        if "skipped" in r[name]:
            assert name == "postgresql"
            continue
        d = r[name]
        assert d["lost"] == 0 and d["stored"] == d["unique_alerts"] == 200 and d["incidents"] >= 1
        assert d["alerts_per_s"] > 0 and 0 < d["ack_p50_ms"] <= d["ack_p99_ms"]
        assert d["announced"] == d["incidents"] and d["alert_to_thread_p50_s"] >= 0


@pytest.mark.postgres
async def test_two_replicas_receiving_the_same_notifications_open_one_incident(pg_db: Database) -> None:
    """An Alertmanager HA pair notifies every onwatch replica: the same batches arrive at two processes at once."""
    other = Database(pg_db.url)
    try:
        a, b = make_ctx(pg_db), make_ctx(other)
        batches = [[alert("HighLatency", "checkout", pod=f"p{i}-{k}") for k in range(5)] for i in range(4)]
        outs = await asyncio.gather(*(ctx.triage.ingest(batch) for batch in batches for ctx in (a, b)))
    finally:
        await other.dispose()
    incs = await incidents(pg_db)
    assert len(incs) == 1 and incs[0].alert_count == 20
    assert len(await alerts(pg_db)) == 20
    assert sum(o.stored for o in outs) == 20 and sum(o.duplicates for o in outs) == 20
    assert len(await jobs(pg_db)) == 1
    assert (await verify_chain(pg_db)).ok
