"""The Slack adapter as a good citizen: one root per incident, coalesced edits, files, 429s, failures."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from sqlmodel import select

from bot.chat.hub import ChatHub, card_for
from bot.chat.slack.adapter import SlackAdapter
from bot.messages.model import EvidenceItem, Message, Text
from bot.ports import ThreadOrigin
from bot.store.models import ChatThread, Incident
from tests.fakes.slack_api import FakeSlack
from tests.slack_fixtures import (
    ALERT_CHANNEL,
    INCIDENT_CHANNEL,
    REPORT,
    T0,
    make_incident,
    make_investigation,
    slack_settings,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        yield f


@pytest.fixture
async def hub(fake: FakeSlack, sqlite_url: str, db: Any) -> AsyncIterator[tuple[ChatHub, SlackAdapter]]:
    adapter = SlackAdapter(slack_settings(sqlite_url, fake.api_url), db, debounce_s=0.1)
    yield ChatHub(db, [adapter]), adapter
    await adapter.aclose()


async def set_phase(db: Any, incident_id: str, phase: str) -> None:
    async with db.begin() as s:
        row = await s.get(Incident, incident_id)
        assert row is not None
        row.phase = phase


async def test_one_root_per_incident_in_the_incident_channel(hub, fake, db):
    h, adapter = hub
    inc = await make_incident(db)
    await h.incident_opened(inc.id)
    await h.incident_opened(inc.id)  # announced twice (e.g. a second replica): still one root
    await adapter.flush()
    roots = fake.messages[INCIDENT_CHANNEL]
    assert len(roots) == 1 and "thread_ts" not in roots[0]
    async with db.session() as s:
        th = (await s.exec(select(ChatThread))).one()
    assert th.channel == INCIDENT_CHANNEL and th.thread_id == th.root_message_id == roots[0]["ts"]
    flat = str(roots[0]["blocks"])
    assert inc.id in flat and "critical" in flat and "checkout" in flat and "team-shop" in flat


async def test_alert_born_incident_is_answered_in_the_alert_thread(hub, fake, db):
    h, adapter = hub
    alert = fake.add_message(ALERT_CHANNEL, "[FIRING] HighErrorRate checkout", bot_id="BALERTMANAGER")
    inc = await make_incident(db)
    await h.incident_opened(inc.id, ThreadOrigin("slack", ALERT_CHANNEL, alert["ts"]))
    card = fake.messages[ALERT_CHANNEL][1]
    assert card["thread_ts"] == alert["ts"] and fake.messages[INCIDENT_CHANNEL] == []
    assert await adapter.incident_for_thread(ALERT_CHANNEL, alert["ts"]) == inc.id
    # a mention in that thread finds the incident; the card is edited in place there
    await set_phase(db, inc.id, "cause_found")
    await h.incident_updated(inc.id)
    await adapter.flush()
    assert "Cause found" in str(fake.find(ALERT_CHANNEL, card["ts"])["blocks"])  # type: ignore[index]


async def test_rapid_card_edits_are_coalesced_latest_wins(hub, fake, db):
    h, adapter = hub
    adapter.debounce_s = 1.0
    inc = await make_incident(db)
    await h.incident_opened(inc.id)
    for phase in ("investigating", "cause_found", "awaiting_approval", "executing", "verified"):
        await adapter.update_card(replace(card_for(inc), phase=phase))
    await adapter.flush()
    updates = fake.calls_of("chat.update")
    assert len(updates) == 1
    assert "Fix verified" in str(fake.messages[INCIDENT_CHANNEL][0]["blocks"])


async def test_investigation_thread_has_steps_causes_evidence_and_a_chart(hub, fake, db):
    h, adapter = hub
    inc = await make_incident(db)
    report = copy.deepcopy(REPORT)
    report["chart"] = {"onset": T0 + 600, "series": [{"name": "checkout 5xx", "points": [[T0 + i * 60, i % 7] for i in range(30)]}]}
    inv = await make_investigation(db, inc.id, report)
    await h.incident_opened(inc.id)
    await h.investigation_finished(inc.id, inv.id)
    root = fake.messages[INCIDENT_CHANNEL][0]["ts"]
    replies = [m for m in fake.thread(INCIDENT_CHANNEL, root) if m["ts"] != root]
    texts = [str(m.get("blocks")) for m in replies]
    assert any("deploys in the window" in t for t in texts)  # the reasoning
    causes = next(t for t in texts if "Likely causes" in t)
    assert "82%" in causes and "sum(rate(" in causes and "prometheus.local" in causes
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in causes and "compare/v2.3.0...v2.3.1" in causes
    assert "&lt;!channel&gt;" in causes  # the log excerpt is quoted, never a ping
    files = [f for f in fake.files.values() if f["name"] == "onwatch-chart.png"]
    assert len(files) == 1 and files[0]["data"].startswith(b"\x89PNG")
    assert files[0]["shared"]["thread_ts"] == root and files[0]["shared"]["channel"] == INCIDENT_CHANNEL
    # the same report announced again edits instead of repeating itself
    n = len(fake.messages[INCIDENT_CHANNEL])
    await h.investigation_finished(inc.id, inv.id)
    await adapter.flush()
    assert len(fake.messages[INCIDENT_CHANNEL]) == n and len(fake.files) == 1


async def test_long_evidence_goes_to_a_file(hub, fake, db):
    h, _ = hub
    inc = await make_incident(db)
    await h.incident_opened(inc.id)
    excerpt = "\n".join(f"2024-01-01T10:{i % 60:02d} ERROR payment declined id={i}" for i in range(300))
    await h.post(inc.id, Message(blocks=(EvidenceItem("e7", "loki", "declines", excerpt=excerpt),), fallback="x"))
    f = next(f for f in fake.files.values() if f["name"] == "evidence-e7.txt")
    assert f["data"] == excerpt.encode()
    msg = fake.messages[INCIDENT_CHANNEL][1]
    assert "full text in evidence-e7.txt" in msg["blocks"][0]["text"]["text"]


async def test_429_is_retried_after_retry_after(hub, fake, db):
    h, adapter = hub
    inc = await make_incident(db)
    fake.inject("chat.postMessage", "429", "0", times=2)
    await h.incident_opened(inc.id)
    assert len(fake.calls_of("chat.postMessage")) == 3 and len(fake.messages[INCIDENT_CHANNEL]) == 1
    fake.inject("chat.update", "429", "1")
    await _set_phase(db, inc.id, "investigating")
    await h.incident_updated(inc.id)
    await adapter.flush()
    ups = fake.calls_of("chat.update")
    assert len(ups) == 2 and ups[1].at - ups[0].at >= 1.0  # waited Retry-After
    assert fake.messages[INCIDENT_CHANNEL][0].get("edited") == 1


async def test_an_unchanged_card_is_not_sent_again(hub, fake, db):
    h, adapter = hub
    inc = await make_incident(db)
    await h.incident_opened(inc.id)
    await h.incident_updated(inc.id)  # nothing changed since the announcement
    await adapter.flush()
    assert fake.calls_of("chat.update") == []
    await _set_phase(db, inc.id, "cause_found")
    await h.incident_updated(inc.id)
    await h.incident_updated(inc.id)
    await adapter.flush()
    assert len(fake.calls_of("chat.update")) == 1


async def _set_phase(db, incident_id: str, phase: str) -> None:
    from bot.store.models import Incident

    async with db.begin() as s:
        row = await s.get(Incident, incident_id)
        row.phase = phase
        s.add(row)


async def test_slack_errors_are_logged_not_raised(hub, fake, db, caplog):
    h, adapter = hub
    inc = await make_incident(db)
    fake.inject("chat.postMessage", "error", "channel_not_found")
    await h.incident_opened(inc.id)  # must not raise into triage
    assert adapter.failures == 1 and "channel_not_found" in caplog.text
    assert await adapter.thread_for(inc.id) is None
    await h.notify(inc.id, "hello")  # later posts announce the incident first
    th = await adapter.thread_for(inc.id)
    assert th is not None and fake.thread(INCIDENT_CHANNEL, th.thread_id)[-1]["text"] == "hello"


async def test_no_incident_channel_means_no_announcement(fake, sqlite_url, db, caplog):
    adapter = SlackAdapter(slack_settings(sqlite_url, fake.api_url, incident_channel=None), db)
    inc = await make_incident(db)
    await ChatHub(db, [adapter]).incident_opened(inc.id)
    assert fake.calls_of("chat.postMessage") == [] and "incident_channel is not set" in caplog.text


async def test_replace_unknown_key_posts_and_ephemeral_messages(hub, fake, db):
    h, adapter = hub
    inc = await make_incident(db)
    await h.incident_opened(inc.id)
    await h.replace(inc.id, "proposal:abc", Message(blocks=(Text("first"),), fallback="first", key="proposal:abc"))
    await h.replace(inc.id, "proposal:abc", Message(blocks=(Text("second"),), fallback="second", key="proposal:abc"))
    await adapter.flush()
    thread = fake.messages[INCIDENT_CHANNEL]
    assert len(thread) == 2 and thread[1]["text"] == "second"
    await h.post(inc.id, Message(blocks=(Text("psst"),), fallback="psst", ephemeral_to="UBOB"))
    assert fake.ephemerals[-1]["user"] == "UBOB" and len(fake.messages[INCIDENT_CHANNEL]) == 2
