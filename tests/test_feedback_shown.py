"""People's feedback on an incident (the cause confirmed or corrected, what fixed it) on the incident's record:
``onwatch incidents show`` (text and --json) and the incident web page, escaped, on SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from bot.app import context_for
from bot.audit import Actor
from bot.config import Settings
from bot.memory.feedback import set_cause, set_fix
from bot.memory.store import remember_resolved
from bot.reports import cli as reports_cli
from bot.reports.timeline import incident_timeline, timeline_dict
from bot.reports.times import UTC
from bot.store.db import Database
from bot.store.models import Incident, Memory
from bot.web import create_app
from bot.web_ui import views
from tests.web_fixtures import HOSTILE, TOKEN, populate

ANA = Actor("slack", "U0ANA", "Ana <b>")
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _settings(db: Database) -> Settings:
    return Settings(database={"url": str(db.engine.url)}, web={"enabled": True, "viewer_token": TOKEN},  # type: ignore[arg-type]
                    approvals={"groups": {"sre": ["slack:U0ANA"]}})


@pytest.fixture
async def incident(anydb: Database) -> AsyncIterator[tuple[Database, str]]:
    ids = await populate(anydb)
    yield anydb, ids["full"]


async def test_feedback_on_the_record_in_the_terminal_and_json(incident: tuple[Database, str]) -> None:
    db, inc_id = incident
    before = await incident_timeline(db, inc_id)
    assert before.feedback.empty and timeline_dict(before)["feedback"] == {"cause": None, "fix": None, "memory": None}
    assert reports_cli.feedback_lines(before.feedback, UTC) == ["  cause not confirmed by anyone yet",
                                                                "  what fixed it: not recorded"]
    settings = _settings(db)
    await set_cause(db, settings, inc_id, ANA, frozenset({"slack:U0ANA"}), service="payments-api",
                    kind="connection_pool", note="pool size 5 after v42", now=1_700_000_000)
    await set_fix(db, settings, inc_id, ANA, frozenset({"slack:U0ANA"}), text="rolled back to v41",
                  now=1_700_000_060)
    t = await incident_timeline(db, inc_id)
    text = reports_cli.render_timeline(t, UTC)
    assert ("  cause named by Ana <b> at 2023-11-14T22:13:20+00:00: connection pool in payments-api — "
            "pool size 5 after v42") in text
    assert "  fixed by: rolled back to v41 (recorded by Ana <b> at 2023-11-14T22:14:20+00:00)" in text
    d = timeline_dict(t)["feedback"]
    assert d["cause"] == {"service": "payments-api", "kind": "connection pool", "how": "named",
                          "note": "pool size 5 after v42", "by": "Ana <b>", "at": "2023-11-14T22:13:20+00:00"}
    assert d["fix"] == {"text": "rolled back to v41", "by": "Ana <b>", "at": "2023-11-14T22:14:20+00:00"}


async def test_incidents_show_command_prints_the_feedback(incident: tuple[Database, str], capsys,
                                                          monkeypatch) -> None:
    db, inc_id = incident
    await set_cause(db, _settings(db), inc_id, ANA, frozenset({"slack:U0ANA"}), service="checkout", kind="deploy")
    monkeypatch.setenv("ONWATCH_DATABASE__URL", str(db.engine.url.render_as_string(hide_password=False)))
    assert await _in_thread(reports_cli.show_main, argparse.Namespace(id=inc_id.lower(), json=True, config=None)) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["feedback"]["cause"]["how"] == "named" and shown["feedback"]["cause"]["service"] == "checkout"


async def _in_thread(fn, args):  # the CLI runs its own event loop
    return await asyncio.to_thread(fn, args)


async def test_feedback_on_the_incident_page_escaped_with_the_memory_grade(incident: tuple[Database, str]) -> None:
    db, inc_id = incident
    settings = _settings(db)
    async with db.begin() as s:
        inc = await s.get(Incident, inc_id)
        assert inc is not None
        inc.status, inc.resolved_at = "resolved", inc.opened_at + 600
        s.add(inc)
    await remember_resolved(db)
    await set_cause(db, settings, inc_id, ANA, frozenset({"slack:U0ANA"}), confirm=True)
    await set_fix(db, settings, inc_id, ANA, frozenset({"slack:U0ANA"}), text=f"restarted {HOSTILE}")
    async with db.session() as s:
        grade = (await s.exec(select(Memory.grade).where(Memory.incident_id == inc_id))).one()
    assert grade == "confirmed"
    client = TestClient(TestServer(create_app(context_for(settings, db), installers=[views.install])))
    await client.start_server()
    try:
        r = await client.get(f"/ui/incidents/{inc_id}", headers=AUTH)
        page = await r.text()
    finally:
        await client.close()
    assert r.status == 200
    cause = page.split('id="feedback-cause">', 1)[1].split("</dd>", 1)[0]
    assert "confirmed by Ana &lt;b&gt;" in cause and "<strong>checkout</strong>" in cause
    fix = page.split('id="feedback-fix">', 1)[1].split("</dd>", 1)[0]
    assert "restarted &lt;script&gt;" in fix and "<script>" not in page
    assert "<dt>Memory</dt><dd>confirmed</dd>" in page
