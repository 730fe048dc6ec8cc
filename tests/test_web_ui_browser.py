"""A real headless Chromium (Debian's package) walks list → incident → audit → reports through the login form
and checks what a person sees: the text, the chart image drawn, times in ISO 8601, no console errors (a
Content-Security-Policy violation or a missing file is one). With ONWATCH_SCREENSHOTS=1 (``make screenshots``)
it saves one screenshot per page under docs/img/ for the README."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from aiohttp import web

from bot.app import context_for
from bot.config import Settings
from bot.store.db import Database
from bot.web import create_app
from bot.web_ui import views
from tests.browser import Browser, chromium_path
from tests.web_fixtures import HOSTILE, TOKEN, populate

ROOT = Path(__file__).resolve().parents[1]
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium package is not installed")


async def test_chromium_walks_list_incident_audit(db: Database) -> None:
    ids = await populate(db)
    settings = Settings(database={"url": str(db.engine.url)}, web={"enabled": True, "viewer_token": TOKEN},  # type: ignore[arg-type]
                        reports={"timezone": "Europe/Berlin"})  # type: ignore[arg-type]
    runner = web.AppRunner(create_app(context_for(settings, db), installers=[views.install]))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    shots = ROOT / "docs" / "img" if os.environ.get("ONWATCH_SCREENSHOTS") else None
    b = Browser()
    try:
        await b.start()
        await b.goto(f"{base}/ui/")
        assert await b.eval("document.querySelector('input[name=token]') !== null")  # the login form
        if shots:
            await b.screenshot(shots / "web-login.png")
        await b.eval(f"document.querySelector('input[name=token]').value = {TOKEN!r}")
        await b.submit("form.login")
        text = await b.eval("document.body.innerText")
        assert "Incidents" in text and ids["full"] in text and ids["abstained"] in text
        assert HOSTILE in text  # the hostile title is shown as text, not run
        assert await b.eval("window.__xss === undefined && document.querySelectorAll('main script, main img').length === 0")
        times = await b.eval("Array.from(document.querySelectorAll('time')).map(t => t.textContent)")
        assert times and all(ISO.fullmatch(t) for t in times)
        if shots:
            await b.screenshot(shots / "web-incidents.png")

        await b.click_and_wait(f"a[href=\"/ui/incidents/{ids['full']}\"]")
        assert await b.eval("location.pathname") == f"/ui/incidents/{ids['full']}"
        text = await b.eval("document.body.innerText")
        for seen in ("Ranked causes", "checkout — deploy", "confidence 72%", "The model's reading",
                     "Roll back checkout", "Verification: recovered", "Timeline", "loki: timed out after 10 s"):
            assert seen in text, seen
        drawn = await b.eval("(() => { const i = document.querySelector('img.chart'); "
                             "return i && i.complete ? [i.naturalWidth, i.naturalHeight] : null })()")
        assert drawn and drawn[0] > 300 and drawn[1] > 100
        if shots:
            await b.screenshot(shots / "web-incident.png")

        await b.goto(f"{base}/ui/audit")
        text = await b.eval("document.body.innerText")
        assert "Chain intact: 6 rows" in text and "proposal.approved" in text and "Ana (slack)" in text
        if shots:
            await b.screenshot(shots / "web-audit.png")

        await b.goto(f"{base}/ui/reports")
        text = await b.eval("document.body.innerText")
        assert "Change fail rate: 100%" in text and "Pages per on-call shift" in text
        assert (await b.eval("document.querySelector('img.chart').naturalWidth")) > 300
        if shots:
            await b.screenshot(shots / "web-reports.png")
        assert b.errors == []
    finally:
        await b.close()
        await runner.cleanup()
