"""The shared HTTP helper: deadlines, size caps, retries honouring Retry-After, auth, typed errors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.errors import ConfigError
from integrations.base import (
    SourceBadResponse,
    SourceRejected,
    SourceTimeout,
    SourceTooLarge,
    SourceUnavailable,
    call_tool,
)
from integrations.http import HttpConfig, HttpSource, config_from_settings, retry_after_s
from integrations.settings import LogSourceSettings, MetricsSourceSettings
from tests.fakes import FAULTS, REQUESTS, Fault, new_app
from tests.integrations_fixtures import free_port, serve


def _app() -> web.Application:
    app = new_app()
    inflight = {"now": 0, "max": 0}

    async def ok(request: web.Request) -> web.Response:
        inflight["now"] += 1
        inflight["max"] = max(inflight["max"], inflight["now"])
        await asyncio.sleep(float(request.query.get("sleep", "0")))
        inflight["now"] -= 1
        return web.json_response({"ok": True, "max": inflight["max"]})

    app.router.add_get("/ok", ok)
    return app


def _client(url: str, **kw: object) -> HttpSource:
    cfg = HttpConfig(base_url=url, **{"timeout_s": 2.0, "retries": 2, "backoff_s": 0.01, **kw})  # type: ignore[arg-type]
    return HttpSource("fake", cfg)


async def test_ok_and_auth_headers() -> None:
    app = _app()
    async with serve(app) as url:
        c = HttpSource("fake", HttpConfig(base_url=url, bearer_token="s3cret", headers=(("X-Scope-OrgID", "t1"),)))
        assert (await c.get_json("/ok"))["ok"] is True
        await c.aclose()
        c = HttpSource("fake", HttpConfig(base_url=url, basic=("u", "p")))
        await c.get_json("/ok")
        await c.aclose()
    first, second = app[REQUESTS]
    assert first.headers["Authorization"] == "Bearer s3cret" and first.headers["X-Scope-OrgID"] == "t1"
    assert second.headers["Authorization"] == "Basic dTpw"


async def test_429_retry_after_is_honoured() -> None:
    app = _app()
    app[FAULTS].push(Fault("status", 429, retry_after="0.4"))
    async with serve(app) as url:
        c = _client(url)
        started = time.monotonic()
        assert (await c.get_json("/ok"))["ok"]
        assert time.monotonic() - started >= 0.4
        await c.aclose()
    assert len(app[REQUESTS]) == 2


async def test_retry_after_beyond_budget_fails_fast() -> None:
    app = _app()
    app[FAULTS].push(Fault("status", 429, retry_after="30"))
    async with serve(app) as url:
        c = _client(url, timeout_s=2.0)
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match="Retry-After 30 s exceeds the 2 s budget"):
            await c.get_json("/ok")
        assert time.monotonic() - started < 1
        await c.aclose()


async def test_500_retried_then_unavailable_and_4xx_not_retried() -> None:
    app = _app()
    app[FAULTS].push(*[Fault("status", 500)] * 3)
    async with serve(app) as url:
        c = _client(url, retries=2)
        with pytest.raises(SourceUnavailable, match="HTTP 500 from /ok: injected HTTP 500"):
            await c.get_json("/ok")
        assert len(app[REQUESTS]) == 3
        app[FAULTS].push(Fault("status", 400))
        with pytest.raises(SourceRejected, match="HTTP 400"):
            await c.get_json("/ok")
        assert len(app[REQUESTS]) == 4
        app[FAULTS].push(Fault("status", 503), Fault("status", 502))
        assert (await c.get_json("/ok"))["ok"]  # two failures, then success within the retries
        await c.aclose()


async def test_timeout_is_typed_and_named() -> None:
    app = _app()
    app[FAULTS].push(Fault("delay", delay_s=3))
    async with serve(app) as url:
        c = _client(url, timeout_s=0.3)
        with pytest.raises(SourceTimeout, match=r"^fake: timed out after 0.3 s$"):
            await c.get_json("/ok")
        app[FAULTS].push(Fault("delay", delay_s=3))
        res = await call_tool("fake", "GET /ok", c.get_json("/ok"), timeout_s=5)
        assert res.status == "timeout" and res.error == "fake: timed out after 0.3 s" and res.data is None
        await c.aclose()


async def test_truncated_json_and_cut_body() -> None:
    app = _app()
    app[FAULTS].push(Fault("truncated"))
    async with serve(app) as url:
        c = _client(url, retries=0)
        with pytest.raises(SourceBadResponse, match="not valid JSON"):
            await c.get_json("/ok")
        app[FAULTS].push(Fault("cut"))
        with pytest.raises(SourceBadResponse, match="cut short"):
            await c.get_json("/ok")
        await c.aclose()


async def test_size_cap_streaming_and_declared() -> None:
    app = _app()
    app[FAULTS].push(Fault("huge", size=50_000_000))
    async with serve(app) as url:
        c = _client(url, max_bytes=100_000)
        started = time.monotonic()
        with pytest.raises(SourceTooLarge, match="exceeds the 100000 byte cap"):
            await c.get_json("/ok")
        assert time.monotonic() - started < 2  # stopped early, not after reading 50 MB
        app[FAULTS].push(Fault("huge_declared", size=300_000))
        with pytest.raises(SourceTooLarge, match="answer of 30000[0-9] bytes"):
            await c.get_json("/ok")
        await c.aclose()


async def test_connection_refused_is_unavailable() -> None:
    c = _client(f"http://127.0.0.1:{free_port()}", retries=1)
    with pytest.raises(SourceUnavailable, match="cannot reach"):
        await c.get_json("/ok")
    await c.aclose()


async def test_concurrency_is_bounded() -> None:
    app = _app()
    async with serve(app) as url:
        c = _client(url, concurrency=2)
        results = await asyncio.gather(*[c.get_json("/ok", {"sleep": "0.05"}) for _ in range(8)])
        assert max(r["max"] for r in results) == 2
        await c.aclose()


def test_retry_after_parsing() -> None:
    assert retry_after_s("3") == 3.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_config_from_settings_uses_the_settings_secrets(tmp_path: Path) -> None:
    s = MetricsSourceSettings(url="http://p:9090", bearer_token=SecretStr("abc"), tenant_id="team-a")
    cfg = config_from_settings(s, s.url, where="sources.metrics")
    assert cfg.bearer_token == "abc" and ("X-Scope-OrgID", "team-a") in cfg.headers and cfg.retries == 3
    ls = LogSourceSettings(url="http://l", basic_user="u", basic_password=SecretStr("pw"))
    assert config_from_settings(ls, ls.url, where="sources.logs").basic == ("u", "pw")
    ls = LogSourceSettings(url="http://l", basic_user="u", basic_password=SecretStr("pw"), ca_file=tmp_path / "no.pem")
    with pytest.raises(ConfigError, match="does not exist"):
        config_from_settings(ls, ls.url, where="sources.logs")
    with pytest.raises(ValueError, match="either bearer_token or basic_user"):
        LogSourceSettings(url="http://l", basic_user="u", bearer_token=SecretStr("X"))
    with pytest.raises(ValueError, match="bearer_token_env is no longer read"):
        LogSourceSettings.model_validate({"url": "http://l", "bearer_token_env": "X"})
