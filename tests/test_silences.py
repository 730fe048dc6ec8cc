"""Issue 17 item 1: silences need an authorised user, a maximum duration, no unconfirmed match-all, an audit
row, a visible note in the channel, and ``unsilence`` / ``silences`` in chat and the CLI."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.audit import Actor
from bot.chat.commands import CommandContext, handle_command
from bot.cli import main
from bot.config import Settings
from bot.context import AppContext
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import AuditEvent, Silence
from bot.triage import silences
from bot.triage.suppress import Suppressor, matches_everything

APPROVER = Actor("slack", "UALICE", "alice")
MEMBER = Actor("slack", "UMALLORY", "mallory")  # in the channel, in no group
TEAMS_APPROVER = Actor("teams", "aad-approver", "ann")


@pytest.fixture
def sctx(ctx: AppContext) -> AppContext:
    ctx.settings = ctx.settings.model_copy(update={
        "approvals": Settings(approvals={"groups": {"sre": ["slack:UALICE", "slack:SONCALL", "teams:aad-approver"],  # type: ignore[arg-type]
                                                    "dev": ["slack:UDEV"]}}).approvals,
        "silences": Settings(approvals={"groups": {"sre": []}}, silences={"groups": ["sre"]}).silences,  # type: ignore[arg-type]
    })
    return ctx


def cc(actor: Actor, principals: frozenset[str] = frozenset(), incident_id: str | None = None) -> CommandContext:
    return CommandContext(actor=actor, platform=actor.platform, channel="C1", incident_id=incident_id, origin=None,
                          principals=principals)


async def rows(db: Database, model: Any) -> list[Any]:
    async with db.session() as s:
        return list((await s.exec(select(model))).all())


class View:
    def __init__(self, name: str, service: str) -> None:
        self.name, self.service, self.severity, self.source, self.labels = name, service, "critical", "am", {}


async def test_a_channel_member_cannot_mute_all_alerting(sctx: AppContext) -> None:
    """The probe's finding: a non-approver's ``silence alertname=~.* 7d`` was created."""
    r = await handle_command(sctx, "silence alertname=~.* 7d", cc(MEMBER))
    assert r.ephemeral and "Only members of sre" in r.text
    r = await handle_command(sctx, "silence service=checkout 1h", cc(MEMBER))
    assert r.ephemeral and "Only members of sre" in r.text
    r = await handle_command(sctx, "silence service=checkout 1h", cc(Actor("slack", "UDEV")))  # other group
    assert r.ephemeral and "Only members" in r.text
    assert await rows(sctx.db, Silence) == []


async def test_a_user_group_or_teams_identity_authorises(sctx: AppContext) -> None:
    r = await handle_command(sctx, "silence service=checkout 1h", cc(Actor("slack", "UBOB"), frozenset({"slack:SONCALL"})))
    assert not r.ephemeral and "silenced" in r.text
    r = await handle_command(sctx, "silence service=cart 1h", cc(TEAMS_APPROVER, frozenset({"teams:aad-approver"})))
    assert not r.ephemeral
    assert len(await rows(sctx.db, Silence)) == 2


async def test_no_groups_configured_means_nobody_in_chat(ctx: AppContext) -> None:
    r = await handle_command(ctx, "silence service=checkout 1h", cc(APPROVER))
    assert r.ephemeral and "(none configured)" in r.text


async def test_match_all_needs_confirmation(sctx: AppContext) -> None:
    for text in ("silence alertname=~.* 1h", "silence alertname=~.+ service=!x 1h", "silence confirm 1h"):
        r = await handle_command(sctx, text, cc(APPROVER))
        assert r.ephemeral, text
    assert await rows(sctx.db, Silence) == []
    r = await handle_command(sctx, "silence alertname=~.* confirm-all 1h storm", cc(APPROVER))
    assert not r.ephemeral and "silenced" in r.text
    (audit_row,) = [a for a in await rows(sctx.db, AuditEvent) if a.action == "silence.created"]
    assert audit_row.params["matches_all"] is True


@pytest.mark.parametrize("matchers,everything", [
    ({}, True), ({"alertname": "~.*"}, True), ({"service": "!checkout"}, True), ({"a": "~(?s).*"}, True),
    ({"service": "checkout"}, False), ({"alertname": "~High.*"}, False), ({"alertname": "~.*", "service": "x"}, False),
])
def test_matches_everything(matchers: dict[str, str], everything: bool) -> None:
    assert matches_everything(matchers) is everything


async def test_maximum_duration_comes_from_settings(sctx: AppContext) -> None:
    sctx.settings.silences.max_duration_s = 7200
    r = await handle_command(sctx, "silence service=checkout 3h", cc(APPROVER))
    assert r.ephemeral and "at most 2h" in r.text
    r = await handle_command(sctx, "silence service=checkout 2h", cc(APPROVER))
    assert not r.ephemeral


async def test_silence_is_audited_visible_and_undone(sctx: AppContext) -> None:
    r = await handle_command(sctx, "silence service=checkout 1h deploy", cc(APPROVER, incident_id=None))
    assert not r.ephemeral  # posted in the channel for everyone
    assert "alice silenced alerts matching service=checkout for 1h" in r.text and "unsilence 1" in r.text
    suppressor = Suppressor.build(sctx.settings.triage, [(v.matchers, v.starts_at, v.ends_at, v.comment)
                                                         for v in await silences.active(sctx.db)])
    assert suppressor.reason(View("HighLatency", "checkout"), time.time()).startswith("silenced")

    listed = await handle_command(sctx, "silences", cc(MEMBER))  # anyone may look
    assert "1: service=checkout" in listed.text and "slack:UALICE" in listed.text

    r = await handle_command(sctx, "unsilence 1", cc(MEMBER))
    assert r.ephemeral and "Only members" in r.text
    r = await handle_command(sctx, "unsilence 1", cc(APPROVER))
    assert not r.ephemeral and "removed silence 1" in r.text
    assert await silences.active(sctx.db) == []
    r = await handle_command(sctx, "unsilence 1", cc(APPROVER))
    assert r.ephemeral and "no active silence 1" in r.text
    actions = [a.action for a in await rows(sctx.db, AuditEvent)]
    assert actions.count("silence.created") == 1 and actions.count("silence.removed") == 1
    assert (await handle_command(sctx, "silences", cc(MEMBER))).text == "No active silences."


async def test_concurrent_unsilence_removes_once(sctx: AppContext) -> None:
    made = await silences.create(sctx.db, sctx.settings, APPROVER, frozenset(), {"service": "x"}, 600)
    results = await asyncio.gather(*[silences.remove(sctx.db, sctx.settings, APPROVER, frozenset(), made.id)
                                     for _ in range(4)], return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert [a.action for a in await rows(sctx.db, AuditEvent)].count("silence.removed") == 1


def test_cli_add_list_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    monkeypatch.setenv("ONWATCH_DATABASE__URL", url)
    assert main(["silences", "add", "service=checkout", "--for", "2h", "--comment", "deploy"]) == 0
    assert "silence 1: service=checkout" in capsys.readouterr().out
    assert main(["silences", "add", "alertname=~.*", "--for", "1h"]) == 1
    assert "match every alert" in capsys.readouterr().err
    assert main(["silences", "add", "service=x", "--for", "9d"]) == 1
    assert "at most 1d" in capsys.readouterr().err
    assert main(["silences", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["matchers"] == {"service": "checkout"} and row["created_by"].startswith("cli:")
    assert main(["silences", "remove", "1"]) == 0
    assert main(["silences", "remove", "1"]) == 1
    assert "no active silence 1" in capsys.readouterr().err
    assert main(["silences", "list"]) == 0
    assert "no active silences" in capsys.readouterr().out
