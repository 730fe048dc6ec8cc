"""The webhook endpoints over real HTTP: auth, limits, validation, dead letters, redelivery."""

from __future__ import annotations

import json

import pytest

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
    sign,
    triaged,
)

JSON = {"Content-Type": "application/json"}


async def test_alertmanager_opens_one_incident_and_redelivery_is_harmless(db):
    ctx = make_ctx(db)
    body = am_payload(am_alert("HighLatency", "checkout"), am_alert("HighErrorRate", "checkout"))
    async with client_for(ctx) as c:
        r = await c.post("/webhooks/alertmanager", json=body, headers=auth())
        assert r.status == 200, await r.text()  # triaged and committed before the answer, on every database
        first = await triaged(ctx, r)
        assert first["stored"] == 2 and len(first["opened"]) == 1
        r = await c.post("/webhooks/alertmanager", json=body, headers=auth())
        assert r.status == 200
        again = await triaged(ctx, r)
        assert again["duplicates"] == 2 and again["opened"] == [] and again["stored"] == 0
    incs = await incidents(db)
    assert len(incs) == 1
    inc = incs[0]
    assert inc.alert_count == 2 and inc.services == ["checkout"] and inc.source == "alertmanager"
    assert inc.title == "HighLatency on checkout (+1 alert)"
    rows = await alerts(db)
    assert len(rows) == 2 and all(a.duplicates == 1 for a in rows)
    assert all(a.fingerprint.startswith("alertmanager:h:") for a in rows)


async def test_hmac_signature_is_accepted(db):
    ctx = make_ctx(db)
    raw = json.dumps(am_payload(am_alert())).encode()
    async with client_for(ctx) as c:
        r = await c.post("/webhooks/alertmanager", data=raw, headers={"X-Onwatch-Signature": sign(raw), **JSON})
        assert r.status == 200
        r = await c.post("/webhooks/alertmanager", data=raw, headers={"X-Onwatch-Signature": sign(raw, "wrong"), **JSON})
        assert r.status == 401 and "does not match" in (await r.json())["error"]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [({}, "missing credentials"), ({"Authorization": "Bearer nope"}, "not valid"),
     ({"Authorization": f"Basic {TOKEN}"}, "not valid")],
)
async def test_auth_failures_are_401_and_dead_lettered(db, headers, reason):
    ctx = make_ctx(db)
    async with client_for(ctx) as c:
        r = await c.post("/webhooks/grafana", data=b'{"x": 1}' + b" " * 10000, headers=headers)
        assert r.status == 401
        assert reason in (await r.json())["error"]
    dl = await dead_letters(db)
    assert len(dl) == 1 and dl[0].source == "grafana" and reason in dl[0].reason
    assert len(dl[0].body) == 4096  # capped for unauthenticated callers
    assert "Authorization" not in dl[0].headers
    assert await alerts(db) == []


async def test_no_credentials_configured_refuses(db):
    ctx = make_ctx(db)
    ctx.settings.webhooks.token = None
    ctx.settings.webhooks.hmac_secret = None
    async with client_for(ctx) as c:
        r = await c.post("/webhooks/generic", json={"alerts": [{"name": "x"}]}, headers=auth())
        assert r.status == 401 and "not configured" in (await r.json())["error"]


async def test_oversized_body_is_413_while_reading(db):
    ctx = make_ctx(db)
    big = b'{"alerts": [' + b" " * 70000 + b"]}"

    async def chunks():
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    async with client_for(ctx) as c:
        r = await c.post("/webhooks/generic", data=big, headers=auth())
        assert r.status == 413
        r = await c.post("/webhooks/generic", data=chunks(), headers=auth())  # chunked: no Content-Length
        assert r.status == 413 and "limit" in (await r.json())["error"]
    dl = await dead_letters(db)
    assert len(dl) == 2 and all("exceeds" in d.reason for d in dl)
    assert len(dl[1].body) > 65536  # what was read before refusing is kept


@pytest.mark.parametrize(
    ("path", "body", "status", "reason"),
    [
        ("/webhooks/alertmanager", b"not json", 400, "not valid JSON"),
        ("/webhooks/alertmanager", b"", 400, "empty body"),
        ("/webhooks/alertmanager", b"[1,2]", 422, "expected a JSON object"),
        ("/webhooks/alertmanager", b'{"version": "3", "status": "firing", "alerts": []}', 422, "version"),
        ("/webhooks/grafana", b'{"status": "firing", "alerts": [{"status": "weird"}]}', 422, "alerts.0.status"),
        ("/webhooks/generic", b'{"alerts": [{"name": "x", "sevrity": "high"}]}', 422, "sevrity"),
        ("/webhooks/generic", b'{"alerts": [{"name": "x\\u0000y"}]}', 422, "NUL"),
        ("/webhooks/generic", b'{"alerts": [{"name": "\\ud800"}]}', 400, "not valid JSON"),  # lone surrogate
        ("/webhooks/generic", b'{"alerts": [{"name": "x", "starts_at": "yesterday"}]}', 422, "RFC 3339"),
        ("/webhooks/generic", b"\xff\xfe\x00garbage", 400, ""),
        ("/webhooks/generic", b"[" * 100000 + b"]" * 100000, 413, "limit"),
    ],
)
async def test_bad_payloads_are_4xx_with_reason_and_dead_lettered(db, path, body, status, reason):
    ctx = make_ctx(db)
    async with client_for(ctx) as c:
        r = await c.post(path, data=body, headers=auth())
        assert r.status == status, await r.text()
        err = (await r.json())["error"]
        assert reason in err
    dl = await dead_letters(db)
    assert len(dl) == 1 and dl[0].reason == err
    assert dl[0].body == body[: len(dl[0].body)]


async def test_grafana_and_generic_shapes(db):
    ctx = make_ctx(db)
    grafana = {
        "receiver": "onwatch", "status": "firing", "orgId": 1, "version": "1", "state": "alerting",
        "title": "[FIRING:1] CPUHigh", "message": "...", "groupKey": "{}", "externalURL": "http://grafana:3000/",
        "alerts": [{
            "status": "firing", "labels": {"alertname": "CPUHigh", "service": "payments", "grafana_folder": "Infra"},
            "annotations": {"summary": "CPU high"}, "startsAt": "2024-05-01T10:00:00+02:00",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://grafana:3000/alerting/grafana/abc/view",
            "fingerprint": "57c6d9296de2ad39", "silenceURL": "http://g/s", "dashboardURL": "http://g/d",
            "panelURL": "", "values": {"B": 0.93, "C": 1}, "valueString": "[ var='B' value=0.93 ]",
        }],
    }
    generic = {"source": "ci-checks", "alerts": [{"name": "DiskFull", "service": "db", "severity": "P1",
                                                  "summary": "disk 99%", "starts_at": 1714557600}]}
    async with client_for(ctx) as c:
        r = await c.post("/webhooks/grafana", json=grafana, headers=auth())
        assert r.status == 200, await r.text()
        r = await c.post("/webhooks/generic", json=generic, headers=auth())
        assert r.status == 200, await r.text()
    rows = {a.source: a for a in await alerts(db)}
    g = rows["grafana"]
    assert g.fingerprint == "grafana:57c6d9296de2ad39" and g.service == "payments"
    assert g.starts_at == 1714550400.0 and g.annotations["dashboard_url"] == "http://g/d"
    gen = rows["generic"]
    assert gen.severity == "critical" and gen.service == "db" and gen.annotations["summary"] == "disk 99%"
    assert gen.labels["sender"] == "ci-checks" and gen.starts_at == 1714557600
    assert len(await incidents(db)) == 2


async def test_storage_failure_is_503_not_500(db, tmp_path):
    """A failed commit is a 503 and nothing of the batch is kept: the sender retries."""
    from bot.store.db import Database

    ctx = make_ctx(db)
    unmigrated = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    ctx.triage.db = unmigrated
    try:
        async with client_for(ctx) as c:
            r = await c.post("/webhooks/alertmanager", json=am_payload(am_alert()), headers=auth())
            assert r.status == 503 and "retry" in (await r.json())["error"]
    finally:
        await unmigrated.dispose()
    assert await alerts(db) == [] and await dead_letters(db) == []
