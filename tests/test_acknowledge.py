"""The ``ack`` chat command: audited, once per person, and the first one ends the time to acknowledge."""

from __future__ import annotations

import time

from sqlmodel import select

from bot.app import context_for
from bot.audit import Actor, verify_chain
from bot.chat.commands import CommandContext, handle_command
from bot.config import ReportSettings, Settings
from bot.reports.load import build_report
from bot.store.db import Database
from bot.store.models import AuditEvent, Incident

ANA = Actor("slack", "U0ANA", "Ana")
BO = Actor("teams", "aad-bo", "Bo")


def _cc(actor: Actor, incident_id: str | None) -> CommandContext:
    return CommandContext(actor=actor, platform=actor.platform, channel="C1", incident_id=incident_id, origin=None)


async def test_ack_is_audited_once_per_person_and_timed(anydb: Database) -> None:
    ctx = context_for(Settings(database={"url": str(anydb.engine.url)}), anydb)  # type: ignore[arg-type]
    async with anydb.begin() as s:
        opened = time.time() - 100
        s.add(Incident(id="INC-ACC001", title="x", severity="critical", services=["checkout"], opened_at=opened))
    reply = await handle_command(ctx, "ack", _cc(ANA, "INC-ACC001"))
    assert reply.text == "Ana acknowledged INC-ACC001 (first)." and not reply.ephemeral
    again = await handle_command(ctx, "ack INC-ACC001", _cc(ANA, None))
    assert again.ephemeral and "already" in again.text
    second = await handle_command(ctx, "acknowledge inc-acc001", _cc(BO, None))
    assert second.text == "Bo acknowledged INC-ACC001."
    assert (await handle_command(ctx, "ack", _cc(ANA, None))).ephemeral
    assert "no incident INC-FFFF" in (await handle_command(ctx, "ack INC-FFFF", _cc(ANA, None))).text
    assert "not an incident id" in (await handle_command(ctx, "ack <b>x</b>", _cc(ANA, None))).text
    async with anydb.session() as s:
        rows = (await s.exec(select(AuditEvent).where(AuditEvent.action == "incident.acknowledged"))).all()
    assert [(r.actor_id, r.params["first"]) for r in rows] == [("U0ANA", True), ("aad-bo", False)]
    assert (await verify_chain(anydb)).ok
    report = await build_report(anydb, ReportSettings(), days=1, now=time.time() + 1)
    ack = report.durations["time_to_acknowledge"].overall
    assert ack.n == 1 and ack.median_s is not None  # the first acknowledgement (Ana's), not Bo's
    assert abs(ack.median_s - (rows[0].at - opened)) < 0.01
