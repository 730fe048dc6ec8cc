"""A scripted OpenAI-compatible server for the LLM investigator: ``/v1/chat/completions`` with ``tools``.

Each request is answered by the next entry of ``script``: a callable ``(request_body) -> Turn`` or a ``Turn``.
A ``Turn`` is either native tool calls (``tool_calls=[("diff", {...})]``, sent as OpenAI's ``tool_calls`` with
``finish_reason: "tool_calls"``), text content (an answer, or the JSON tool-call variant local models
write), or an HTTP ``status`` to fail with. Like the real API it refuses (400) a conversation where a
``tool`` message answers no pending ``tool_call_id`` or a tool call is left unanswered, and it counts
prompt tokens from the size of what it was sent, so token budgets mean something.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Turn:
    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    status: int = 0
    completion_tokens: int = 20


Script = Callable[[dict[str, Any]], Turn] | Turn


def answer(**obj: Any) -> Turn:
    """A final answer as the model writes it: the JSON object as the message content."""
    return Turn(content=json.dumps(obj))


def _check_conversation(messages: list[dict[str, Any]]) -> str:
    pending: set[str] = set()
    for m in messages:
        role = m.get("role")
        if role not in {"system", "user", "assistant", "tool"}:
            return f"invalid role {role!r}"
        if role == "tool":
            if m.get("tool_call_id") not in pending:
                return "messages with role 'tool' must be a response to a preceding message with 'tool_calls'"
            pending.discard(m["tool_call_id"])
            continue
        if pending:
            return "an assistant message with 'tool_calls' must be followed by tool messages for each tool_call_id"
        if role == "assistant":
            pending = {c["id"] for c in m.get("tool_calls") or []}
    return ""


@dataclass
class ScriptedOpenAI:
    script: list[Script]
    seen: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    after_script: Turn | None = None  # answered once the script is used up (else 500)

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append(body)
        problem = _check_conversation(body.get("messages") or [])
        if problem:
            return web.json_response({"error": {"message": problem, "type": "invalid_request_error"}}, status=400)
        if self.script:
            entry = self.script.pop(0)
        elif self.after_script is not None:
            entry = self.after_script
        else:
            return web.json_response({"error": {"message": "script exhausted", "type": "server_error"}}, status=500)
        turn = entry(body) if callable(entry) else entry
        if turn.status:
            return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=turn.status)
        n = len(self.seen)
        message: dict[str, Any] = {"role": "assistant", "content": turn.content}
        if turn.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{n}_{i}", "type": "function",
                 "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
                for i, (name, args) in enumerate(turn.tool_calls)]
        prompt_tokens = len(json.dumps(body.get("messages"))) // 4
        return web.json_response({
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1700000000 + n, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "tool_calls" if turn.tool_calls else "stop",
                         "message": message, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": turn.completion_tokens,
                      "total_tokens": prompt_tokens + turn.completion_tokens},
        })


@asynccontextmanager
async def serve_scripted(script: list[Script], after_script: Turn | None = None) -> AsyncIterator[ScriptedOpenAI]:
    fake = ScriptedOpenAI(list(script), after_script=after_script)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.completions)
    server = TestServer(app)
    await server.start_server()
    fake.url = str(server.make_url("/v1"))
    try:
        yield fake
    finally:
        await server.close()
