"""Hostile input against every HTTP endpoint of the one onwatch aiohttp app.

``/webhooks/{alertmanager,grafana,generic,change}``, ``/slack/events`` (signed and not), ``/api/messages``
and the GETs ``/healthz``, ``/readyz``, ``/metrics`` get hypothesis-made malformed JSON, wrong types, deep
nesting, huge strings, NUL bytes, invalid UTF-8, oversized bodies, wrong content types, and replays of a
valid request. The properties (ARCHITECTURE.md invariant 6): never a 5xx; bad input is a 4xx with a
reason; a replayed valid request is harmless; for the webhooks and ``/api/messages`` every rejected
authenticated body is in the ``dead_letter`` table.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlmodel import col, select

from bot.app import build_context, web_app
from bot.config import Settings
from bot.context import AppContext
from bot.store.db import Database
from bot.store.models import Approval, AuditEvent, ChangeRecord, DeadLetter, Incident, Job, Proposal
from tests.fakes.bot_connector import FakeBotConnector
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack, action_body, event_body, sign
from tests.teams_fixtures import APPROVER_AAD, CHANNEL, ROOT, activity, invoke, make_incident, make_proposal
from tests.triage_fixtures import triaged

TOKEN = "hostile-webhook-token"
HMAC_SECRET = "hostile-hmac-secret"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ALERT_CHANNEL = "CALERTS"
RUNBOOK = "webhook-argocd-rollback"  # an http runbook of the shipped catalog, approved by sre-oncall
MAX_BODY = 16_384
UNAUTHENTICATED_CAP = 4096
TEAMS_MAX_BODY = 1_048_576  # /api/messages keeps the app's own cap: max(webhooks.max_body_bytes, 1 MiB)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
WEBHOOKS = ("/webhooks/alertmanager", "/webhooks/grafana", "/webhooks/generic", "/webhooks/change")
DEAD_SOURCE = {"/webhooks/alertmanager": "alertmanager", "/webhooks/grafana": "grafana",
               "/webhooks/generic": "generic", "/webhooks/change": "change-webhook", "/api/messages": "teams"}
FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def valid_bodies(service_url: str = "http://127.0.0.1:9/") -> dict[str, dict[str, Any]]:
    labels = {"alertname": "HighErrors", "service": "checkout", "severity": "critical"}
    am_alert = {"status": "firing", "labels": labels, "annotations": {"summary": "5xx up"},
                "startsAt": "2024-05-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
                "fingerprint": "0123456789abcdef"}
    return {
        "/webhooks/alertmanager": {"version": "4", "status": "firing", "receiver": "onwatch", "groupKey": "g",
                                   "groupLabels": {}, "commonLabels": labels, "commonAnnotations": {},
                                   "externalURL": "", "truncatedAlerts": 0, "alerts": [am_alert]},
        "/webhooks/grafana": {"receiver": "onwatch", "status": "firing", "orgId": 1, "title": "t", "state": "alerting",
                              "message": "m", "alerts": [dict(am_alert, fingerprint="fedcba9876543210",
                                                              valueString="[ var='A' value=1 ]")]},
        "/webhooks/generic": {"source": "ci", "alerts": [{"name": "DiskFull", "service": "db", "severity": "warning",
                                                          "summary": "disk 95%"}]},
        "/webhooks/change": {"service": "checkout", "version": "v2.3.1", "kind": "deploy",
                             "time": time.time() - 60, "description": "deploy", "url": "https://git.example/pr/1"},
        "/api/messages": activity("message", service_url, text="help", deliveryMode="expectReplies"),
    }


# ----------------------------------------------------------------- strategies

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=12), kids, max_size=4), max_leaves=20)
nasty_text = st.sampled_from(["\x00", "a\x00b", "\u202e", "\ud7ff", "\ufeff", "<!channel>", "' OR 1=1 --",
                              "${jndi:ldap://x}", "{{7*7}}", "\n\r\t", "𝕏" * 50, "x" * 5000])


def auth(path: str) -> dict[str, str]:
    """The credentials a path takes: the webhook bearer token; none for /api/messages in anonymous mode
    (a bearer token that is not a Bot Framework JWT is refused there with 401, before anything is stored)."""
    return {} if path == "/api/messages" else dict(AUTH)


def slack_signed(body: bytes, ts: int | None = None) -> dict[str, str]:
    """Slack's signature headers over the raw bytes (``sign`` in the fake takes text only)."""
    stamp = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(SIGNING_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={mac}"}


def encode(v: Any) -> bytes:
    return json.dumps(v).encode()


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def deep_obj(n: int) -> bytes:
    return b'{"a":' * n + b"1" + b"}" * n


hostile_bodies = st.one_of(
    json_values.map(encode),                                               # well-formed JSON of any shape
    st.binary(max_size=300),                                               # any bytes
    st.binary(max_size=60).map(lambda b: b'{"alerts": "' + b + b'"}'),     # invalid UTF-8 / control bytes inside
    st.sampled_from([b"", b" ", b"null", b"{", b'{"a":}', b"\xff\xfe", b"\x00" * 32, b"NaN", b"1e999999",
                     b'{"a": "\\ud800"}', b'"\\u0000"', deep(50_000)[:MAX_BODY - 10], deep(2000),
                     deep_obj(3000), b"[" * 5000]),
    nasty_text.map(lambda t: encode({"alerts": [{"name": t, "labels": {t[:10] or "k": t}}]})),
)


def mutated(path: str) -> st.SearchStrategy[bytes]:
    """A valid body with one field, anywhere in it, replaced by a value of the wrong type or a nasty string."""

    def paths(v: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = [prefix] if prefix else []
        if isinstance(v, dict):
            for k, x in v.items():
                out += paths(x, (*prefix, k))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                out += paths(x, (*prefix, i))
        return out

    base = valid_bodies()[path]

    def put(where: tuple[Any, ...], value: Any) -> bytes:
        doc = json.loads(json.dumps(base))
        node = doc
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = value
        return encode(doc)

    return st.builds(put, st.sampled_from(paths(base)), json_values | nasty_text)


# ----------------------------------------------------------------- the app


@dataclass
class Env:
    ctx: AppContext
    client: TestClient
    slack: FakeSlack
    connector: FakeBotConnector

    async def dead(self) -> list[DeadLetter]:
        async with self.ctx.db.session() as s:
            return list((await s.exec(select(DeadLetter).order_by(col(DeadLetter.id)))).all())

    async def count(self, model: Any) -> int:
        async with self.ctx.db.session() as s:
            return int((await s.exec(select(func.count()).select_from(model))).one())


def hostile_settings(sqlite_url: str, api_url: str) -> Settings:
    return Settings(  # type: ignore[arg-type]
        database={"url": sqlite_url},
        runbooks={"dir": ROOT / "runbooks"},
        webhooks={"token": TOKEN, "hmac_secret": HMAC_SECRET, "max_body_bytes": MAX_BODY},
        slack={"bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET, "api_url": api_url,
               "incident_channel": "CINCIDENTS", "alert_channels": [ALERT_CHANNEL]},
        teams={"enabled": True, "channel": CHANNEL, "extra_service_url_hosts": ["127.0.0.1"]},
        approvals={"groups": {"sre-oncall": ["slack:UALICE", f"teams:{APPROVER_AAD}"]}},
    )


@pytest.fixture
async def env(db: Database, sqlite_url: str) -> AsyncIterator[Env]:
    async with FakeSlack() as slack, FakeBotConnector() as connector:
        slack.add_user("UALICE", "alice")
        ctx = await build_context(hostile_settings(sqlite_url, slack.api_url), db)
        client = TestClient(TestServer(web_app(ctx)))
        await client.start_server()
        try:
            yield Env(ctx, client, slack, connector)
        finally:
            await client.close()
            if ctx.remediation is not None:
                await ctx.remediation.aclose()
            if ctx.triage is not None:
                await ctx.triage.aclose()


async def answer(resp: ClientResponse) -> tuple[int, Any]:
    text = await resp.text()
    try:
        return resp.status, json.loads(text) if text else None
    except ValueError:
        return resp.status, text


def reason_of(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("reason") or body.get("error") or "")
    return str(body or "")


async def check_rejected_or_accepted(env: Env, path: str, body: bytes, status: int, got: Any, dead_before: int) -> None:
    """The property for authenticated requests to the webhooks and /api/messages."""
    assert status < 500, (path, body[:200], status, got)
    dead = await env.dead()
    if 400 <= status < 500:
        assert reason_of(got), (path, status, got)  # a clear reason, not an empty 4xx
        assert len(dead) == dead_before + 1, (path, body[:200], status, got)
        row = dead[-1]
        assert row.source == DEAD_SOURCE[path]
        # /api/messages is refused before its Bot Framework token is checked: kept to 4 KiB, as unauthenticated
        whole = body if path != "/api/messages" else body[:UNAUTHENTICATED_CAP]
        assert row.body == body[: len(row.body)] and (row.body == whole or status == 413)
        assert row.reason and "Authorization" not in row.headers
    else:
        assert status in (200, 201, 202), (path, status, got)
        assert len(dead) == dead_before, (path, body[:200], status)


# ----------------------------------------------------------------- webhooks and /api/messages


@pytest.mark.parametrize("path", [*WEBHOOKS, "/api/messages"])
@FAST
@given(body=hostile_bodies)
async def test_hostile_bodies_get_a_4xx_reason_and_are_dead_lettered(env: Env, path: str, body: bytes) -> None:
    before = len(await env.dead())
    status, got = await answer(await env.client.post(path, data=body, headers={**auth(path), **JSON}))
    await check_rejected_or_accepted(env, path, body, status, got, before)


NASTY = [deep(20_000), deep_obj(5_000), b"[" * 15_000, b'{"a": "\\ud800"}', b'"\\u0000"', b"\xff\xfe{}", b"\x00" * 64,
         b"", b"null", b"1e999999", b'{"alerts": [' + b"1," * 5000 + b"1]}"]


@pytest.mark.parametrize("path", [*WEBHOOKS, "/api/messages"])
async def test_known_nasty_bodies(env: Env, path: str) -> None:
    for body in NASTY:
        before = len(await env.dead())
        status, got = await answer(await env.client.post(path, data=body, headers={**auth(path), **JSON}))
        assert 400 <= status < 500, (path, body[:40], status, got)
        await check_rejected_or_accepted(env, path, body, status, got, before)
    for body in NASTY:
        status, _ = await answer(await env.client.post("/slack/events", data=body,
                                                       headers={**slack_signed(body), **JSON}))
        assert 400 <= status < 500, (body[:40], status)


@pytest.mark.parametrize("path", [*WEBHOOKS, "/api/messages"])
@FAST
@given(data=st.data())
async def test_wrong_types_anywhere_in_a_valid_body(env: Env, path: str, data: st.DataObject) -> None:
    if path == "/api/messages":
        body = data.draw(st.builds(
            lambda k, v: encode(dict(valid_bodies(env.connector.service_url)[path], **{k: v})),
            st.sampled_from(["type", "serviceUrl", "channelId", "conversation", "from", "recipient", "name",
                             "text", "value", "entities", "channelData", "attachments"]),
            json_values | nasty_text))
    else:
        body = data.draw(mutated(path))
    before = len(await env.dead())
    status, got = await answer(await env.client.post(path, data=body, headers={**auth(path), **JSON}))
    await check_rejected_or_accepted(env, path, body, status, got, before)


@pytest.mark.parametrize("path,limit", [*((p, MAX_BODY) for p in WEBHOOKS), ("/api/messages", TEAMS_MAX_BODY)])
async def test_oversized_bodies_are_413_and_kept(env: Env, path: str, limit: int) -> None:
    body = b'{"pad": "' + b"x" * limit + b'"}'
    before = len(await env.dead())
    status, got = await answer(await env.client.post(path, data=body, headers={**auth(path), **JSON}))
    assert status == 413 and "limit" in reason_of(got)
    await check_rejected_or_accepted(env, path, body, status, got, before)

    # the same without a Content-Length (chunked): refused while reading, not after
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    status, got = await answer(await env.client.post(path, data=chunks(), headers={**auth(path), **JSON}))
    assert status == 413 and "limit" in reason_of(got)
    assert len(await env.dead()) == before + 2


@pytest.mark.parametrize("path", [*WEBHOOKS, "/api/messages"])
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                   "application/xml", ""])
async def test_wrong_content_type_with_a_bad_body(env: Env, path: str, ctype: str) -> None:
    body = b"<alert><name>x</name></alert>"
    before = len(await env.dead())
    headers = {**auth(path), "Content-Type": ctype} if ctype else auth(path)
    status, got = await answer(await env.client.post(path, data=body, headers=headers))
    assert 400 <= status < 500
    await check_rejected_or_accepted(env, path, body, status, got, before)


@pytest.mark.parametrize("path", WEBHOOKS)
async def test_unauthenticated_webhooks_are_401(env: Env, path: str) -> None:
    body = encode(valid_bodies()[path])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + TOKEN},
                    {"X-Onwatch-Signature": "sha256=" + "0" * 64}, {"Authorization": "Bearer " + TOKEN + "x"}):
        status, got = await answer(await env.client.post(path, data=body, headers={**JSON, **headers}))
        assert status == 401 and reason_of(got), (path, headers, got)
    assert await env.count(Incident) == 0 and await env.count(ChangeRecord) == 0


# ----------------------------------------------------------------- Slack


@FAST
@given(body=hostile_bodies, form=st.booleans())
async def test_signed_hostile_slack_bodies_never_5xx(env: Env, body: bytes, form: bool) -> None:
    if form:
        body = b"payload=" + body
    headers = {**slack_signed(body), "Content-Type": "application/x-www-form-urlencoded" if form else "application/json"}
    status, got = await answer(await env.client.post("/slack/events", data=body, headers=headers))
    assert status < 500, (body[:200], status, got)


@FAST
@given(body=hostile_bodies)
async def test_unsigned_or_badly_signed_slack_requests_are_401(env: Env, body: bytes) -> None:
    stale = slack_signed(body, ts=int(time.time()) - 3600)
    for headers in ({}, {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64},
                    stale, {"X-Slack-Request-Timestamp": "not-a-number", "X-Slack-Signature": "v0=x"}):
        status, _ = await answer(await env.client.post("/slack/events", data=body, headers={**JSON, **headers}))
        assert status == 401, (headers, status)
    assert await env.count(Incident) == 0


# ----------------------------------------------------------------- the GETs


@FAST
@given(query=st.text(max_size=200), header=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                                                   max_size=200))
async def test_health_endpoints_shrug_off_hostile_queries(env: Env, query: str, header: str) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        resp = await env.client.get(path, params={"q": query, "x": query}, headers={"X-Hostile": header,
                                                                                    "Accept": header})
        assert resp.status == 200, (path, query, resp.status)
        await resp.read()


async def test_wrong_methods_and_paths_are_4xx(env: Env) -> None:
    for method, path in (("POST", "/healthz"), ("PUT", "/readyz"), ("DELETE", "/metrics"), ("GET", "/webhooks/generic"),
                         ("GET", "/slack/events"), ("GET", "/api/messages"), ("PATCH", "/webhooks/change"),
                         ("GET", "/webhooks/../../etc/passwd"), ("GET", "/%00"), ("POST", "/api/messages/x")):
        resp = await env.client.request(method, path, data=b"{}")
        assert 400 <= resp.status < 500, (method, path, resp.status)


# ----------------------------------------------------------------- replays of valid requests


async def test_replayed_alert_webhooks_open_one_incident(env: Env) -> None:
    for path in ("/webhooks/alertmanager", "/webhooks/generic"):
        body = encode(valid_bodies()[path])
        replies = [await env.client.post(path, data=body, headers={**AUTH, **JSON}) for _ in range(3)]
        assert [r.status for r in replies] == [200, 200, 200]  # triaged before the answer, on every database
        results = [(r.status, await triaged(env.ctx, r)) for r in replies]
        assert len(results[0][1]["incident_ids"]) == 1
        assert all(set(b["incident_ids"]) <= set(results[0][1]["incident_ids"]) for _, b in results[1:])
    assert await env.count(Incident) == 2  # checkout (alertmanager) and db (generic); replays added none
    assert not await env.dead()


async def test_replayed_change_webhook_records_one_change(env: Env) -> None:
    body = encode(valid_bodies()["/webhooks/change"])
    results = [await answer(await env.client.post("/webhooks/change", data=body, headers={**AUTH, **JSON}))
               for _ in range(3)]
    assert all(s == 202 for s, _ in results)
    assert len({b["id"] for _, b in results}) == 1
    assert await env.count(ChangeRecord) == 1


async def test_replayed_slack_event_and_click_act_once(env: Env) -> None:
    alert = env.slack.add_message(ALERT_CHANNEL, "", bot_id="BALERTMANAGER", username="Alertmanager", attachments=[{
        "color": "danger", "title": "[FIRING:1] HighLatency checkout (prod shop)", "text": "checkout is slow"}])
    event = {"type": "message", "channel": ALERT_CHANNEL, "ts": alert["ts"], "bot_id": "BALERTMANAGER",
             "subtype": "bot_message", "username": "Alertmanager", "text": "", "attachments": alert["attachments"]}
    raw = event_body(event, event_id="EvREPLAY1")
    for retry in ("", "1", "2"):
        headers = {**sign(SIGNING_SECRET, raw), **JSON, **({"X-Slack-Retry-Num": retry} if retry else {})}
        assert (await env.client.post("/slack/events", data=raw.encode(), headers=headers)).status == 200
    from tests.slack_fixtures import eventually

    await eventually(lambda: env.count(Incident))
    assert await env.count(Incident) == 1

    inc = await make_incident(env.ctx.db, title="replayed click")
    p = await make_proposal(env.ctx.db, inc.id, runbook_id=RUNBOOK, preview={"approvers": ["slack:UALICE"]})
    click = action_body("onwatch_approve", p.id, "UALICE", "CINCIDENTS", "1700000000.000100")
    headers = {**sign(SIGNING_SECRET, click), "Content-Type": "application/x-www-form-urlencoded"}
    for _ in range(3):
        assert (await env.client.post("/slack/events", data=click.encode(), headers=headers)).status == 200

    async def decided() -> bool:
        async with env.ctx.db.session() as s:
            row = await s.get(Proposal, p.id)
        return row is not None and row.status != "pending"

    await eventually(decided)
    await asyncio.sleep(0.3)  # time for a wrongly handled replay to answer
    assert env.slack.ephemerals == []  # the replays (same trigger id) are recognised and not handled at all
    await _one_decision(env, p.id)


async def test_replayed_teams_invoke_decides_once(env: Env) -> None:
    inc = await make_incident(env.ctx.db)
    p = await make_proposal(env.ctx.db, inc.id, runbook_id=RUNBOOK)
    act = invoke(env.connector.service_url, "onwatch_approve", {"proposal_id": p.id})
    texts = []
    for _ in range(3):
        status, got = await answer(await env.client.post("/api/messages", data=encode(act), headers=JSON))
        assert status == 200
        texts.append(json.dumps(got["value"]))
    assert "Approved" in texts[0] and all("already approved" in t for t in texts[1:])
    await _one_decision(env, p.id)
    assert not await env.dead()


async def _one_decision(env: Env, proposal_id: str) -> None:
    async with env.ctx.db.session() as s:
        approvals = (await s.exec(select(Approval).where(Approval.proposal_id == proposal_id))).all()
        audits = (await s.exec(select(AuditEvent).where(AuditEvent.action == "proposal.approved"))).all()
        jobs = (await s.exec(select(Job).where(Job.kind == "execution"))).all()
    assert len(approvals) == 1 and len(audits) == 1 and len(jobs) == 1
