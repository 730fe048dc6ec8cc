"""Issue 17 item 9: Teams without an app id, and ``serviceUrl`` hosts.

Anonymous mode needs ``teams.allow_anonymous: true`` and a loopback listen address, or ``serve`` refuses
to start in one line; an activity naming a ``serviceUrl`` outside the Bot Framework's hosts is refused
(403) before anything runs, and a stored reference to such a host is never called — in every mode.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botbuilder.schema import Activity
from sqlmodel import select

from bot.app import build_context
from bot.chat.teams.adapter import TeamsAdapter, TeamsDeliveryError
from bot.chat.teams.connection import build_cloud_adapter
from bot.chat.teams.routes import validate_activity
from bot.cli import main
from bot.config import Settings, exposure_problems
from bot.context import AppContext
from bot.store.db import Database
from bot.store.models import AuditEvent, ConversationRef
from tests.fakes.bot_connector import FakeBotConnector
from tests.teams_fixtures import (
    Served,
    invoke,
    make_incident,
    make_proposal,
    mention_message,
    serve,
    teams_settings,
    write_runbooks,
)

EVIL = "https://evil.example/hook/"


def test_anonymous_needs_the_explicit_setting() -> None:
    (line,) = exposure_problems(Settings(teams={"enabled": True}))  # type: ignore[arg-type]
    assert "teams.app_id is not set" in line and "allow_anonymous" in line


def test_anonymous_needs_a_loopback_address() -> None:
    s = Settings(teams={"enabled": True, "allow_anonymous": True}, server={"host": "0.0.0.0"})  # type: ignore[arg-type]
    (line,) = exposure_problems(s)
    assert "server.host is 0.0.0.0" in line
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        s = Settings(teams={"enabled": True, "allow_anonymous": True}, server={"host": host})  # type: ignore[arg-type]
        assert exposure_problems(s) == []
    assert exposure_problems(Settings(teams={"enabled": True, "app_id": "a", "app_password": "p"})) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("yaml_text,needle", [
    ("teams: {enabled: true}\n", "teams.app_id is not set"),
    ("teams: {enabled: true, allow_anonymous: true}\nserver: {host: 0.0.0.0}\n", "loopback"),
])
def test_serve_refuses_to_start_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            yaml_text: str, needle: str) -> None:
    cfg = tmp_path / "onwatch.yaml"
    cfg.write_text(yaml_text + f"database: {{url: 'sqlite:///{tmp_path / 'x.db'}'}}\n")
    assert main(["serve", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert main(["config", "check", "--config", str(cfg)]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("host,ok", [
    ("smba.trafficmanager.net", True),
    ("europe.webchat.botframework.com", True),
    ("smba.infra.gov.teams.microsoft.us", True),
    ("evil.example", False),
    ("botframework.com.evil.example", False),
    ("evilbotframework.com", False),
    ("127.0.0.1", False),
])
def test_service_url_allowlist(host: str, ok: bool) -> None:
    assert Settings().teams.allows_service_host(host) is ok


def test_extra_hosts_are_added_not_replacing() -> None:
    t = Settings(teams={"extra_service_url_hosts": ["127.0.0.1"]}).teams  # type: ignore[arg-type]
    assert t.allows_service_host("127.0.0.1") and t.allows_service_host("smba.trafficmanager.net")


def test_validate_activity_refuses_a_foreign_service_url() -> None:
    body = mention_message(EVIL, "status")
    status, reason, activity = validate_activity(json.dumps(body).encode(), "application/json",
                                                 Settings().teams.allows_service_host)
    assert status == 403 and activity is None and "evil.example" in reason


@pytest.fixture
async def srv(db: Database, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    ctx = await build_context(teams_settings(sqlite_url, runbooks_dir=write_runbooks(tmp_path)), db)
    async with serve(ctx) as s:
        yield s


async def test_a_foreign_service_url_is_refused_and_never_called(srv: Served, connector: FakeBotConnector) -> None:
    """The probe's finding: ``serviceUrl`` made the server POST to any URL, and a spoofed approver approved.

    The foreign host is a second fake connector reached as ``localhost`` (only ``127.0.0.1`` is allowed here)."""
    foreign = f"http://localhost:{connector.port}/"
    inc = await make_incident(srv.ctx.db)
    p = await make_proposal(srv.ctx.db, inc.id)
    status, body = await srv.post(invoke(foreign, "onwatch_approve", {"proposal_id": p.id}))
    assert status == 403 and body is not None and "not a Bot Framework host" in body["reason"]
    status, _ = await srv.post(mention_message(foreign, "help"))
    assert status == 403
    async with srv.ctx.db.session() as s:
        assert (await s.exec(select(ConversationRef))).all() == []
        assert [a.action for a in (await s.exec(select(AuditEvent))).all() if "approv" in a.action] == []
    assert connector.calls == []
    status, _ = await srv.post(mention_message(connector.service_url, "help"))  # the allowed host still works
    assert status == 201 and len(connector.of_kind("reply")) == 1


async def test_a_stored_reference_to_a_foreign_host_is_not_called(ctx: AppContext) -> None:
    settings = teams_settings(ctx.settings.database.url or "")
    adapter = TeamsAdapter(ctx.db, settings.teams, build_cloud_adapter(settings.teams))
    ref = {"serviceUrl": EVIL, "channelId": "msteams", "conversation": {"id": "c"}, "bot": {"id": "b"}}
    with pytest.raises(TeamsDeliveryError, match="not a Bot Framework host"):
        await adapter.send(ref, "c", Activity(type="message"))
