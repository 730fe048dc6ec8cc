"""Small aiohttp servers that speak the documented wire formats of systems that cannot run in tests
(Loki, Tempo, Jaeger, GitHub, Argo CD, the Kubernetes API), plus injectable failures.

Every fake app gets the ``faults`` middleware: push ``Fault``s onto ``app[FAULTS]`` and the next requests
misbehave in order (a status with Retry-After, a delay, truncated JSON, a body far over any cap, a
connection cut mid-body). ``app[REQUESTS]`` records what each request asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web


@dataclass
class Fault:
    kind: Literal["status", "delay", "truncated", "huge", "huge_declared", "cut"]
    status: int = 500
    retry_after: str | None = None
    delay_s: float = 0.0
    size: int = 5_000_000
    path_prefix: str = ""  # only requests whose path starts with this are affected


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class FaultQueue:
    items: list[Fault] = field(default_factory=list)

    def push(self, *faults: Fault) -> None:
        self.items.extend(faults)

    def take(self, path: str) -> Fault | None:
        for i, f in enumerate(self.items):
            if path.startswith(f.path_prefix):
                return self.items.pop(i)
        return None


FAULTS: web.AppKey[FaultQueue] = web.AppKey("faults", FaultQueue)
REQUESTS: web.AppKey[list[Recorded]] = web.AppKey("requests", list)


@web.middleware
async def faults_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request.app[REQUESTS].append(Recorded(request.method, request.path, dict(request.query),
                                          dict(request.headers)))
    fault = request.app[FAULTS].take(request.path)
    if fault is None:
        return await handler(request)
    if fault.kind == "delay":
        await asyncio.sleep(fault.delay_s)
        return await handler(request)
    if fault.kind == "status":
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        return web.json_response({"error": f"injected HTTP {fault.status}", "message": "injected"},
                                 status=fault.status, headers=headers)
    if fault.kind == "truncated":
        return web.Response(body=b'{"status":"success","data":{"resultType":"matr', content_type="application/json")
    if fault.kind == "huge_declared":
        return web.Response(body=b"[" + b"0," * (fault.size // 2) + b"0]", content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    if fault.kind == "cut":
        resp.content_length = 100_000
        await resp.prepare(request)
        await resp.write(b'{"data": [')
        assert request.transport is not None
        request.transport.close()
        return resp
    # huge: chunked, no Content-Length, so only a streaming cap can stop it
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(b"[")
    chunk = b"0," * 32768
    sent = 0
    while sent < fault.size:
        try:
            await resp.write(chunk)
        except (ConnectionResetError, ConnectionError):
            return resp
        sent += len(chunk)
    await resp.write(b"0]")
    await resp.write_eof()
    return resp


def new_app() -> web.Application:
    app = web.Application(middlewares=[faults_middleware])
    app[FAULTS] = FaultQueue()
    app[REQUESTS] = []
    return app


def require_bearer(request: web.Request, token: str | None) -> None:
    if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
        raise web.HTTPUnauthorized(text='{"message": "Bad credentials"}', content_type="application/json")


async def start_local(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` over real TCP on a free port of 127.0.0.1: the runner (to clean up) and the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
