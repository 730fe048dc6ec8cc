"""The read-only web view: every page rendered against a populated database (SQLite and PostgreSQL), access
control in both modes, escaping, security headers, the audit chain check on the page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

from bot.app import context_for
from bot.config import Settings
from bot.messages.model import incident_page
from bot.store.db import Database
from bot.web import create_app
from bot.web_ui import views
from tests.web_fixtures import HOSTILE, TOKEN, populate

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _settings(db: Database, **web: object) -> Settings:
    return Settings(database={"url": str(db.engine.url)}, web=web)  # type: ignore[arg-type]


async def _client(db: Database, **web: object) -> TestClient:
    ctx = context_for(_settings(db, **web), db)
    client = TestClient(TestServer(create_app(ctx, installers=[views.install])))
    await client.start_server()
    return client


@pytest.fixture
async def populated(anydb: Database) -> AsyncIterator[tuple[Database, dict[str, str]]]:
    yield anydb, await populate(anydb)


async def test_every_page_renders_on_a_populated_database(populated: tuple[Database, dict[str, str]]) -> None:
    db, ids = populated
    c = await _client(db, enabled=True, viewer_token=TOKEN)
    try:
        r = await c.get("/ui/", headers=AUTH)
        body = await r.text()
        assert r.status == 200
        assert all(i in body for i in ids.values())
        assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00">', body)

        r = await c.get("/ui/?status=open&severity=warning", headers=AUTH)
        body = await r.text()
        assert ids["abstained"] in body and ids["full"] not in body
        r = await c.get("/ui/?service=frontend", headers=AUTH)
        assert ids["resolved"] in await r.text()

        r = await c.get(f"/ui/incidents/{ids['full']}", headers=AUTH)
        body = await r.text()
        assert r.status == 200
        for expected in ("Ranked causes", "checkout</strong> — deploy", "confidence 72%", "The model's reading",
                         "made checkout slow", "Roll back checkout", "Ana: approve", "Verification: <strong>recovered",
                         "https://grafana.example/d/abc", "latency_p99 of checkout moved from 0.1 to 2.5",
                         "chart.png", "loki: timed out after 10 s", "incident.acknowledged", "Ana at"):
            assert expected in body, expected
        # a javascript: link is shown as text, never as a link
        assert 'href="javascript:' not in body and "javascript:alert(1)" in body

        r = await c.get(f"/ui/incidents/{ids['abstained']}", headers=AUTH)
        body = await r.text()
        assert "Not enough evidence to name a cause. the leading causes are not clearly separated" in body
        assert "chart.png" not in body

        r = await c.get(f"/ui/incidents/{ids['full']}/chart.png", headers=AUTH)
        png = await r.read()
        assert r.status == 200 and png.startswith(b"\x89PNG")
        r = await c.get("/ui/incidents/INC-NOPE00", headers=AUTH)
        assert r.status == 404

        r = await c.get("/ui/audit", headers=AUTH)
        body = await r.text()
        assert r.status == 200 and "Chain intact: 6 rows" in body and "proposal.approved" in body
        r = await c.get(f"/ui/audit?incident={ids['abstained']}", headers=AUTH)
        assert (await r.text()).count('<tr id="row-') == 1
        r = await c.get("/ui/audit?action=proposal.&actor=Ana", headers=AUTH)
        assert (await r.text()).count('<tr id="row-') == 1
        r = await c.get("/ui/audit?since=not-a-date", headers=AUTH)
        assert r.status == 400

        r = await c.get("/ui/reports?days=7", headers=AUTH)
        body = await r.text()
        assert r.status == 200 and "Change fail rate: <strong>100%</strong>" in body
        r = await c.get("/ui/reports/chart.png?days=7", headers=AUTH)
        assert (await r.read()).startswith(b"\x89PNG")
        r = await c.get("/ui/reports?days=abc", headers=AUTH)
        assert r.status == 400
    finally:
        await c.close()


async def test_alert_text_with_html_is_shown_as_text(populated: tuple[Database, dict[str, str]]) -> None:
    db, ids = populated
    c = await _client(db, enabled=True, viewer_token=TOKEN)
    try:
        for path in ("/ui/", f"/ui/incidents/{ids['full']}", "/ui/audit"):
            body = await (await c.get(path, headers=AUTH)).text()
            assert HOSTILE not in body and "<img src=x" not in body
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in body, path
    finally:
        await c.close()


async def test_security_headers(db: Database) -> None:
    c = await _client(db, enabled=True, viewer_token=TOKEN)
    try:
        for path, headers in (("/ui/", AUTH), ("/ui/", {}), ("/ui/login", {})):
            r = await c.get(path, headers=headers)
            csp = r.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'none'" in csp
            assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        await c.close()


async def test_no_configuration_no_ui(db: Database) -> None:
    c = await _client(db)
    try:
        for path in ("/ui/", "/ui/audit", "/ui/login", "/ui/static/onwatch.css"):
            assert (await c.get(path, headers=AUTH)).status == 404
    finally:
        await c.close()


async def test_token_mode(db: Database) -> None:
    c = await _client(db, enabled=True, viewer_token=TOKEN)
    try:
        assert (await c.get("/ui/")).status == 401
        assert (await c.get("/ui/", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await c.get("/ui/", headers={"Authorization": f"Basic {TOKEN}"})).status == 401
        r = await c.get("/ui/audit?x=1", headers={"Accept": "text/html"}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/ui/login?next=")
        r = await c.get(r.headers["Location"])
        assert r.status == 200 and 'name="token"' in await r.text() and 'value="/ui/audit?x=1"' in await r.text()
        # the proxy header means nothing without trusted proxies
        assert (await c.get("/ui/", headers={"X-Forwarded-Email": "ana@acme.com"})).status == 401
        r = await c.post("/ui/login", data={"token": "wrong", "next": "/ui/audit"}, allow_redirects=False)
        assert r.status == 401 and "set-cookie" not in {k.lower() for k in r.headers}
        r = await c.post("/ui/login", data={"token": TOKEN, "next": "https://evil.example/"}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/ui/"
        cookie = r.cookies["onwatch_view"]
        assert TOKEN not in cookie.value and cookie["httponly"]
        assert (await c.get("/ui/audit")).status == 200  # the session cookie is in the client's jar
        c.session.cookie_jar.clear()
        c.session.cookie_jar.update_cookies({"onwatch_view": "9999999999.forged"})
        assert (await c.get("/ui/audit")).status == 401
    finally:
        await c.close()


async def test_proxy_mode(db: Database) -> None:
    # the test client connects from 127.0.0.1
    c = await _client(db, enabled=True, trusted_proxies=["127.0.0.0/8"], allow=["ana@acme.com", "group:sre"])
    try:
        assert (await c.get("/ui/", headers={"X-Forwarded-Email": "ana@acme.com"})).status == 200
        assert (await c.get("/ui/", headers={"X-Forwarded-Email": "bo@acme.com",
                                             "X-Forwarded-Groups": "dev, sre"})).status == 200
        assert (await c.get("/ui/", headers={"X-Forwarded-Email": "eve@acme.com"})).status == 403
        assert (await c.get("/ui/")).status == 401
    finally:
        await c.close()
    c = await _client(db, enabled=True, trusted_proxies=["10.9.9.9/32"], allow=["ana@acme.com"])
    try:  # the header from an address that is not the proxy is refused
        assert (await c.get("/ui/", headers={"X-Forwarded-Email": "ana@acme.com"})).status == 403
        assert (await c.get("/ui/")).status == 403
    finally:
        await c.close()


async def test_audit_page_names_the_first_bad_row(db: Database) -> None:
    await populate(db)
    async with db.engine.begin() as conn:  # what an attacker with the file could do: drop the guard, edit a row
        await conn.execute(text("DROP TRIGGER audit_event_no_update"))
        await conn.execute(text("UPDATE audit_event SET result = 'nothing happened' WHERE seq = 4"))
    c = await _client(db, enabled=True, viewer_token=TOKEN)
    try:
        body = await (await c.get("/ui/audit", headers=AUTH)).text()
        assert 'Chain BROKEN at row <a href="#row-4">#4</a>' in body and '<tr id="row-4" class="bad">' in body
    finally:
        await c.close()


def test_settings_refuse_an_unusable_web_section() -> None:
    with pytest.raises(ValueError, match="neither web.viewer_token"):
        Settings(web={"enabled": True})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="web.allow is empty"):
        Settings(web={"enabled": True, "trusted_proxies": ["10.0.0.1"]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an address"):
        Settings(web={"enabled": True, "trusted_proxies": ["proxy.local"], "allow": ["a"]})  # type: ignore[arg-type]
    assert incident_page("https://onwatch.acme/", "INC-1") == "https://onwatch.acme/ui/incidents/INC-1"
    assert incident_page(None, "INC-1") == ""
