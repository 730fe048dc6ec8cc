"""Incident running aggregates (``Incident.stats``) always equal a recount of the incident's alerts.

Triage keeps per-incident counts (all severities, live severities, services) up to date batch by batch
instead of re-reading every alert of an incident. Random sequences of fires, resolves, re-sends, silences,
flaps, window expiries (alerts moving to a new incident) and concurrent batches must leave ``stats`` equal
to what a ``GROUP BY`` over the alert rows gives, and the incident fields derived from them (count,
services, severity) equal to what they are derived from the rows.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.store.db import Database
from bot.store.models import Alert, Incident, Silence
from bot.triage.grouping import Candidate, CandidateIndex, Identity, choose, neighbours
from bot.triage.txn import stats_from_rows as _stats_from_rows
from tests.test_triage_scenarios import T0, alert, ctx_with_clock

SERVICES = ["checkout", "payments", "frontend", "ledger", "search"]
NAMES = ["HighLatency", "HighErrorRate", "DiskFull"]
SEVERITIES = ["critical", "warning", "info", "high"]


async def recount(db: Database) -> dict[str, dict]:
    c = Alert.__table__.c  # type: ignore[attr-defined]
    supp = (c.suppressed != "").label("supp")
    q = (select(c.incident_id, c.service, c.severity, c.status, supp, func.count())
         .where(c.incident_id.is_not(None)).group_by(c.incident_id, c.service, c.severity, c.status, supp))
    rows: dict[str, list] = {}
    async with db.session() as s:
        for inc_id, service, severity, status, suppressed, n in (await s.exec(q)).all():  # type: ignore[call-overload]
            rows.setdefault(inc_id, []).append((service, severity, status, bool(suppressed), int(n)))
    return {i: _stats_from_rows(r) for i, r in rows.items()}


def norm(stats: dict) -> dict:
    return {k: v for k, v in ((p, stats.get(p, {})) for p in ("all", "live", "svc")) if v}


async def check(db: Database) -> None:
    expected = await recount(db)
    async with db.session() as s:
        incs = list((await s.exec(select(Incident))).scalars())  # type: ignore[call-overload]
    for inc in incs:
        want = norm(expected.get(inc.id, {}))
        assert norm(inc.stats) == want, inc.id
        # Every alert an incident holds is counted, and its services are those of its alerts.
        assert set(inc.services) >= set(want.get("svc", {}))


@pytest.mark.parametrize("seed", range(6))
async def test_running_stats_equal_a_recount(db: Database, seed: int) -> None:
    await random_walk(db, seed)


async def test_running_stats_equal_a_recount_postgres(pg_db: Database) -> None:
    await random_walk(pg_db, 0)


async def random_walk(db: Database, seed: int) -> None:
    rng = random.Random(seed)
    ctx, clock = ctx_with_clock(db, topology={"frontend": ["checkout"], "checkout": ["payments"]},
                                flap_window_s=300, flap_threshold=3, cooloff_s=120, group_window_s=200)
    tr = ctx.triage
    pool = [(n, s, sev) for n in NAMES for s in SERVICES for sev in SEVERITIES[:2]]
    for step in range(40):
        clock.t += rng.choice([1, 5, 30, 150, 400])
        if rng.random() < 0.1:
            async with db.begin() as s:
                s.add(Silence(matchers={"service": rng.choice(SERVICES)}, starts_at=clock.t - 1,
                              ends_at=clock.t + rng.choice([10, 500]), comment="test", created_by="t"))
        batches = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            batch = []
            for _ in range(rng.randint(1, 8)):
                name, svc, sev = rng.choice(pool)
                status = "resolved" if rng.random() < 0.35 else "firing"
                extra = {"severity": rng.choice(SEVERITIES)} if rng.random() < 0.2 else {"severity": sev}
                batch.append(alert(name, svc, status, **extra))
            batches.append(batch)
        await asyncio.gather(*(tr.ingest(b) for b in batches))
        if step % 5 == 4:
            await check(db)
    await check(db)
    assert T0 < clock.t


async def test_incidents_without_stats_are_recounted_from_their_alerts(db: Database) -> None:
    """Rows written before the column existed (empty ``stats``) are rebuilt from the alerts when next touched."""
    ctx, clock = ctx_with_clock(db)
    out = await ctx.triage.ingest([alert("HighLatency", "checkout"), alert("HighErrorRate", "checkout")])
    inc_id = out.opened[0]
    async with db.begin() as s:
        inc = await s.get(Incident, inc_id)
        assert inc is not None
        inc.stats = {}
        s.add(inc)
    clock.t += 10
    await ctx.triage.ingest([alert("HighLatency", "checkout", "resolved"), alert("Saturation", "checkout")])
    await check(db)
    async with db.session() as s:
        inc = await s.get(Incident, inc_id)
    assert inc is not None and inc.alert_count == 3 and norm(inc.stats)["all"] == {"warning": 3}


@given(st.lists(st.tuples(st.sampled_from(SERVICES + [""]), st.sampled_from(["a", "b", ""]),
                          st.sampled_from(["shop", "data", ""]), st.sampled_from(["lat", "err"]),
                          st.sampled_from(["open", "resolved"]), st.integers(0, 1000)), max_size=25),
       st.tuples(st.sampled_from(SERVICES + [""]), st.sampled_from(["a", "b", ""]),
                 st.sampled_from(["shop", "data", ""]), st.sampled_from(["lat", "err"])))
@settings(max_examples=300, deadline=None)
def test_best_picks_what_choose_picks_over_every_near_candidate(cands, probe) -> None:
    adj = neighbours({"frontend": ["checkout"], "checkout": ["payments"]})
    index = CandidateIndex(adj)
    for k, (svc, cluster, ns, fam, status, age) in enumerate(cands):
        ident = Identity(svc, cluster, ns, fam)
        index.add(Candidate(f"INC-{k}", ident, {svc} - {""}, status, 5000.0 - age,
                            resolved_at=5000.0 - age if status == "resolved" else None))
    ident = Identity(*probe)
    want = choose(ident, index.near(ident), adj, 5000.0, 600, 300)
    assert index.best(ident, 5000.0, 600, 300) is want
