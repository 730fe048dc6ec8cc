"""Teams activities delivered twice (the same activity id) act once: on one replica, on another replica over
the same database, and after a restart — through the real botbuilder ``CloudAdapter`` on the onwatch app."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from sqlmodel import select

from bot.app import build_context
from bot.chat.teams.replays import REPLAY_NOTICE
from bot.context import AppContext
from bot.store.db import Database
from bot.store.models import Approval, AuditEvent, Incident, Job
from tests.fakes.bot_connector import FakeBotConnector
from tests.teams_fixtures import (
    STRANGER_AAD,
    Served,
    invoke,
    make_incident,
    make_proposal,
    mention_message,
    serve,
    teams_settings,
    user,
    write_runbooks,
)


async def replicas(stack: AsyncExitStack, url: str, runbooks: Path, n: int) -> list[Served]:
    """``n`` onwatch processes, each with its own engine, context and server, over one database."""
    out = []
    for _ in range(n):
        db = Database(url)
        stack.push_async_callback(db.dispose)
        ctx: AppContext = await build_context(teams_settings(url, runbooks_dir=runbooks), db)
        out.append(await stack.enter_async_context(serve(ctx)))
    return out


async def rows(db: Database, model: Any) -> list[Any]:
    async with db.session() as s:
        return list((await s.exec(select(model))).all())


async def test_a_replayed_approve_runs_nothing_twice_on_any_replica(anydb: Database, connector: FakeBotConnector,
                                                                     tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        a, b = await replicas(stack, anydb.url, write_runbooks(tmp_path), 2)
        inc = await make_incident(a.ctx.db)
        p = await make_proposal(a.ctx.db, inc.id)
        act = invoke(connector.service_url, "onwatch_approve", {"proposal_id": p.id})
        status, first = await a.post(act)
        assert status == 200 and "Approved" in json.dumps(first["value"])
        for replica in (b, a):
            status, again = await replica.post(act)
            text = json.dumps(again["value"])
            assert status == 200 and REPLAY_NOTICE in text and "already approved" in text
        (restarted,) = await replicas(stack, anydb.url, write_runbooks(tmp_path), 1)
        status, again = await restarted.post(act)
        assert status == 200 and REPLAY_NOTICE in json.dumps(again["value"])
        assert len(await rows(anydb, Approval)) == 1
        assert len([j for j in await rows(anydb, Job) if j.kind == "execution"]) == 1
        decisions = [r.action for r in await rows(anydb, AuditEvent) if r.action.startswith("proposal.")]
        assert decisions == ["proposal.approved"]  # the replays never reached the decision


async def test_a_replayed_refused_click_is_refused_and_audited_once(db: Database, sqlite_url: str,
                                                                    connector: FakeBotConnector,
                                                                    tmp_path: Path) -> None:
    """Without the check every replay was decided again: a stranger's click wrote one refusal per delivery."""
    async with AsyncExitStack() as stack:
        (srv,) = await replicas(stack, sqlite_url, write_runbooks(tmp_path), 1)
        inc = await make_incident(db)
        p = await make_proposal(db, inc.id)
        act = invoke(connector.service_url, "onwatch_approve", {"proposal_id": p.id},
                     sender=user(STRANGER_AAD, "Mallory"))
        answers = [await srv.post(act) for _ in range(3)]
        assert all(status == 200 for status, _ in answers)
        assert "cannot decide" in json.dumps(answers[0][1]["value"])
        assert all(REPLAY_NOTICE in json.dumps(body["value"]) for _, body in answers[1:])
        refused = [r for r in await rows(db, AuditEvent) if r.action == "proposal.unauthorised"]
        assert len(refused) == 1
        other = dict(act, id="f:another-click")  # a new click (new activity id) is decided again
        status, body = await srv.post(other)
        assert status == 200 and "cannot decide" in json.dumps(body["value"])
        assert len([r for r in await rows(db, AuditEvent) if r.action == "proposal.unauthorised"]) == 2


async def test_a_replayed_message_runs_its_command_once(anydb: Database, connector: FakeBotConnector,
                                                        tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        a, b = await replicas(stack, anydb.url, write_runbooks(tmp_path), 2)
        msg = mention_message(connector.service_url, "investigate checkout is throwing 500s", id="1712000000001")
        statuses = [(await a.post(msg))[0], (await b.post(msg))[0], (await a.post(msg))[0]]
        assert statuses == [201, 201, 201]
        assert len(await rows(anydb, Incident)) == 1
        assert len(connector.of_kind("reply")) == 1  # one "Opened INC-…" answer, not three
        opened = [r for r in await rows(anydb, AuditEvent) if r.action == "incident.opened"]
        assert len(opened) == 1
