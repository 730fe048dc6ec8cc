"""Helpers for the triage and intake tests: settings with a webhook token, payload builders, a test client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import col, select

from bot.app import context_for
from bot.config import Settings
from bot.context import AppContext
from bot.intake import routes
from bot.store.db import Database
from bot.store.models import Alert, DeadLetter, Incident, Job
from bot.triage.service import TriageService
from bot.web import create_app

TOKEN = "s3cret-token-for-tests"
HMAC_SECRET = "hmac-secret-for-tests"


def make_settings(url: str, **triage: Any) -> Settings:
    return Settings(  # type: ignore[arg-type]
        database={"url": url},
        webhooks={"token": TOKEN, "hmac_secret": HMAC_SECRET, "max_body_bytes": 65536},
        triage={"group_window_s": 900, "cooloff_s": 600, **triage},
    )


def make_ctx(db: Database, **triage: Any) -> AppContext:
    ctx = context_for(make_settings(db.url, **triage), db)
    ctx.triage = TriageService(ctx)
    return ctx


def sign(body: bytes, secret: str = HMAC_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def am_alert(name: str = "HighLatency", service: str = "checkout", status: str = "firing", **labels: str) -> dict:
    lb = {"alertname": name, "service": service, "severity": labels.pop("severity", "warning"),
          "cluster": "prod", "namespace": "shop", **labels}
    return {
        "status": status,
        "labels": lb,
        "annotations": {"summary": f"{name} on {service}"},
        "startsAt": "2024-05-01T10:00:00Z",
        "endsAt": "2024-05-01T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
    }


def am_payload(*alerts: dict, status: str | None = None) -> dict:
    st = status or ("firing" if any(a["status"] == "firing" for a in alerts) else "resolved")
    return {
        "version": "4", "groupKey": '{}:{alertname="HighLatency"}', "truncatedAlerts": 0, "status": st,
        "receiver": "onwatch", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "alerts": list(alerts),
    }


@asynccontextmanager
async def client_for(ctx: AppContext) -> AsyncIterator[TestClient]:
    """A test client of the webhook routes; on the way out the chat announcements are drained."""
    app = create_app(ctx, installers=[routes.install])
    try:
        async with TestClient(TestServer(app)) as client:
            yield client
    finally:
        if ctx.triage is not None:
            async with asyncio.timeout(60):
                await ctx.triage.drained()
            await ctx.triage.aclose()


async def triaged(ctx: AppContext, r: ClientResponse) -> dict[str, Any]:
    """What triage made of an accepted webhook: the 200's outcome (the same answer on every database), once the
    chat announcements it queued are posted."""
    body: dict[str, Any] = await r.json()
    if ctx.triage is not None:
        async with asyncio.timeout(60):
            await ctx.triage.drained()
    return body


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


async def incidents(db: Database) -> list[Incident]:
    async with db.session() as s:
        return list((await s.exec(select(Incident).order_by(col(Incident.opened_at)))).all())


async def alerts(db: Database) -> list[Alert]:
    async with db.session() as s:
        return list((await s.exec(select(Alert).order_by(col(Alert.id)))).all())


async def dead_letters(db: Database) -> list[DeadLetter]:
    async with db.session() as s:
        return list((await s.exec(select(DeadLetter).order_by(col(DeadLetter.id)))).all())


async def jobs(db: Database, kind: str = "investigation") -> list[Job]:
    async with db.session() as s:
        return list((await s.exec(select(Job).where(Job.kind == kind))).all())
