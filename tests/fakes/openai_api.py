"""A local server speaking OpenAI's ``/v1/chat/completions``: it records requests and answers scripted text.

``answers`` are returned in order (then ``default(request_body)``); ``fail`` holds HTTP statuses to answer
with instead, as an overloaded or misconfigured endpoint would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class FakeOpenAI:
    default: Callable[[dict[str, Any]], str]
    seen: list[dict[str, Any]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)
    url: str = ""

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append(body)
        if self.fail:
            return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=self.fail[0])
        content = self.answers.pop(0) if self.answers else self.default(body)
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        })


@asynccontextmanager
async def serve_openai(default: Callable[[dict[str, Any]], str]) -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI(default)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.completions)
    server = TestServer(app)
    await server.start_server()
    fake.url = str(server.make_url("/v1"))
    try:
        yield fake
    finally:
        await server.close()
