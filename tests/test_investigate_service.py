"""Investigations as durable work: request -> job -> run -> stored report, evidence, findings, audit."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from sqlmodel import select

from bot.audit import Actor, verify_chain
from bot.investigate.service import request_investigation, run_investigation
from bot.jobs import JobQueue
from bot.store.models import Alert, AuditEvent, Evidence, Finding, Incident, Investigation, Job
from integrations.replay import replay_sources
from tests.investigate_fixtures import ALERT, INJECT, add_on, chain, make_case, up_on


class _Chat:
    def __init__(self) -> None:
        self.finished: list[tuple[str, str]] = []

    async def investigation_finished(self, incident_id: str, investigation_id: str) -> None:
        self.finished.append((incident_id, investigation_id))


class _Remediation:
    def __init__(self) -> None:
        self.proposed: list[tuple[str, str]] = []

    async def propose(self, incident_id: str, investigation_id: str) -> None:
        self.proposed.append((incident_id, investigation_id))


async def _setup(db, tmp_path: Path, effect) -> SimpleNamespace:
    case = make_case(tmp_path, effect)
    ctx = SimpleNamespace(db=db, jobs=JobQueue(db), chat=_Chat(), remediation=_Remediation(), memory=None,
                          settings=SimpleNamespace(triage=None), sources_factory=lambda: replay_sources(case))
    async with db.begin() as s:
        s.add(Incident(id="INC-T1", title="storefront slow", services=["frontend"]))
        await s.flush()
        s.add(Alert(fingerprint="f" * 16, source="alertmanager", name="Crafted", status="firing",
                    service="frontend", starts_at=float(ALERT), incident_id="INC-T1"))
    return ctx


async def test_request_then_run(db, tmp_path: Path) -> None:
    effect = chain(add_on("payment", "cpu", 70.0), add_on("frontend", "latency_p90", 0.2, INJECT + 30))
    ctx = await _setup(db, tmp_path, effect)
    inv_id = await request_investigation(ctx, "INC-T1", Actor("slack", "U1", "ana"))
    assert await request_investigation(ctx, "INC-T1", Actor("slack", "U1", "ana")) != inv_id
    async with db.session() as s:
        jobs = (await s.exec(select(Job).where(Job.kind == "investigation"))).all()
        assert {"investigation_id": inv_id} in [j.payload for j in jobs]
        assert (await s.get(Investigation, inv_id)).status == "queued"
    await run_investigation(ctx, inv_id)
    async with db.session() as s:
        inv = await s.get(Investigation, inv_id)
        assert inv.status == "done" and not inv.abstained
        assert inv.report["ranked_services"][0] == "payment"
        findings = (await s.exec(select(Finding).where(Finding.investigation_id == inv_id))).all()
        assert sorted(f.rank for f in findings)[0] == 1
        top = next(f for f in findings if f.rank == 1)
        assert (top.service, top.kind) == ("payment", "cpu_saturation")
        keys = {e.key for e in (await s.exec(select(Evidence).where(Evidence.investigation_id == inv_id))).all()}
        assert set(top.evidence_keys) <= keys
        actions = [a.action for a in (await s.exec(select(AuditEvent).order_by(AuditEvent.seq))).all()]
        assert actions.count("investigation.step") == len(inv.report["steps"])
        assert "investigation.requested" in actions and actions[-1] == "investigation.result"
        assert (await s.get(Incident, "INC-T1")).phase == "cause_found"
    assert ctx.chat.finished == [("INC-T1", inv_id)]
    assert ctx.remediation.proposed == [("INC-T1", inv_id)]
    assert (await verify_chain(db)).ok
    # a redelivered job does nothing twice
    await run_investigation(ctx, inv_id)
    assert ctx.chat.finished == [("INC-T1", inv_id)]


async def test_inconclusive(db, tmp_path: Path) -> None:
    ctx = await _setup(db, tmp_path, None)
    inv_id = await request_investigation(ctx, "INC-T1", Actor("cli", "op"))
    await run_investigation(ctx, inv_id)
    async with db.session() as s:
        inv = await s.get(Investigation, inv_id)
        assert inv.abstained and inv.status == "done"
        assert (await s.get(Incident, "INC-T1")).phase == "inconclusive"
    assert ctx.remediation.proposed == []
    assert ctx.chat.finished == [("INC-T1", inv_id)]


async def test_cpu_effect_helper_is_used(tmp_path: Path) -> None:
    # keeps the helper honest: the effect changes only the named series after the injection
    import numpy as np

    fx = up_on("payment", "cpu", 2.0)
    t = np.array([INJECT - 10.0, INJECT + 10.0])
    assert list(fx("payment", "cpu", t, np.array([1.0, 1.0]))) == [1.0, 2.0]
    assert list(fx("orders", "cpu", t, np.array([1.0, 1.0]))) == [1.0, 1.0]
