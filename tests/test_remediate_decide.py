"""Proposals and decisions: matching, scope, previews, approvers, the two-person rule, expiry, double clicks."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.audit import BOT, Actor
from bot.remediate.catalog import load_catalog
from bot.remediate.state import IllegalTransition, ProposalStatus, transition
from bot.store.db import Database
from bot.store.models import Approval, AuditEvent, Incident, Job, Proposal
from integrations.executors import ExecutorRegistry
from integrations.http_executor import HttpExecutor
from tests.remediate_fixtures import make_ctx, make_settings, seed

U1, U2, U3, U9 = Actor("slack", "U1", "ann"), Actor("slack", "U2", "bob"), Actor("slack", "U3", "cy"), \
    Actor("slack", "U9", "eve")

WEBHOOK = textwrap.dedent("""\
    id: {id}
    title: Roll back {{service}} through the deploy pipeline
    description: Ask the CD pipeline to redeploy the previous version of {{service}}.
    match: {{kinds: [deploy], services: ["*"]}}
    action:
      executor: http
      method: POST
      url: https://ci.example.internal/hooks/rollback
      body: {{service: "{{service}}", incident: "{{incident_id}}"}}
      sign_with: test_hook
    scope: {{services: [checkout, cart], hosts: [ci.example.internal]}}
    risk: {risk}
    approval: {{groups: [sre-oncall{extra}]}}
""")


def catalog_dir(tmp_path: Path, risk: str = "medium", extra: str = "") -> Path:
    d = tmp_path / "rb"
    d.mkdir(exist_ok=True)
    (d / "hook.yaml").write_text(WEBHOOK.format(id="hook", risk=risk, extra=extra))
    return d


SECRETS = {"test_hook": "s3cret"}


async def _setup(db: Database, tmp_path: Path, *, risk: str = "medium", requested_by: str = "onwatch:onwatch",
                 ttl: int = 3600, causes: list[dict] | None = None,
                 secrets: dict[str, str] = SECRETS):  # type: ignore[no-untyped-def]
    settings = make_settings(db.url, runbooks_dir=catalog_dir(tmp_path, risk, ", platform" if risk == "high" else ""),
                             ttl=ttl, secrets=secrets)
    # the executors are built from the settings as in production (preview only: nothing is sent here)
    ctx, svc, hub = make_ctx(settings, db)
    inc, inv = await seed(db, causes or [{"service": "checkout", "kind": "deploy", "confidence": 0.9,
                                          "evidence": ["e1"]}], requested_by=requested_by)
    props = await svc.propose(inc, inv)
    return ctx, svc, hub, inc, props


async def _audit(db: Database, prefix: str) -> list[AuditEvent]:
    async with db.session() as s:
        return list((await s.exec(select(AuditEvent).where(col(AuditEvent.action).startswith(prefix))
                                  .order_by(col(AuditEvent.seq)))).all())


async def _jobs(db: Database) -> list[Job]:
    async with db.session() as s:
        return list((await s.exec(select(Job).where(Job.kind == "execution"))).all())


async def test_propose_matches_fills_previews_and_audits(db: Database, tmp_path: Path) -> None:
    ctx, svc, hub, inc, props = await _setup(db, tmp_path, causes=[
        {"service": "checkout", "kind": "deploy", "confidence": 0.9, "evidence": []},
        {"service": "payments", "kind": "deploy", "confidence": 0.4, "evidence": []},  # out of scope
        {"service": "cart", "kind": "cpu_saturation", "confidence": 0.3, "evidence": []},  # no match
    ])
    assert [p.service for p in props] == ["checkout"]
    p = props[0]
    assert p.title == "Roll back checkout through the deploy pipeline"
    assert p.params["action"]["body"] == {"service": "checkout", "incident": inc}
    assert p.preview["request"] == "POST https://ci.example.internal/hooks/rollback" and p.preview["signed"]
    assert p.status == "pending" and p.approvals_needed == 1
    offered = [v for k, v in hub.events if k == "offered"]
    assert offered == [(inc, [p.id], offered[0][2])]
    assert len(offered[0][2]) == 1 and "payments" in offered[0][2][0] and "out of scope" in offered[0][2][0]
    assert [a.action for a in await _audit(db, "proposal.")] == ["proposal.not_offered", "proposal.created"]
    async with db.session() as s:
        assert (await s.get(Incident, inc)).phase == "awaiting_approval"  # type: ignore[union-attr]
    # proposing again for the same investigation does not duplicate the live proposal
    async with db.session() as s:
        inv_id = (await s.exec(select(Proposal.params))).first()["investigation_id"]  # type: ignore[index]
    assert await svc.propose(inc, inv_id) == []


async def test_missing_secret_is_not_offered(db: Database, tmp_path: Path) -> None:
    _ctx, svc, hub, _inc, props = await _setup(db, tmp_path, secrets={})
    assert props == []
    assert "signing secret 'test_hook' is not set: set ONWATCH_RUNBOOKS__SECRETS__TEST_HOOK" in hub.refused()[0]
    assert any("signs with the secret 'test_hook', which is not set" in w for w in svc.catalog.warnings)


async def test_approve_is_authorised_on_the_server(db: Database, tmp_path: Path) -> None:
    _ctx, svc, hub, _inc, [p] = await _setup(db, tmp_path)
    out = await svc.decide(p.id, U9, "approve", frozenset({"slack:U9"}))
    assert out.status == "unauthorised" and "sre-oncall" in out.message
    # membership through a user group principal the adapter resolved
    out = await svc.decide(p.id, U9, "approve", frozenset({"slack:U9", "slack:S9"}))
    assert out.status == "approved" and out.proposal is not None and out.proposal.status == "approved"
    assert out.proposal.decided_by == "slack:U9"
    assert len(await _jobs(db)) == 1
    assert ("changed", p.id) in hub.events
    assert [a.action for a in await _audit(db, "proposal.")][-2:] == ["proposal.unauthorised", "proposal.approved"]
    assert svc.approvers_for(p) == ("slack:S9", "slack:U1", "slack:U2", "teams:aad-1")


async def test_teams_principal_approves(db: Database, tmp_path: Path) -> None:
    _ctx, svc, _hub, _inc, [p] = await _setup(db, tmp_path)
    out = await svc.decide(p.id, Actor("teams", "aad-1", "tess"), "approve", frozenset({"teams:aad-1"}))
    assert out.status == "approved"


async def test_double_decision_decides_once(db: Database, tmp_path: Path) -> None:
    _ctx, svc, _hub, _inc, [p] = await _setup(db, tmp_path)
    outs = await asyncio.gather(*[svc.decide(p.id, U1, "approve", frozenset({"slack:U1"})) for _ in range(5)],
                                svc.decide(p.id, U2, "reject", frozenset({"slack:U2"})))
    statuses = sorted(o.status for o in outs)
    assert statuses.count("approved") + statuses.count("rejected") == 1
    assert statuses.count("already_decided") == 5
    assert len(await _audit(db, "proposal.approved")) + len(await _audit(db, "proposal.rejected")) == 1
    jobs = await _jobs(db)
    assert len(jobs) == (1 if "approved" in statuses else 0)


async def test_reject(db: Database, tmp_path: Path) -> None:
    _ctx, svc, _hub, inc, [p] = await _setup(db, tmp_path)
    out = await svc.decide(p.id, U2, "reject", frozenset({"slack:U2"}))
    assert out.status == "rejected"
    again = await svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    assert again.status == "already_decided" and "rejected by slack:U2" in again.message
    assert await _jobs(db) == []


async def test_two_person_rule_for_high_risk(db: Database, tmp_path: Path) -> None:
    _ctx, svc, _hub, _inc, [p] = await _setup(db, tmp_path, risk="high")
    assert p.approvals_needed == 2
    first = await svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    assert first.status == "awaiting_second_approval"
    same = await svc.decide(p.id, U1, "approve", frozenset({"slack:U1", "slack:S9"}))
    assert same.status == "awaiting_second_approval" and "different" in same.message
    assert (same.proposal and same.proposal.status) == "pending" and await _jobs(db) == []
    # an approver of the other group counts as the second person
    second = await svc.decide(p.id, U3, "approve", frozenset({"slack:U3"}))
    assert second.status == "approved"
    assert second.proposal is not None and second.proposal.decided_by == "slack:U1,slack:U3"
    async with db.session() as s:
        rows = (await s.exec(select(Approval).where(Approval.proposal_id == p.id))).all()
    assert sorted(a.actor for a in rows) == ["slack:U1", "slack:U3"]
    assert len(await _jobs(db)) == 1


async def test_requester_cannot_approve_own_high_risk(db: Database, tmp_path: Path) -> None:
    _ctx, svc, _hub, _inc, [p] = await _setup(db, tmp_path, risk="high", requested_by="slack:U1")
    out = await svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    assert out.status == "refused" and "someone else" in out.message
    assert (await svc.decide(p.id, U2, "approve", frozenset({"slack:U2"}))).status == "awaiting_second_approval"
    assert (await svc.decide(p.id, U3, "approve", frozenset({"slack:U3"}))).status == "approved"
    assert len(await _audit(db, "proposal.decision_refused")) == 1


async def test_requester_may_approve_own_medium_risk(db: Database, tmp_path: Path) -> None:
    _ctx, svc, _hub, _inc, [p] = await _setup(db, tmp_path, requested_by="slack:U1")
    assert (await svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))).status == "approved"


async def test_expiry(db: Database, tmp_path: Path) -> None:
    _ctx, svc, hub, _inc, [p, *_] = await _setup(db, tmp_path, ttl=10)
    async with db.begin() as s:
        row = await s.get(Proposal, p.id)
        assert row is not None
        row.expires_at -= 20
        s.add(row)
    out = await svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    assert out.status == "expired" and out.proposal is not None and out.proposal.status == "expired"
    assert await _jobs(db) == []
    assert (await svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))).status == "expired"
    assert len(await _audit(db, "proposal.expired")) == 1


async def test_statuses_are_an_enum_storing_the_same_values(db: Database, tmp_path: Path) -> None:
    """The stored values and audit actions are what they were (no migration); a move the machine does not have
    is refused before anything is written, and a lost race (the row is no longer ``expected``) writes nothing."""
    assert [s.value for s in ProposalStatus] == ["pending", "approved", "rejected", "expired", "executing",
                                                 "succeeded", "failed", "unknown"]
    _ctx, svc, _hub, _inc, [p] = await _setup(db, tmp_path)
    S = ProposalStatus
    async with db.begin() as s:
        with pytest.raises(IllegalTransition, match="from pending to succeeded"):
            await transition(s, db, p.id, p.incident_id, S.PENDING, S.SUCCEEDED, BOT)
        assert not await transition(s, db, p.id, p.incident_id, S.APPROVED, S.EXECUTING, BOT)
    assert (await svc.decide(p.id, U1, "reject", frozenset({"slack:U1"}))).status == "rejected"
    async with db.session() as s:
        stored = (await s.exec(select(Proposal.status).where(Proposal.id == p.id))).one()
    assert type(stored) is str and stored == "rejected"
    assert [a.params["to"] for a in await _audit(db, "proposal.rejected")] == ["rejected"]


async def test_expire_due(db: Database, tmp_path: Path) -> None:
    _ctx, svc, hub, _inc, [p] = await _setup(db, tmp_path, ttl=10)
    assert await svc.expire_due() == 0
    async with db.begin() as s:
        row = await s.get(Proposal, p.id)
        assert row is not None
        row.expires_at = 1.0
        s.add(row)
    assert await svc.expire_due() == 1
    assert await svc.expire_due() == 0
    assert ("changed", p.id) in hub.events


async def test_not_found_and_runbook_removed(db: Database, tmp_path: Path) -> None:
    ctx, svc, _hub, _inc, [p] = await _setup(db, tmp_path)
    assert (await svc.decide("nope", U1, "approve", frozenset({"slack:U1"}))).status == "not_found"
    (tmp_path / "rb" / "hook.yaml").unlink()
    svc.catalog = load_catalog(tmp_path / "rb", ctx.settings)
    out = await svc.decide(p.id, U1, "approve", frozenset({"slack:U1"}))
    assert out.status == "refused" and "no longer in the catalog" in out.message


async def test_two_replicas_race_on_postgres(pg_db: Database, tmp_path: Path) -> None:
    """Two services on two database handles decide and execute the same proposal: exactly one execution."""
    from aiohttp.test_utils import TestServer

    from tests.remediate_fixtures import Receiver, RedirectTransport

    recv = Receiver(secret="s3cret", delay_s=0.2)
    server = TestServer(recv.app(), host="127.0.0.1")
    await server.start_server()
    other = Database(pg_db.url)
    try:
        settings = make_settings(pg_db.url, runbooks_dir=catalog_dir(tmp_path), secrets=SECRETS)

        def registry() -> ExecutorRegistry:
            import httpx
            client = httpx.AsyncClient(transport=RedirectTransport(str(server.make_url(""))))
            return ExecutorRegistry({"http": HttpExecutor(client, settings.runbooks.secrets)})

        _c1, a, _h1 = make_ctx(settings, pg_db, registry=registry())
        _c2, b, _h2 = make_ctx(settings, other, registry=registry())
        inc, inv = await seed(pg_db, [{"service": "checkout", "kind": "deploy", "confidence": 0.9}])
        [p] = await a.propose(inc, inv)
        outs = await asyncio.gather(
            a.decide(p.id, U1, "approve", frozenset({"slack:U1"})),
            b.decide(p.id, U1, "approve", frozenset({"slack:U1"})),
            a.decide(p.id, U2, "approve", frozenset({"slack:U2"})),
            b.decide(p.id, U2, "approve", frozenset({"slack:U2"})),
        )
        assert sorted(o.status for o in outs).count("approved") == 1
        results = await asyncio.gather(*[svc.execute(p.id) for svc in (a, b, a, b)])
        assert results.count("succeeded") == 1
        assert len(recv.received) == 1
        from bot.store.models import Execution
        async with pg_db.session() as s:
            assert len((await s.exec(select(Execution))).all()) == 1
        assert len(await _audit(pg_db, "proposal.executing")) == 1
        assert len(await _audit(pg_db, "proposal.approved")) == 1
        await a.aclose()
        await b.aclose()
    finally:
        await other.dispose()
        await server.close()
