"""Helpers for the Teams tests: settings, Bot Framework activities as Teams sends them, domain rows, a server."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bot.app import web_app
from bot.config import Settings
from bot.context import AppContext
from bot.store.db import Database
from bot.store.models import Proposal
from tests.fakes import start_local
from tests.slack_fixtures import make_incident as make_incident  # one seeded incident for both platforms

ROOT = Path(__file__).resolve().parents[1]
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
BOT_ID = "28:00000000-0000-0000-0000-00000000b07"
BOT_NAME = "onwatch"
CHANNEL = "19:incidents0123456789abcdef@thread.tacv2"
TEAM = "19:team0123456789abcdef@thread.tacv2"
APPROVER_AAD = "11111111-2222-3333-4444-555555555555"
STRANGER_AAD = "99999999-8888-7777-6666-555555555555"


def card_nodes(node: Any) -> list[dict[str, Any]]:
    """Every object inside an Adaptive Card (or any JSON), depth first: find an element wherever it nests."""
    if isinstance(node, list):
        return [b for n in node for b in card_nodes(n)]
    if isinstance(node, dict):
        return [node] + [b for v in node.values() for b in card_nodes(v)]
    return []


def teams_settings(sqlite_url: str, runbooks_dir: Path | None = None, **teams: Any) -> Settings:
    conf: dict[str, Any] = {"enabled": True, "channel": CHANNEL, "allow_anonymous": True,
                            "extra_service_url_hosts": ["127.0.0.1"]}
    conf.update(teams)
    return Settings(database={"url": sqlite_url}, runbooks={"dir": runbooks_dir or ROOT / "runbooks"},  # type: ignore[arg-type]
                    server={"host": "127.0.0.1"},  # type: ignore[arg-type]
                    teams=conf, approvals={"groups": {"sre": [f"teams:{APPROVER_AAD}"]}},  # type: ignore[arg-type]
                    triage={"owners": {"checkout": "team-shop", "payments": "team-pay"}})  # type: ignore[arg-type]


def write_runbooks(tmp_path: Path) -> Path:
    d = tmp_path / "runbooks"
    d.mkdir(exist_ok=True)
    (d / "restart-checkout.yaml").write_text(RUNBOOK_YAML)
    return d


def user(aad: str = APPROVER_AAD, name: str = "Alice Approver") -> dict[str, Any]:
    return {"id": f"29:1{aad[:8]}", "name": name, "aadObjectId": aad}


def activity(type_: str, service_url: str, *, conversation_id: str = CHANNEL, conversation_type: str = "channel",
             sender: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """An activity as the Teams channel posts it to the bot."""
    body: dict[str, Any] = {
        "type": type_,
        "id": extra.pop("id", f"f:{uuid.uuid4().hex[:12]}"),
        "timestamp": "2024-05-01T10:00:00.000Z",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": sender or user(),
        "conversation": {"id": conversation_id, "conversationType": conversation_type, "tenantId": TENANT,
                         "isGroup": conversation_type != "personal"},
        "recipient": {"id": BOT_ID, "name": BOT_NAME},
        "channelData": {"tenant": {"id": TENANT}, "team": {"id": TEAM},
                        **({"channel": {"id": conversation_id.split(";")[0]}} if conversation_type == "channel" else {})},
        "locale": "en-US",
    }
    body.update(extra)
    return body


def mention_message(service_url: str, command: str, **kw: Any) -> dict[str, Any]:
    """``@onwatch <command>`` in a channel, with the mention entity Teams attaches."""
    at = f"<at>{BOT_NAME}</at>"
    return activity("message", service_url, text=f"{at} {command}", textFormat="plain",
                    entities=[{"type": "mention", "text": at, "mentioned": {"id": BOT_ID, "name": BOT_NAME}}], **kw)


def invoke(service_url: str, verb: str, data: dict[str, Any], *, sender: dict[str, Any] | None = None,
           conversation_id: str = CHANNEL, reply_to: str | None = None) -> dict[str, Any]:
    value = {"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"}
    extra: dict[str, Any] = {"name": "adaptiveCard/action", "value": value}
    if reply_to:
        extra["replyToId"] = reply_to
    return activity("invoke", service_url, sender=sender, conversation_id=conversation_id, **extra)


async def make_proposal(db: Database, incident_id: str, **kw: Any) -> Proposal:
    p = Proposal(incident_id=incident_id, runbook_id=kw.pop("runbook_id", "restart-checkout"),
                 title=kw.pop("title", "Restart checkout"), service=kw.pop("service", "checkout"),
                 params=kw.pop("params", {"namespace": "shop", "deployment": "checkout"}),
                 preview=kw.pop("preview", {"target": "shop/checkout", "approvers": [f"teams:{APPROVER_AAD}"]}),
                 risk=kw.pop("risk", "low"), expires_at=kw.pop("expires_at", time.time() + 3600), **kw)
    async with db.begin() as s:
        s.add(p)
    return p


@dataclass
class Served:
    ctx: AppContext
    url: str
    http: aiohttp.ClientSession

    async def post(self, body: Any, *, raw: bytes | None = None, content_type: str = "application/json",
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        import json

        data = raw if raw is not None else json.dumps(body).encode()
        async with self.http.post(f"{self.url}/api/messages", data=data,
                                  headers={"Content-Type": content_type, **(headers or {})}) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text) if text else None
            except ValueError:
                return resp.status, text


@asynccontextmanager
async def serve(ctx: AppContext) -> AsyncIterator[Served]:
    """The real onwatch aiohttp app (every feature installer) on a free port."""
    runner, port = await start_local(web_app(ctx))
    try:
        async with aiohttp.ClientSession() as http:
            yield Served(ctx, f"http://127.0.0.1:{port}", http)
    finally:
        await runner.cleanup()


RUNBOOK_YAML = """
id: restart-checkout
title: Restart checkout
description: Restart the checkout service through its deploy hook.
action:
  executor: http
  method: POST
  url: http://127.0.0.1:9/hooks/restart
risk: low
approval:
  groups: [sre]
"""


def remediation_for(ctx: AppContext, tmp_path: Path) -> Any:
    """The real RemediationService over a one-runbook catalog whose approver group is ``sre``."""
    from bot.remediate.catalog import load_catalog
    from bot.remediate.service import RemediationService

    return RemediationService(ctx, catalog=load_catalog(write_runbooks(tmp_path), ctx.settings))


def shown(text: str) -> str:
    """What Teams shows for escaped Markdown text (``cards.escape``): backslash escapes removed."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)
