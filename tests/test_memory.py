"""Memory: a resolved incident is remembered with its cause and fix; look-alikes are recalled first."""

from __future__ import annotations

import time

from bot.audit import verify_chain
from bot.investigate.service import report_signature
from bot.memory.similar import Signature
from bot.memory.store import recall, remember
from bot.store.db import Database
from bot.store.models import Alert, Execution, Finding, Incident, Investigation, Proposal


async def _incident(db: Database, inc_id: str, services: list[str], alert: str, cause: tuple[str, str] | None,
                    fix: str | None = None) -> None:
    async with db.begin() as s:
        s.add(Incident(id=inc_id, title=f"{alert} on {services[0]}", services=services, status="resolved",
                       resolved_at=time.time()))
        await s.flush()
        s.add(Alert(fingerprint=f"fp-{inc_id}", source="alertmanager", name=alert, status="resolved",
                    service=services[0], starts_at=1.0, incident_id=inc_id))
        if cause:
            inv = Investigation(id=f"inv-{inc_id}", incident_id=inc_id, status="done", finished_at=time.time())
            s.add(inv)
            await s.flush()
            s.add(Finding(investigation_id=inv.id, rank=1, service=cause[0], kind=cause[1], confidence=0.8))
        if fix:
            p = Proposal(id=f"p-{inc_id}", incident_id=inc_id, runbook_id="rollback", title=fix, expires_at=time.time() + 60,
                         status="succeeded")
            s.add(p)
            await s.flush()
            s.add(Execution(proposal_id=p.id, incident_id=inc_id, status="succeeded"))


async def test_remember_and_recall(anydb: Database) -> None:
    await _incident(anydb, "INC-A", ["checkout", "payments-api"], "HighLatency", ("payments-api", "deploy"),
                    fix="Roll back payments-api")
    await _incident(anydb, "INC-B", ["search"], "HighErrorRate", ("search", "memory_saturation"))
    await _incident(anydb, "INC-C", ["checkout"], "HighLatency", None)
    for inc in ("INC-A", "INC-B", "INC-C"):
        assert await remember(anydb, inc) is not None
    # remembering twice updates instead of duplicating
    await remember(anydb, "INC-A")

    q = Signature.of(["checkout"], ["HighLatency"])
    got = await recall(anydb, q)
    assert [r.incident_id for r in got] == ["INC-C", "INC-A"]
    assert got[0].similarity == 1.0 and got[1].similarity < 1.0
    assert "same service checkout" in got[1].why and "same alert HighLatency" in got[1].why
    assert got[1].grade == "unconfirmed", "the engine's own guess is not confirmed"
    a = next(r for r in got if r.incident_id == "INC-A")
    assert a.cause_service == "payments-api" and a.cause_kind == "deploy" and a.fix == "Roll back payments-api"
    assert all(r.incident_id != "INC-B" for r in got), "an unrelated incident is not recalled"
    assert [r.incident_id for r in await recall(anydb, q, exclude="INC-A")] == ["INC-C"]
    assert (await verify_chain(anydb)).ok


async def test_unknown_incident_is_not_remembered(db: Database) -> None:
    assert await remember(db, "INC-NOPE") is None
    assert await recall(db, Signature.of(["x"], ["y"])) == []


async def test_periodic_job_remembers_each_resolved_incident_once(db: Database) -> None:
    from bot.memory.store import remember_resolved

    await _incident(db, "INC-R", ["cart"], "CartErrors", ("redis", "dependency_failure"))
    async with db.begin() as s:
        s.add(Incident(id="INC-OPEN", title="still open", services=["cart"], status="open"))
    assert await remember_resolved(db) == 1
    assert await remember_resolved(db) == 0
    got = await recall(db, Signature.of(["cart"], ["CartErrors"]))
    assert [r.incident_id for r in got] == ["INC-R"] and got[0].cause_service == "redis"


async def test_a_past_incident_caused_in_a_present_suspect_is_the_closer_look_alike(db: Database) -> None:
    """Every incident of one shop shares its alert and symptom service; after the investigation, the past
    incident whose cause is among the present suspects comes first."""
    await _incident(db, "INC-S1", ["site"], "SiteSlow", ("search", "dependency_failure"))
    await _incident(db, "INC-S2", ["site"], "SiteSlow", ("adoptions", "dependency_failure"))
    for inc in ("INC-S1", "INC-S2"):
        await remember(db, inc)
    report = {"causes": [{"service": "adoptions", "kind": "dependency_failure", "summary": "slow adoptions"},
                         {"service": "db", "kind": "dependency_failure", "summary": "slow db"}]}
    got = await recall(db, report_signature(["site"], ["SiteSlow"], "site slow", report))
    assert got[0].incident_id == "INC-S2" and "adoptions" in got[0].why
