"""One HTTP client helper for every source: a deadline per call, a size cap while streaming, retries with
backoff (honouring Retry-After) on 429/5xx and connection errors, auth and TLS, and typed errors.

Every failure leaves here as a ``SourceError`` subclass from ``integrations.base`` so the engine can record
"loki: timed out after 10 s" as missing evidence instead of crashing.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import ssl
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from bot.errors import ConfigError
from integrations.base import (
    SourceBadResponse,
    SourceError,
    SourceRejected,
    SourceTimeout,
    SourceTooLarge,
    SourceUnavailable,
)

ERROR_BODY_CAP = 64 * 1024
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """What one source's client needs, independent of which settings model it came from."""

    base_url: str
    timeout_s: float = 10.0
    max_bytes: int = 20_000_000
    retries: int = 2
    concurrency: int = 4
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    headers: tuple[tuple[str, str], ...] = ()
    bearer_token: str | None = None
    basic: tuple[str, str] | None = None
    verify: bool | str = True


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def config_from_settings(s: Any, url: str, *, where: str) -> HttpConfig:
    """Build an ``HttpConfig`` from any of the source settings models (their secrets already read by settings)."""
    headers: dict[str, str] = dict(getattr(s, "headers", {}) or {})
    tenant = getattr(s, "tenant_id", None)
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    bearer = _secret(getattr(s, "bearer_token", None)) or _secret(getattr(s, "token", None))
    basic = None
    if getattr(s, "basic_user", None):
        basic = (s.basic_user, _secret(s.basic_password) or "")
    verify: bool | str = bool(getattr(s, "tls_verify", True))
    ca = getattr(s, "ca_file", None)
    if verify and ca:
        if not ca.exists():
            raise ConfigError([f"{where}.ca_file: {ca} does not exist"])
        verify = str(ca)
    return HttpConfig(
        base_url=url.rstrip("/"),
        timeout_s=s.timeout_s,
        max_bytes=s.max_bytes,
        retries=s.retries,
        concurrency=s.concurrency,
        headers=tuple(headers.items()),
        bearer_token=bearer,
        basic=basic,
        verify=verify,
    )


def retry_after_s(value: str | None) -> float | None:
    """Parse a Retry-After header: delta seconds or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_excerpt(body: bytes) -> str:
    """The most useful short text of an error body: a JSON ``error``/``message`` field, else its start."""
    text = body[:ERROR_BODY_CAP].decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key in ("error", "message", "msg"):
            if isinstance(doc.get(key), str) and doc[key]:
                return str(doc[key])[:300]
    return " ".join(text.split())[:300] or "(empty body)"


class _Retryable(Exception):
    """One attempt failed in a way another attempt may fix."""

    def __init__(self, error: SourceError, retry_after: float | None = None):
        self.error = error
        self.retry_after = retry_after


class HttpSource:
    """An ``httpx.AsyncClient`` for one source with the source's limits built in.

    ``name`` prefixes every error message. The semaphore bounds parallel requests to this source; the deadline
    (``timeout_s``) covers the whole call, retries and backoff included, and starts once a slot is free.
    """

    def __init__(self, name: str, cfg: HttpConfig, *, transport: httpx.AsyncBaseTransport | None = None):
        self.name = name
        self.cfg = cfg
        auth: httpx.Auth | None = httpx.BasicAuth(*cfg.basic) if cfg.basic else None
        headers = dict(cfg.headers)
        headers.setdefault("User-Agent", "onwatch")
        if cfg.bearer_token:
            headers["Authorization"] = f"Bearer {cfg.bearer_token}"
        verify: bool | ssl.SSLContext = cfg.verify if isinstance(cfg.verify, bool) else ssl.create_default_context(
            cafile=cfg.verify
        )
        self._client = httpx.AsyncClient(
            base_url=cfg.base_url,
            headers=headers,
            auth=auth,
            verify=verify,
            timeout=httpx.Timeout(cfg.timeout_s),
            transport=transport,
            follow_redirects=True,
        )
        self._sem = asyncio.Semaphore(cfg.concurrency)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get_json(
        self, path: str, params: Mapping[str, Any] | list[tuple[str, Any]] | None = None, *,
        timeout_s: float | None = None, headers: Mapping[str, str] | None = None,
    ) -> Any:
        return _parse_json(self.name, await self.request("GET", path, params=params, timeout_s=timeout_s,
                                                          headers=headers))

    async def post_form_json(
        self, path: str, data: Mapping[str, Any], *, timeout_s: float | None = None
    ) -> Any:
        return _parse_json(self.name, await self.request("POST", path, data=data, timeout_s=timeout_s))

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """Send one request with retries under one deadline; return the body (at most ``max_bytes``)."""
        budget = timeout_s or self.cfg.timeout_s
        async with self._sem:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + budget
            attempt = 0
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise SourceTimeout(self.name, f"timed out after {budget:g} s")
                try:
                    async with asyncio.timeout(remaining):
                        return await self._attempt(method, path, params, data, headers, remaining)
                except TimeoutError:
                    raise SourceTimeout(self.name, f"timed out after {budget:g} s") from None
                except _Retryable as r:
                    if attempt >= self.cfg.retries:
                        raise r.error from None
                    delay = r.retry_after
                    if delay is None:
                        delay = min(self.cfg.max_backoff_s, self.cfg.backoff_s * 2**attempt) * random.uniform(0.5, 1)
                    if loop.time() + delay >= deadline:
                        why = f"; Retry-After {delay:g} s exceeds the {budget:g} s budget" if r.retry_after else ""
                        raise type(r.error)(self.name, f"{_strip(self.name, r.error)}{why}") from None
                    await asyncio.sleep(delay)
                    attempt += 1

    async def _attempt(
        self,
        method: str,
        path: str,
        params: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        remaining: float,
    ) -> bytes:
        cap = self.cfg.max_bytes
        try:
            async with self._client.stream(
                method, path, params=params, data=data, headers=headers, timeout=httpx.Timeout(remaining)
            ) as resp:
                status = resp.status_code
                if status >= 400:
                    body = await _read_capped(resp, ERROR_BODY_CAP, truncate=True)
                    excerpt = _error_excerpt(body)
                    if status == 429 or status >= 500:
                        raise _Retryable(
                            SourceUnavailable(self.name, f"HTTP {status} from {path}: {excerpt}"),
                            retry_after_s(resp.headers.get("Retry-After")),
                        )
                    raise SourceRejected(self.name, f"HTTP {status} from {path}: {excerpt}")
                length = resp.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > cap:
                    raise SourceTooLarge(self.name, f"answer of {int(length)} bytes exceeds the {cap} byte cap")
                try:
                    return await _read_capped(resp, cap)
                except _TooLarge:
                    raise SourceTooLarge(self.name, f"answer exceeds the {cap} byte cap") from None
                except httpx.TransportError as exc:
                    raise _Retryable(SourceBadResponse(self.name, f"answer from {path} cut short ({exc!r})")) from None
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.TransportError as exc:
            raise _Retryable(SourceUnavailable(self.name, f"cannot reach {self.cfg.base_url}: {_describe(exc)}")) from None


class _TooLarge(Exception):
    pass


async def _read_capped(resp: httpx.Response, cap: int, *, truncate: bool = False) -> bytes:
    buf = bytearray()
    async for chunk in resp.aiter_bytes():
        buf += chunk
        if len(buf) > cap:
            if truncate:
                return bytes(buf[:cap])
            raise _TooLarge
    return bytes(buf)


def _describe(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _strip(name: str, err: SourceError) -> str:
    text = str(err)
    prefix = f"{name}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _parse_json(name: str, body: bytes) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise SourceBadResponse(name, f"answer is not valid JSON ({exc.msg} at byte {exc.pos}; {len(body)} bytes)") from None
    except UnicodeDecodeError:
        raise SourceBadResponse(name, "answer is not UTF-8 text") from None


def expect(name: str, cond: bool, what: str) -> None:
    """Raise ``SourceBadResponse`` when an answer does not have the documented shape."""
    if not cond:
        raise SourceBadResponse(name, f"unexpected answer: {what}")


async def run_all(coros: Sequence[Awaitable[T]]) -> list[T]:
    """Run calls in parallel (a TaskGroup); if any fails, raise its typed ``SourceError`` itself, not a group."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks: list[asyncio.Task[T]] = [tg.create_task(c) for c in coros]  # type: ignore[arg-type]
    except ExceptionGroup as group:
        first = _first_source_error(group)
        if first is None:
            raise
        raise first from None
    return [t.result() for t in tasks]


def _first_source_error(group: BaseExceptionGroup[BaseException]) -> SourceError | None:
    for exc in group.exceptions:
        if isinstance(exc, SourceError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_source_error(exc)
            if found is not None:
                return found
    return None
