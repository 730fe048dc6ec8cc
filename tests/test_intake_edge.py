"""Issue 17 at the intake edge: auth before the body, bounded dead letters, long fields, NUL in the change
webhook, slow and vanished clients, JSON content types only; and the one RFC 3339 parser."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot import change_webhook
from bot.app import context_for
from bot.intake import routes
from bot.rfc3339 import parse_rfc3339
from bot.store.db import Database
from bot.triage.service import TriageService
from bot.web import create_app
from tests.triage_fixtures import (
    TOKEN,
    alerts,
    am_alert,
    am_payload,
    auth,
    client_for,
    dead_letters,
    incidents,
    make_ctx,
    make_settings,
)

WRONG = {"Authorization": "Bearer wrong", "Content-Type": "application/json"}


async def test_an_unauthenticated_body_is_kept_to_4_kib_even_gzipped(db: Database) -> None:
    ctx = make_ctx(db)
    big = b"{\"alerts\": [" + b" " * 200_000 + b"]}"  # past webhooks.max_body_bytes: still 401, not 413
    async with client_for(ctx) as c:
        r = await c.post("/webhooks/alertmanager", data=big, headers=WRONG)
        assert r.status == 401
        r = await c.post("/webhooks/generic", data=gzip.compress(big),
                         headers={**WRONG, "Content-Encoding": "gzip"})
        assert r.status == 401
    dl = await dead_letters(db)
    assert len(dl) == 2 and all(len(d.body) <= 4096 for d in dl)


async def test_dead_letters_are_bounded_and_counted(db: Database) -> None:
    ctx = context_for(make_settings(db.url), db)
    ctx.settings.webhooks.dead_letter_max_rows = 10
    ctx.settings.webhooks.dead_letter_burst = 12
    ctx.settings.webhooks.dead_letter_rate_per_s = 0.001
    ctx.dead_letters = None  # rebuilt from the settings above
    ctx.triage = TriageService(ctx)
    async with client_for(ctx) as c:
        for i in range(15):
            r = await c.post("/webhooks/generic", data=f'{{"bad": {i}}}', headers=auth())
            assert r.status == 422
        metrics = await (await c.get("/metrics")).text()
    dl = await dead_letters(db)
    assert len(dl) == 10 and b'"bad": 11' in dl[-1].body  # the oldest went first; 12 stored, 3 over the rate
    assert 'onwatch_dead_letters_dropped_total{reason="rate"} 3.0' in metrics
    assert 'onwatch_dead_letters_dropped_total{reason="pruned"} 2.0' in metrics


async def test_api_messages_keeps_at_most_4_kib_of_an_unauthenticated_body(db: Database) -> None:
    from bot.deadletter import DeadLetters

    keeper = DeadLetters(db, make_ctx(db).metrics, make_settings(db.url).webhooks)
    await keeper.keep("teams", "bad activity", b"x" * 100_000, {})
    (row,) = await dead_letters(db)
    assert len(row.body) == 4096


async def test_one_long_field_never_costs_the_batch(anydb: Database) -> None:
    ctx = make_ctx(anydb)
    long_name, long_service = "A" * 300, "s" * 300
    batch = am_payload(am_alert(long_name, long_service), am_alert("HighLatency", "checkout"),
                       {**am_alert("Bad", "x"), "labels": {"alertname": "Bad", "v": "x" * 3000}},
                       am_alert("HighErrorRate", "payments"))
    async with client_for(ctx) as c:
        r = await c.post("/webhooks/alertmanager", json=batch, headers=auth())
        body = await r.json()
        assert r.status == 200, body
    assert body["stored"] == 3 and [x["index"] for x in body["refused"]] == [2]
    assert "alerts.2.labels" in body["refused"][0]["error"]
    titles = [i.title for i in await incidents(anydb)]
    assert any(t.startswith("A" * 300) and len(t) == 500 for t in titles)
    assert len(await alerts(anydb)) == 3
    (dead,) = await dead_letters(anydb)
    assert dead.source == "alertmanager" and json.loads(dead.body)["labels"]["alertname"] == "Bad"


async def test_nul_in_the_change_webhook_is_a_4xx_and_dead_lettered(anydb: Database) -> None:
    ctx = make_ctx(anydb)
    app = create_app(ctx, installers=[change_webhook.install])
    async with TestClient(TestServer(app)) as c:
        r = await c.post("/webhooks/change", data=b'{"service": "check\\u0000out", "version": "v1"}', headers=auth())
        assert r.status == 422 and "NUL" in await r.text()
    (dead,) = await dead_letters(anydb)
    assert dead.source == "change-webhook" and "NUL" in dead.reason


@pytest.mark.parametrize("path", ["/webhooks/alertmanager", "/webhooks/change"])
async def test_webhooks_take_json_content_types_only(db: Database, path: str) -> None:
    ctx = make_ctx(db)
    app = create_app(ctx, installers=[change_webhook.install, routes.install])
    async with TestClient(TestServer(app)) as c:
        raw = json.dumps(am_payload(am_alert())).encode()
        r = await c.post(path, data=raw, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"})
        assert r.status == 415 and "not JSON" in (await r.json())["error"]
        r = await c.post("/webhooks/alertmanager", data=raw,
                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/vnd.am+json"})
        assert r.status == 200
    await ctx.triage.aclose()


async def _raw(port: int, head: bytes, body: bytes, close: bool) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    await writer.drain()
    if close:
        writer.transport.abort()
        return b""
    data = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    return data


async def test_a_slow_body_is_408_and_a_vanished_client_one_log_line(db: Database, caplog) -> None:
    ctx = make_ctx(db)
    ctx.settings.webhooks.body_timeout_s = 0.5
    async with client_for(ctx) as c:
        port = c.server.port
        assert port is not None
        head = (f"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode()
        answer = await _raw(port, head, b'{"alerts": [', close=False)
        assert answer.startswith(b"HTTP/1.1 408")
        caplog.clear()
        logging.getLogger("bot.web").disabled = False  # alembic's fileConfig in the migration fixture disables it
        with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="bot"):
            await _raw(port, head, b'{"alerts": [', close=True)
            await asyncio.sleep(1.0)
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone) == 1 and gone[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info]  # no traceback anywhere
    assert any("not received within" in d.reason for d in await dead_letters(db))


def test_one_rfc3339_parser_refuses_a_time_without_a_zone() -> None:
    assert parse_rfc3339("2024-05-01T10:00:00Z") == 1714557600.0
    assert parse_rfc3339("2024-05-01T12:00:00+02:00") == 1714557600.0
    with pytest.raises(ValueError, match="with a zone"):
        parse_rfc3339("2024-05-01T10:00:00")


async def test_a_webhook_time_without_a_zone_is_refused_by_name(db: Database) -> None:
    ctx = make_ctx(db)
    async with client_for(ctx) as c:
        r = await c.post("/webhooks/generic", json={"alerts": [{"name": "x", "starts_at": "2024-05-01T10:00:00"}]},
                         headers=auth())
        assert r.status == 422 and "alerts.0.starts_at" in (await r.json())["error"]
