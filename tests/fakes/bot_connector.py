"""A fake Bot Connector service (the ``serviceUrl`` Teams gives a bot), speaking the v3 REST wire format.

It keeps each conversation's activities (so an update really replaces a message), answers
``POST /v3/conversations`` (a new channel post opens ``<channel>;messageid=<id>``), ``POST .../activities``,
``POST .../activities/{id}`` (a reply), ``PUT .../activities/{id}`` (an update, 404 for an unknown id),
and records every call with its headers. ``fail_next(status)`` makes the next call fail.
Start it with ``async with FakeBotConnector() as fake:``; ``fake.service_url`` is its base URL.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.fakes import start_local


@dataclass
class ConnectorCall:
    method: str
    kind: str  # create_conversation | send | reply | update
    conversation_id: str
    activity_id: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeBotConnector:
    calls: list[ConnectorCall] = field(default_factory=list)
    conversations: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    failures: list[int] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1_700_000_000_000))

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def fail_next(self, status: int = 503) -> None:
        self.failures.append(status)

    def of_kind(self, kind: str) -> list[ConnectorCall]:
        return [c for c in self.calls if c.kind == kind]

    def message(self, conversation_id: str, activity_id: str) -> dict[str, Any] | None:
        return self.conversations.get(conversation_id, {}).get(activity_id)

    def cards(self, call: ConnectorCall) -> list[dict[str, Any]]:
        return [a["content"] for a in call.body.get("attachments") or []
                if a.get("contentType") == "application/vnd.microsoft.card.adaptive"]

    # ---- server

    async def __aenter__(self) -> FakeBotConnector:
        app = web.Application()
        app.router.add_post("/v3/conversations", self._create)
        app.router.add_post("/v3/conversations/{cid}/activities", self._send)
        app.router.add_post("/v3/conversations/{cid}/activities/{aid}", self._reply)
        app.router.add_put("/v3/conversations/{cid}/activities/{aid}", self._update)
        self._runner, self.port = await start_local(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _next_id(self) -> str:
        return str(next(self._ids))

    async def _record(self, request: web.Request, kind: str, cid: str, aid: str) -> tuple[dict[str, Any], web.Response | None]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return {}, web.json_response({"error": {"code": "BadSyntax", "message": "not JSON"}}, status=400)
        self.calls.append(ConnectorCall(request.method, kind, cid, aid, body, dict(request.headers)))
        if self.failures:
            status = self.failures.pop(0)
            return body, web.json_response({"error": {"code": "ServiceError", "message": "injected"}}, status=status)
        return body, None

    async def _create(self, request: web.Request) -> web.Response:
        body, failed = await self._record(request, "create_conversation", "", "")
        if failed is not None:
            return failed
        channel = ((body.get("channelData") or {}).get("channel") or {}).get("id")
        if not channel:
            return web.json_response({"error": {"code": "BadArgument", "message": "channelData.channel.id missing"}},
                                     status=400)
        root = self._next_id()
        thread = f"{channel};messageid={root}"
        activity = dict(body.get("activity") or {}, id=root)
        self.conversations.setdefault(thread, {})[root] = activity
        self.conversations.setdefault(channel, {})[root] = activity
        return web.json_response({"id": thread, "activityId": root, "serviceUrl": self.service_url}, status=201)

    async def _send(self, request: web.Request) -> web.Response:
        cid = unquote(request.match_info["cid"])
        body, failed = await self._record(request, "send", cid, "")
        if failed is not None:
            return failed
        aid = self._next_id()
        self.conversations.setdefault(cid, {})[aid] = dict(body, id=aid)
        return web.json_response({"id": aid}, status=201)

    async def _reply(self, request: web.Request) -> web.Response:
        cid, to = unquote(request.match_info["cid"]), unquote(request.match_info["aid"])
        body, failed = await self._record(request, "reply", cid, to)
        if failed is not None:
            return failed
        aid = self._next_id()
        self.conversations.setdefault(cid, {})[aid] = dict(body, id=aid, replyToId=to)
        return web.json_response({"id": aid}, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        cid, aid = unquote(request.match_info["cid"]), unquote(request.match_info["aid"])
        body, failed = await self._record(request, "update", cid, aid)
        if failed is not None:
            return failed
        known = self.conversations.get(cid, {})
        if aid not in known:
            return web.json_response({"error": {"code": "NotFound", "message": f"no activity {aid} in {cid}"}},
                                     status=404)
        known[aid] = dict(body, id=aid)
        return web.json_response({"id": aid}, status=200)
