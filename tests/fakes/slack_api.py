"""A stateful fake of Slack's Web API (and the Socket Mode websocket), speaking the real wire format.

It keeps channels' messages (with ``ts``), ephemeral messages, uploaded files, users and user groups,
records every call, checks the bot token, and can inject errors or 429 responses with ``Retry-After``
per method. Start it with ``async with FakeSlack() as fake:``; point ``slack.api_url`` at ``fake.api_url``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes import start_local

BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"
BOT_USER = "UONWATCH"
BOT_ID = "BONWATCH"
TEAM = "T0001"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.time)


@dataclass
class Injected:
    kind: str  # "429" | "error"
    value: str  # Retry-After seconds, or the error code


class FakeSlack:
    def __init__(self, bot_token: str = BOT_TOKEN, app_token: str = APP_TOKEN) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.calls: list[Call] = []
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)  # channel -> messages
        self.ephemerals: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.injections: dict[str, list[Injected]] = defaultdict(list)
        self._ts = int(time.time())
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        # Socket Mode: envelopes to push and the acks received back
        self.ws_outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ws_acks: dict[str, dict[str, Any]] = {}
        self.ws_connected = asyncio.Event()
        self._ws_ack_event = asyncio.Event()

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeSlack:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/link/", self._ws)
        self._runner, self.port = await start_local(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    # ----------------------------------------------------------------- test helpers

    def inject(self, method: str, kind: str, value: str = "1", times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` fail: kind "429" (value = Retry-After) or "error"."""
        for _ in range(times):
            self.injections[method].append(Injected(kind, value))

    def add_user(self, user_id: str, name: str) -> None:
        self.users[user_id] = {"id": user_id, "name": name, "real_name": name.title(),
                               "profile": {"display_name": name, "real_name": name.title()}}

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages[channel] if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts]

    def find(self, channel: str, ts: str) -> dict[str, Any] | None:
        for m in self.messages[channel]:
            if m["ts"] == ts:
                return m
        return None

    def next_ts(self) -> str:
        self._seq += 1
        return f"{self._ts}.{self._seq:06d}"

    def add_message(self, channel: str, text: str, **extra: Any) -> dict[str, Any]:
        """A message posted by someone else (e.g. another tool posting an alert)."""
        msg = {"type": "message", "ts": self.next_ts(), "text": text, **extra}
        self.messages[channel].append(msg)
        return msg

    # ----------------------------------------------------------------- Socket Mode

    async def push_envelope(self, type_: str, payload: dict[str, Any], wait_s: float = 10.0) -> dict[str, Any]:
        """Send one envelope over the websocket and wait for the client's ack."""
        await asyncio.wait_for(self.ws_connected.wait(), wait_s)
        env_id = secrets.token_hex(8)
        await self.ws_outbox.put({"envelope_id": env_id, "type": type_, "payload": payload,
                                  "accepts_response_payload": type_ != "events_api", "retry_attempt": 0,
                                  "retry_reason": ""})
        deadline = time.monotonic() + wait_s
        while env_id not in self.ws_acks:
            self._ws_ack_event.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no ack for envelope {env_id}")
            try:
                await asyncio.wait_for(self._ws_ack_event.wait(), left)
            except TimeoutError:
                pass
        return self.ws_acks[env_id]

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}})
        self.ws_connected.set()

        async def sender() -> None:
            while True:
                env = await self.ws_outbox.get()
                await ws.send_json(env)

        task = asyncio.create_task(sender())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if "envelope_id" in data:
                        self.ws_acks[data["envelope_id"]] = data
                        self._ws_ack_event.set()
        finally:
            task.cancel()
            self.ws_connected.clear()
        return ws

    # ----------------------------------------------------------------- Web API

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                form = await request.post()
                params.update({k: v for k, v in form.items() if isinstance(v, str)})
        for key in ("blocks", "files", "attachments"):
            if isinstance(params.get(key), str):
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    pass
        return params

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() or str(params.get("token", ""))
        self.calls.append(Call(method, params))
        queue = self.injections.get(method)
        if queue:
            inj = queue.pop(0)
            if inj.kind == "429":
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                         headers={"Retry-After": inj.value})
            return web.json_response({"ok": False, "error": inj.value})
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != expected:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        result = handler(params)
        return web.json_response(result)

    def _err(self, code: str) -> dict[str, Any]:
        return {"ok": False, "error": code}

    def m_auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://fake.slack.com/", "team": "Fake", "user": "onwatch",
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID}

    def m_apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link/?ticket={secrets.token_hex(4)}"}

    def _check_text(self, p: dict[str, Any]) -> str | None:
        if not p.get("channel"):
            return "channel_not_found"
        blocks = p.get("blocks") or []
        if not p.get("text") and not blocks:
            return "no_text"
        if len(blocks) > 50:
            return "invalid_blocks"
        for b in blocks:
            t = b.get("text")
            if b.get("type") == "section" and isinstance(t, dict) and len(t.get("text", "")) > 3000:
                return "invalid_blocks"
            if b.get("type") == "header" and len(b["text"]["text"]) > 150:
                return "invalid_blocks"
            for el in b.get("elements", []) if b.get("type") == "actions" else []:
                if len(el.get("text", {}).get("text", "")) > 75 or len(el.get("value", "")) > 2000:
                    return "invalid_blocks"
        return None

    def m_chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        err = self._check_text(p)
        if err:
            return self._err(err)
        ts = self.next_ts()
        msg = {"type": "message", "ts": ts, "text": p.get("text", ""), "blocks": p.get("blocks") or [],
               "user": BOT_USER, "bot_id": BOT_ID}
        if p.get("thread_ts"):
            msg["thread_ts"] = p["thread_ts"]
        self.messages[p["channel"]].append(msg)
        return {"ok": True, "channel": p["channel"], "ts": ts, "message": msg}

    def m_chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        err = self._check_text(p)
        if err:
            return self._err(err)
        msg = self.find(p["channel"], p.get("ts", ""))
        if msg is None:
            return self._err("message_not_found")
        msg["text"] = p.get("text", "")
        msg["blocks"] = p.get("blocks") or []
        msg["edited"] = msg.get("edited", 0) + 1
        return {"ok": True, "channel": p["channel"], "ts": msg["ts"], "text": msg["text"]}

    def m_chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        err = self._check_text(p)
        if err:
            return self._err(err)
        if not p.get("user"):
            return self._err("user_not_in_channel")
        self.ephemerals.append({"channel": p["channel"], "user": p["user"], "text": p.get("text", ""),
                                "blocks": p.get("blocks") or [], "thread_ts": p.get("thread_ts")})
        return {"ok": True, "message_ts": self.next_ts()}

    def m_users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(p.get("user", "")))
        return {"ok": True, "user": user} if user else self._err("user_not_found")

    def m_usergroups_users_list(self, p: dict[str, Any]) -> dict[str, Any]:
        members = self.usergroups.get(str(p.get("usergroup", "")))
        return {"ok": True, "users": list(members)} if members is not None else self._err("no_such_subteam")

    def m_conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(p.get("channel", "")), str(p.get("ts", ""))
        msgs = self.thread(channel, ts)
        return {"ok": True, "messages": msgs, "has_more": False} if msgs else self._err("thread_not_found")

    def m_files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("filename") or not p.get("length"):
            return self._err("invalid_arguments")
        fid = f"F{secrets.token_hex(4).upper()}"
        self.files[fid] = {"id": fid, "name": p["filename"], "length": int(p["length"]),
                           "alt_txt": p.get("alt_txt"), "data": None, "shared": None}
        return {"ok": True, "upload_url": f"{self.base}/upload/{fid}", "file_id": fid}

    async def _upload(self, request: web.Request) -> web.Response:
        fid = request.match_info["file_id"]
        if fid not in self.files:
            return web.Response(status=404, text="no such upload")
        self.files[fid]["data"] = await request.read()
        return web.Response(status=200, text=f"OK - {len(self.files[fid]['data'])}")

    def m_files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        files = p.get("files") or []
        out = []
        for f in files:
            rec = self.files.get(f.get("id", ""))
            if rec is None or rec["data"] is None:
                return self._err("file_not_found")
            rec["title"] = f.get("title")
            rec["shared"] = {"channel": p.get("channel_id"), "thread_ts": p.get("thread_ts"),
                             "initial_comment": p.get("initial_comment")}
            out.append({"id": rec["id"], "name": rec["name"], "title": rec["title"]})
            if p.get("channel_id"):
                msg = {"type": "message", "ts": self.next_ts(), "text": p.get("initial_comment") or "",
                       "files": [{"id": rec["id"], "name": rec["name"]}], "user": BOT_USER, "bot_id": BOT_ID}
                if p.get("thread_ts"):
                    msg["thread_ts"] = p["thread_ts"]
                self.messages[str(p["channel_id"])].append(msg)
        return {"ok": True, "files": out}


# ----------------------------------------------------------------- signed requests, as Slack sends them


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack attaches: ``v0=`` HMAC-SHA256 of ``v0:{ts}:{body}`` with the signing secret."""
    import hashlib
    import hmac

    ts = str(int(time.time()) if timestamp is None else timestamp)
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig}


def event_body(event: dict[str, Any], event_id: str | None = None) -> str:
    return json.dumps({
        "token": "legacy", "team_id": TEAM, "api_app_id": "A1", "type": "event_callback",
        "event_id": event_id or f"Ev{secrets.token_hex(5).upper()}", "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        "event": event,
    })


def command_body(command: str, text: str, user: str, channel: str) -> str:
    from urllib.parse import urlencode

    return urlencode({
        "token": "legacy", "team_id": TEAM, "team_domain": "fake", "channel_id": channel,
        "channel_name": "incidents", "user_id": user, "user_name": user.lower(), "command": command,
        "text": text, "api_app_id": "A1", "response_url": "https://hooks.invalid/commands/1",
        "trigger_id": secrets.token_hex(6),
    })


def action_body(action_id: str, value: str, user: str, channel: str, message_ts: str,
                thread_ts: str | None = None) -> str:
    from urllib.parse import urlencode

    payload = {
        "type": "block_actions", "team": {"id": TEAM, "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A1", "token": "legacy", "trigger_id": secrets.token_hex(6),
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel, "name": "incidents"},
        "message": {"ts": message_ts, "thread_ts": thread_ts} if thread_ts else {"ts": message_ts},
        "response_url": "https://hooks.invalid/actions/1",
        "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button",
                     "action_ts": str(time.time())}],
    }
    return urlencode({"payload": json.dumps(payload)})
