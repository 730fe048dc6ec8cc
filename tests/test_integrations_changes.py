"""Change sources: GitHub, Argo CD (fake servers) and the change webhook (real aiohttp app + SQLite)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from bot.app import context_for, web_app
from bot.config import Settings
from bot.store.db import Database
from bot.store.models import AuditEvent, ChangeRecord, DeadLetter
from integrations.argocd import ArgoCDChanges
from integrations.base import SourceRejected, SourceUnavailable, TimeWindow
from integrations.change_webhook import WebhookChangeSource
from integrations.github import GitHubChanges
from integrations.http import HttpConfig, HttpSource
from tests.fakes import FAULTS, Fault
from tests.fakes import argocd as fake_argo
from tests.fakes import github as fake_github
from tests.integrations_fixtures import serve

T0 = 1_700_000_000


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _github_data() -> dict[str, Any]:
    deployments = [
        {"id": i, "sha": f"{i:040x}", "ref": "main" if i % 2 else f"v1.{i}", "environment": "production",
         "description": f"deploy {i}", "created_at": iso(T0 + 600 * i)}
        for i in range(1, 251)
    ]
    deployments.append({"id": 999, "sha": "f" * 40, "ref": "main", "environment": "staging", "description": "",
                        "created_at": iso(T0 + 600 * 250 + 5)})
    releases = [{"tag_name": f"v2.{i}", "name": f"Two point {i}", "draft": False, "prerelease": i == 3,
                 "created_at": iso(T0 + 1000 * i), "published_at": iso(T0 + 1000 * i + 1),
                 "html_url": f"https://github.com/acme/shop/releases/tag/v2.{i}"} for i in range(1, 5)]
    releases.append({"tag_name": "v9", "draft": True, "created_at": iso(T0), "published_at": None})
    compares = {"v2.2...v2.3": {"total_commits": 2, "commits": [
        {"sha": "a" * 40, "commit": {"message": "Fix cart totals\n\nlong body"}},
        {"sha": "b" * 40, "commit": {"message": "Bump pool size"}}],
        "files": [{"filename": "carts/db.py", "status": "modified", "additions": 3, "deletions": 1}]}}
    return {"repo": "acme/shop", "token": "gh-token", "deployments": deployments, "releases": releases,
            "compares": compares}


async def test_github_deployments_releases_compare() -> None:
    app = fake_github.make_app(_github_data())
    async with serve(app) as url:
        http = HttpSource("github", HttpConfig(base_url=url, bearer_token="gh-token", retries=0))
        gh = GitHubChanges(http, repo="acme/shop", service="shop", max_pages=5)
        # the newest production deployments are on page 1; window covers deployments 248-250
        w = TimeWindow(T0 + 600 * 248 - 1, T0 + 600 * 250 + 10)
        deps = await gh.deployments(w)
        assert [d.version for d in deps] == ["v1.248", "main", "v1.250", "main"]
        d249 = deps[1]
        assert d249.previous_version == "v1.248" and d249.kind == "deploy" and d249.source == "github"
        assert d249.diff_url.endswith(f"/acme/shop/compare/{248:040x}...{249:040x}")
        assert deps[3].description == "deployment to staging" and deps[3].previous_version == ""
        assert await gh.changes(w, ["other-service"]) == []
        rel = await gh.releases(TimeWindow(T0 + 2500, T0 + 5000))
        assert [(r.version, r.previous_version) for r in rel] == [("v2.3", "v2.2"), ("v2.4", "v2.3")]
        assert rel[0].description == "release Two point 3 (pre-release)"
        diff = await gh.compare("v2.2", "v2.3")
        assert diff.total_commits == 2 and diff.commits[0] == ("a" * 12, "Fix cart totals")
        assert diff.files[0].filename == "carts/db.py" and diff.files[0].additions == 3
        with pytest.raises(SourceRejected, match="404"):
            await gh.compare("nope", "v2.3")
        # an old window needs several pages, never more than max_pages
        old = await GitHubChanges(http, repo="acme/shop", max_pages=2).deployments(TimeWindow(T0, T0 + 600 * 10))
        assert old == []  # pages 1-2 hold the 200 newest only
        app[FAULTS].push(Fault("status", 429, retry_after="0"))
        with pytest.raises(SourceUnavailable, match="HTTP 429"):
            await gh.deployments(w)
        await http.aclose()
        bad = HttpSource("github", HttpConfig(base_url=url, bearer_token="wrong", retries=0))
        with pytest.raises(SourceRejected, match="401"):
            await GitHubChanges(bad, repo="acme/shop").changes(w)
        await bad.aclose()


def _argo_apps() -> list[dict[str, Any]]:
    revs = ["a" * 40, "b" * 40, "c" * 40, "b" * 40]
    history = [{"id": i, "revision": r, "deployedAt": iso(T0 + 100 * i), "deployStartedAt": iso(T0 + 100 * i - 5),
                "source": {"repoURL": "https://github.com/acme/shop-deploy.git", "path": "carts"}}
               for i, r in enumerate(revs)]
    return [
        {"metadata": {"name": "carts"}, "spec": {"source": {"repoURL": "https://github.com/acme/shop-deploy.git"}},
         "status": {"history": history, "sync": {"status": "Synced", "revision": revs[-1]}}},
        {"metadata": {"name": "orders"}, "spec": {}, "status": {}},
    ]


async def test_argocd_history_with_rollback() -> None:
    app = fake_argo.make_app(_argo_apps(), token="argo")
    async with serve(app) as url:
        http = HttpSource("argocd", HttpConfig(base_url=url, bearer_token="argo", retries=0))
        argo = ArgoCDChanges(http)
        events = await argo.changes(TimeWindow(T0 + 50, T0 + 400))
        assert [(e.version, e.previous_version, e.kind) for e in events] == [
            ("b" * 12, "a" * 12, "deploy"), ("c" * 12, "b" * 12, "deploy"), ("b" * 12, "c" * 12, "rollback")]
        assert events[0].diff_url == f"https://github.com/acme/shop-deploy/compare/{'a' * 40}...{'b' * 40}"
        assert events[0].url == f"{url}/applications/carts" and events[0].service == "carts"
        one = ArgoCDChanges(http, app="carts", service="carts-svc")
        assert {e.service for e in await one.changes(TimeWindow(T0, T0 + 400))} == {"carts-svc"}
        assert await one.changes(TimeWindow(T0, T0 + 400), ["orders"]) == []
        with pytest.raises(SourceRejected, match="not found"):
            await ArgoCDChanges(http, app="nope").changes(TimeWindow(T0, T0 + 1))
        await http.aclose()


# ---------------------------------------------------------------- webhook


@pytest.fixture
async def change_db(db: Database) -> Database:
    # The lead regenerates the migration at the end; until then make sure the new table exists.
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda c: ChangeRecord.__table__.create(c, checkfirst=True))  # type: ignore[attr-defined]
    return db


@pytest.fixture
async def client(change_db: Database) -> AsyncIterator[TestClient]:
    settings = Settings(webhooks={"token": "hook-token", "max_body_bytes": 2048})  # type: ignore[arg-type]
    app = web_app(context_for(settings, change_db))
    async with TestClient(TestServer(app)) as c:
        yield c


AUTH = {"Authorization": "Bearer hook-token"}


async def _dead(db: Database) -> list[DeadLetter]:
    async with db.session() as s:
        return list((await s.exec(select(DeadLetter))).all())


async def test_webhook_accepts_and_source_reads_back(client: TestClient, change_db: Database) -> None:
    r = await client.post("/webhooks/change", headers=AUTH, json={
        "service": "carts", "version": "v1", "kind": "deploy", "time": T0, "description": "first"})
    assert r.status == 202 and (await r.json())["status"] == "accepted"
    r = await client.post("/webhooks/change", headers=AUTH, json={
        "service": "carts", "version": "v2", "time": iso(T0 + 60), "url": "https://ci.example/run/2"})
    assert r.status == 202
    r = await client.post("/webhooks/change", headers=AUTH, json={"service": "orders", "kind": "config"})
    assert r.status == 202
    src = WebhookChangeSource(change_db)
    got = await src.changes(TimeWindow(T0 + 30, T0 + 120))
    assert len(got) == 1 and got[0].version == "v2" and got[0].previous_version == "v1"
    assert got[0].url == "https://ci.example/run/2" and got[0].source == "webhook" and got[0].kind == "deploy"
    now = time.time()
    recent = await src.changes(TimeWindow(now - 60, now + 1), ["orders"])
    assert [(c.service, c.kind) for c in recent] == [("orders", "config")]
    async with change_db.session() as s:
        audits = (await s.exec(select(AuditEvent).where(AuditEvent.action == "change.received"))).all()
    assert len(audits) == 3
    assert await _dead(change_db) == []


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b"{not json", 400, "not valid JSON"),
    (json.dumps({"version": "v1"}).encode(), 422, "service: Field required"),
    (json.dumps({"service": "a", "kind": "explode"}).encode(), 422, "kind"),
    (json.dumps({"service": "a", "time": T0 * 1000}).encode(), 422, "milliseconds by mistake"),
    (json.dumps({"service": "a", "sevice": "typo"}).encode(), 422, "sevice: Extra inputs"),
    (json.dumps({"service": "a", "url": "javascript:alert(1)"}).encode(), 422, "http(s) URL"),
    (json.dumps({"service": "a", "description": "x" * 5000}).encode(), 413, "exceeds the 2048 byte limit"),
])
async def test_webhook_bad_input_is_4xx_and_dead_lettered(client: TestClient, change_db: Database, body: bytes,
                                                         status: int, reason: str) -> None:
    r = await client.post("/webhooks/change", headers={**AUTH, "Content-Type": "application/json"}, data=body)
    assert r.status == status
    assert reason in json.dumps(await r.json())
    dead = await _dead(change_db)
    assert len(dead) == 1 and reason in dead[0].reason and dead[0].source == "change-webhook"
    assert dead[0].body == body[:2048] and "Authorization" not in dead[0].headers
    async with change_db.session() as s:
        assert (await s.exec(select(ChangeRecord))).all() == []


async def test_webhook_auth(client: TestClient, change_db: Database) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic aG9vay10b2tlbg=="}):
        r = await client.post("/webhooks/change", headers=headers, json={"service": "a"})
        assert r.status == 401
    assert await _dead(change_db) == []  # unauthenticated callers write nothing


async def test_webhook_disabled_without_token(change_db: Database) -> None:
    app = web_app(context_for(Settings(), change_db))
    async with TestClient(TestServer(app)) as c:
        r = await c.post("/webhooks/change", json={"service": "a"})
        assert r.status == 503 and "webhooks.token" in (await r.json())["error"]


async def test_webhook_reads_a_body_sent_in_pieces(client: TestClient, change_db: Database) -> None:
    """A body that arrives in several TCP pieces (chunked, with pauses) is read whole, not cut at the first."""
    doc = json.dumps({"service": "carts", "version": "v9", "description": "d" * 1200}).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(doc), 200):
            yield doc[i:i + 200]
            await asyncio.sleep(0.01)

    r = await client.post("/webhooks/change", headers={**AUTH, "Content-Type": "application/json"}, data=pieces())
    assert r.status == 202, await r.text()
    assert await _dead(change_db) == []
