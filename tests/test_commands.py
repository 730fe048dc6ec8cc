"""The chat verbs: parsing, clear errors for the user, silences; nothing typed is executed."""

from __future__ import annotations

import time

import pytest
from sqlmodel import select

from bot.app import context_for
from bot.audit import Actor
from bot.chat.commands import CommandContext, handle_command, parse_duration
from bot.config import ApprovalSettings
from bot.messages.model import Cause
from bot.store.models import AuditEvent, Silence
from tests.slack_fixtures import make_incident, make_investigation

ALICE = Actor("slack", "UALICE", "alice")


def cc(incident_id: str | None = None) -> CommandContext:
    return CommandContext(actor=ALICE, platform="slack", channel="C1", incident_id=incident_id, origin=None)


async def test_help_and_unknown_verbs_are_ephemeral(ctx):
    r = await handle_command(ctx, "help", cc())
    assert r.ephemeral and "investigate" in r.text and "silence" in r.text
    r = await handle_command(ctx, "", cc())
    assert r.ephemeral and "onwatch commands" in r.text
    r = await handle_command(ctx, "rm -rf / ; __import__('os')", cc())
    assert r.ephemeral and "I don't know `rm`" in r.text


async def test_overlong_text_is_refused(ctx):
    r = await handle_command(ctx, "investigate " + "x" * 5000, cc())
    assert r.ephemeral and "too long" in r.text


async def test_investigate_without_target_outside_a_thread_says_what_to_type(ctx):
    r = await handle_command(ctx, "investigate", cc())
    assert r.ephemeral and "investigate INC-" in r.text


async def test_investigate_unknown_incident(ctx):
    r = await handle_command(ctx, "investigate INC-ABCDEF", cc())
    assert r.ephemeral and "no incident INC-ABCDEF" in r.text


async def test_investigate_free_text_without_triage(ctx):
    ctx.triage = None  # a process that runs commands but not triage (``context_for`` wires it)
    r = await handle_command(ctx, "investigate checkout is slow", cc())
    assert r.ephemeral and "triage is not running" in r.text


async def test_status_lists_open_incidents_and_shows_one(ctx):
    r = await handle_command(ctx, "status", cc())
    assert r.text == "No open incidents."
    inc = await make_incident(ctx.db)
    await make_investigation(ctx.db, inc.id)
    r = await handle_command(ctx, "status", cc())
    assert inc.id in r.text and not r.ephemeral
    r = await handle_command(ctx, f"status {inc.id.lower()}", cc())
    assert r.message is not None and any(isinstance(b, Cause) for b in r.message.blocks)
    r = await handle_command(ctx, "status", cc(inc.id))  # inside the thread: that incident
    assert r.message is not None and r.text.startswith(inc.id)
    r = await handle_command(ctx, "status nonsense", cc())
    assert r.ephemeral and "not an incident id" in r.text
    r = await handle_command(ctx, "status INC-000000", cc())
    assert r.ephemeral and "no incident" in r.text


def silencer(ctx):  # type: ignore[no-untyped-def]
    """ALICE in an approvals group: silences need one (issue 17)."""
    ctx.settings = ctx.settings.model_copy(update={"approvals": ApprovalSettings(groups={"sre": ["slack:UALICE"]})})
    return ctx


async def test_silence_creates_row_and_audit(ctx):
    ctx = silencer(ctx)
    inc = await make_incident(ctx.db)
    before = time.time()
    r = await handle_command(ctx, 'silence service=checkout alertname="High Latency" 2h deploy window', cc(inc.id))
    assert not r.ephemeral and "service=checkout" in r.text and "for 2h" in r.text
    async with ctx.db.session() as s:
        rows = (await s.exec(select(Silence))).all()
        audits = (await s.exec(select(AuditEvent).where(AuditEvent.action == "silence.created"))).all()
    assert len(rows) == 1
    row = rows[0]
    assert row.matchers == {"service": "checkout", "alertname": "High Latency"}
    assert row.created_by == "slack:UALICE" and row.comment == "deploy window"
    assert 7200 - 5 <= row.ends_at - before <= 7200 + 5
    assert len(audits) == 1 and audits[0].incident_id == inc.id and audits[0].actor_id == "UALICE"


@pytest.mark.parametrize("text,needle", [
    ("silence 2h", "at least one label"),
    ("silence service=checkout", "how long"),
    ("silence service=checkout 30d", "at most 1d"),
    ("silence service=checkout forever", "did not understand `forever`"),
    ("silence $(reboot)=x 1h", "did not understand"),
    ("silence service=checkout 0m", "at most 1d"),
    ("silence alertname=~.* 1h", "match every alert"),
    ("silence service=~[ 1h", "Not a valid regular expression"),
])
async def test_bad_silences_are_explained_and_change_nothing(ctx, text, needle):
    ctx = silencer(ctx)
    r = await handle_command(ctx, text, cc())
    assert r.ephemeral and needle in r.text
    async with ctx.db.session() as s:
        assert (await s.exec(select(Silence))).all() == []


def test_parse_duration():
    assert parse_duration("90m") == 5400 and parse_duration("1d") == 86400 and parse_duration("2H") == 7200
    assert parse_duration("1w") is None and parse_duration("-1h") is None and parse_duration("h") is None


async def test_investigate_by_id_and_in_thread_queue_a_durable_job(ctx):
    from bot.store.models import Investigation, Job

    inc = await make_incident(ctx.db)
    r = await handle_command(ctx, f"investigate {inc.id}", cc())
    assert not r.ephemeral and r.text.startswith(f"Investigating {inc.id}")
    r = await handle_command(ctx, "investigate", cc(inc.id))
    assert not r.ephemeral
    async with ctx.db.session() as s:
        invs = (await s.exec(select(Investigation).where(Investigation.incident_id == inc.id))).all()
        jobs = (await s.exec(select(Job).where(Job.kind == "investigation"))).all()
    assert len(invs) == 2 and len(jobs) == 2
    assert {i.requested_by for i in invs} == {"slack:UALICE"}


async def test_investigate_free_text_opens_an_adhoc_incident(settings, db):
    from bot.store.models import Incident
    from bot.triage.service import TriageService

    s2 = settings.model_copy(update={"triage": settings.triage.model_copy(update={"owners": {"checkout": "team-shop"}})})
    ctx = context_for(s2, db)
    ctx.triage = TriageService(ctx)
    r = await handle_command(ctx, "investigate checkout is slow since 14:00", cc())
    assert not r.ephemeral and r.text.startswith("Opened INC-")
    async with db.session() as s:
        inc = (await s.exec(select(Incident))).one()
    assert inc.services == ["checkout"] and inc.source == "adhoc"
    r = await handle_command(ctx, "investigate the weather", cc())
    assert r.ephemeral and "could not find a service" in r.text
