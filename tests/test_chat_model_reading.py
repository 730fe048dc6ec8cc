"""The investigation's summary (the ranked causes message) shows the LLM investigator's accepted reading beside
the engine's leading cause, marked as the model's with the evidence it cites — on Slack (the real Web API
client against the fake Slack API) and on Teams (botbuilder's CloudAdapter against the fake Bot Connector) —
and nothing extra when the model was off, refused or failed."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bot.chat.compose import model_reading, status_message
from bot.chat.hub import ChatHub
from bot.chat.slack.adapter import SlackAdapter
from bot.chat.teams import refs
from bot.chat.teams.adapter import TeamsAdapter
from bot.chat.teams.connection import build_cloud_adapter
from bot.store.db import Database
from tests.fakes.bot_connector import FakeBotConnector
from tests.fakes.slack_api import FakeSlack
from tests.slack_fixtures import INCIDENT_CHANNEL, REPORT, make_incident, make_investigation, slack_settings
from tests.teams_fixtures import BOT_ID, BOT_NAME, CHANNEL, TENANT, teams_settings

MECHANISM = "the v2.3.1 cart total <!channel> dereferences a null discount for carts without a coupon"
MARK = "Model's reading (LLM investigator, not the engine's ranking)"


def with_llm(status: str) -> dict[str, Any]:
    report = copy.deepcopy(REPORT)
    answer = {"service": "checkout", "kind": "deploy_regression", "mechanism": MECHANISM, "evidence": ["t1", "e3"],
              "claims": [{"text": "the diff adds the dereference", "evidence": ["t2"]}], "next": ["read the diff"]}
    report["llm"] = {"status": status, "reason": "" if status == "accepted" else "cites evidence e999 that does not "
                     "exist", "answer": answer if status == "accepted" else None, "tool_calls": [], "tokens": {}}
    return report


def test_the_reading_is_one_line_marked_as_the_model_s() -> None:
    line = model_reading(with_llm("accepted"))
    assert line is not None and line.style == "muted"
    assert line.text == f"{MARK}: checkout deploy regression: {MECHANISM}, cites t1, e3, t2"
    for status in ("refused", "error", "off"):
        assert model_reading(with_llm(status)) is None
    assert model_reading(REPORT) is None  # no LLM configured


@pytest.mark.parametrize("status", ["accepted", "refused"])
async def test_the_status_answer_shows_the_reading_after_the_engine_s_causes(db: Database, status: str) -> None:
    inc = await make_incident(db)
    await make_investigation(db, inc.id, with_llm(status))
    msg = await status_message(db, inc.id)
    assert msg is not None
    texts = [getattr(b, "text", "") for b in msg.blocks]
    kinds = [type(b).__name__ for b in msg.blocks]
    if status == "accepted":
        (i,) = [k for k, t in enumerate(texts) if t.startswith(MARK)]
        assert "Cause" in kinds[:i] and "Cause" not in kinds[i:]  # after the ranking, never inside it
    else:
        assert not any(t.startswith(MARK) for t in texts)


async def _slack_causes(db: Database, sqlite_url: str, slack: FakeSlack, report: dict[str, Any]) -> str:
    adapter = SlackAdapter(slack_settings(sqlite_url, slack.api_url), db, debounce_s=0.05)
    hub = ChatHub(db, [adapter])
    inc = await make_incident(db)
    inv = await make_investigation(db, inc.id, report)
    await hub.incident_opened(inc.id)
    await hub.investigation_finished(inc.id, inv.id)
    await adapter.aclose()
    root = slack.messages[INCIDENT_CHANNEL][0]["ts"]
    return next(json.dumps(m["blocks"]) for m in slack.thread(INCIDENT_CHANNEL, root) if "Likely causes" in str(m))


async def test_slack_summary_shows_the_accepted_reading_beside_the_leading_cause(
        db: Database, sqlite_url: str, slack: FakeSlack) -> None:
    causes = await _slack_causes(db, sqlite_url, slack, with_llm("accepted"))
    assert MARK in causes and "cites t1, e3, t2" in causes
    assert "&lt;!channel&gt;" in causes and "<!channel>" not in causes  # the model's text is escaped
    # after the engine's first cause and its evidence, before the second cause: the ranking is the engine's
    assert causes.index("deploy regression") < causes.index(MARK) < causes.index("latency")
    assert causes.index("5xx rate up 40x") < causes.index(MARK)


@pytest.mark.parametrize("status", ["refused", "error"])
async def test_slack_summary_adds_nothing_when_the_model_was_refused_or_failed(
        db: Database, sqlite_url: str, slack: FakeSlack, status: str) -> None:
    causes = await _slack_causes(db, sqlite_url, slack, with_llm(status))
    assert "Model's reading" not in causes and "dereferences" not in causes
    assert "deploy regression" in causes


async def _teams_sends(db: Database, sqlite_url: str, connector: FakeBotConnector, report: dict[str, Any]) -> str:
    settings = teams_settings(sqlite_url)
    adapter = TeamsAdapter(db, settings.teams, build_cloud_adapter(settings.teams))
    hub = ChatHub(db, [adapter])
    await refs.save_reference(db, CHANNEL, {
        "serviceUrl": connector.service_url, "channelId": "msteams", "bot": {"id": BOT_ID, "name": BOT_NAME},
        "conversation": {"id": CHANNEL, "conversationType": "channel", "tenantId": TENANT}})
    inc = await make_incident(db)
    inv = await make_investigation(db, inc.id, report)
    await hub.incident_opened(inc.id)
    await hub.investigation_finished(inc.id, inv.id)
    sent = next(json.dumps(c.body) for c in connector.of_kind("send") if "Likely causes" in json.dumps(c.body))
    return sent.replace("\\\\", "")  # as Teams shows it: the Markdown escapes of outside text removed


async def test_teams_summary_shows_the_accepted_reading_beside_the_leading_cause(
        db: Database, sqlite_url: str, connector: FakeBotConnector) -> None:
    card = await _teams_sends(db, sqlite_url, connector, with_llm("accepted"))
    assert MARK in card and "cites t1, e3, t2" in card and "dereferences a null discount" in card
    assert card.index("deploy regression") < card.index(MARK) < card.index("latency")


async def test_teams_summary_adds_nothing_when_the_model_was_refused(
        db: Database, sqlite_url: str, connector: FakeBotConnector) -> None:
    card = await _teams_sends(db, sqlite_url, connector, with_llm("refused"))
    assert "Model's reading" not in card and "dereferences" not in card and "deploy regression" in card
