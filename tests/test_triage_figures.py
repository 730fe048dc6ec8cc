"""An incident's figures (alert count, services, severity) always equal what its alert rows give.

Random sequences of fires, resolves, re-sends, silences, flaps, window expiries (alerts moving to a new
incident) and concurrent batches must leave every incident that no alert has left (no ``IncidentAlert``
link: an alert that moves on stays part of its first incident, whose figures are not recounted) with the
count, services and severity worked out from a ``GROUP BY`` over its alerts.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.store.db import Database
from bot.store.models import Alert, Incident, IncidentAlert, Silence
from bot.triage.grouping import Candidate, CandidateIndex, Identity, choose, neighbours
from bot.triage.severity import incident_severity
from tests.test_triage_scenarios import T0, alert, ctx_with_clock

SERVICES = ["checkout", "payments", "frontend", "ledger", "search"]
NAMES = ["HighLatency", "HighErrorRate", "DiskFull"]
SEVERITIES = ["critical", "warning", "info", "high"]


async def check(db: Database) -> int:
    """Assert the figures of every incident no alert has left; return how many were checked."""
    c = Alert.__table__.c  # type: ignore[attr-defined]
    live = ((c.status == "firing") & (c.suppressed == "")).label("live")
    q = (select(c.incident_id, c.service, c.severity, live, func.count())
         .where(c.incident_id.is_not(None)).group_by(c.incident_id, c.service, c.severity, live))
    rows: dict[str, list] = {}
    async with db.session() as s:
        for inc_id, service, severity, is_live, n in (await s.exec(q)).all():  # type: ignore[call-overload]
            rows.setdefault(inc_id, []).append((service, severity, bool(is_live), int(n)))
        incs = list((await s.exec(select(Incident))).scalars())  # type: ignore[call-overload]
        left = set((await s.exec(select(IncidentAlert.incident_id))).scalars())  # type: ignore[call-overload]
    checked = 0
    for inc in incs:
        if inc.id in left:
            continue
        mine = rows.get(inc.id, [])
        services = {sv for sv, _, _, _ in mine if sv}
        live_sev = {sev for _, sev, lv, _ in mine if lv}
        assert inc.alert_count == sum(n for *_, n in mine), inc.id
        assert set(inc.services) == services or not services, inc.id
        assert inc.severity == incident_severity(live_sev or {sev for _, sev, _, _ in mine}, inc.services, []), inc.id
        checked += 1
    return checked


@pytest.mark.parametrize("seed", range(6))
async def test_incident_figures_equal_a_recount(db: Database, seed: int) -> None:
    await random_walk(db, seed)


async def test_incident_figures_equal_a_recount_postgres(pg_db: Database) -> None:
    await random_walk(pg_db, 0)


async def random_walk(db: Database, seed: int) -> None:
    rng = random.Random(seed)
    ctx, clock = ctx_with_clock(db, topology={"frontend": ["checkout"], "checkout": ["payments"]},
                                flap_window_s=300, flap_threshold=3, cooloff_s=120, group_window_s=200)
    tr = ctx.triage
    pool = [(n, s, sev) for n in NAMES for s in SERVICES for sev in SEVERITIES[:2]]
    checked = 0
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
            checked += await check(db)
    checked += await check(db)
    assert checked > 0 and T0 < clock.t


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
