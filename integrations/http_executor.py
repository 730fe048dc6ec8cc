"""The HTTP executor: a webhook (trigger a pipeline, an Argo CD rollback) or a feature-flag API call.

The body is serialised once and those exact bytes are signed with HMAC-SHA256 under the secret held in the
environment variable the runbook names (``X-Onwatch-Signature: sha256=<hex>``), so the receiver can check
that the request came from onwatch and was not altered. ``X-Onwatch-Delivery`` carries the execution id for
the receiver's idempotency. Every call has a timeout; a timeout after the request was sent is ``unknown``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

import httpx

from integrations.executors import ExecutorError, ExecutorRefused, ExecutorUnknown, Outcome

SIGNATURE_HEADER = "X-Onwatch-Signature"
DELIVERY_HEADER = "X-Onwatch-Delivery"
RESPONSE_CAP = 4000


def body_bytes(body: Any) -> bytes:
    return b"" if body is None else json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class HttpExecutor:
    name = "http"

    def __init__(self, client: httpx.AsyncClient | None = None, environ: Mapping[str, str] | None = None):
        self._client = client
        self._own_client = client is None
        self._environ = environ if environ is not None else os.environ

    def _secret(self, action: Mapping[str, Any]) -> str | None:
        env = action.get("hmac_secret_env")
        if not env:
            return None
        value = self._environ.get(str(env))
        if not value:
            raise ExecutorRefused(f"the signing secret is missing: environment variable {env} is not set")
        return value

    async def preview(self, action: dict[str, Any]) -> dict[str, Any]:
        """What would be sent (the receiver has no dry run). Refuses early when the signing secret is missing."""
        secret = self._secret(action)
        body = body_bytes(action.get("body"))
        return {
            "exists": True,
            "operation": action.get("operation", "webhook"),
            "request": f"{action['method']} {action['url']}",
            "body": action.get("body"),
            "signed": secret is not None,
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def execute(self, action: dict[str, Any], *, execution_id: str) -> Outcome:
        secret = self._secret(action)
        body = body_bytes(action.get("body"))
        headers = {str(k): str(v) for k, v in (action.get("headers") or {}).items()}
        headers[DELIVERY_HEADER] = execution_id
        if action.get("body") is not None:
            headers["Content-Type"] = "application/json"
        if secret is not None:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        timeout = float(action.get("timeout_s") or 10.0)
        request = f"{action['method']} {action['url']}"
        try:
            resp = await self.client().request(
                str(action["method"]), str(action["url"]), content=body, headers=headers,
                timeout=httpx.Timeout(timeout),
            )
        except (httpx.ConnectTimeout, httpx.ConnectError, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ExecutorError(f"{request}: could not connect ({type(exc).__name__}); nothing was sent") from None
        except httpx.TimeoutException:
            raise ExecutorUnknown(f"{request}: no answer within {timeout:g} s after sending") from None
        except httpx.HTTPError as exc:
            raise ExecutorUnknown(f"{request}: the connection failed mid-request ({type(exc).__name__})") from None
        text = resp.text[:RESPONSE_CAP]
        after = {"status": resp.status_code, "response": text}
        before = {"request": request, "body_sha256": hashlib.sha256(body).hexdigest(), "signed": secret is not None}
        if 200 <= resp.status_code < 300:
            return Outcome(True, before, after, f"{request} answered {resp.status_code}")
        return Outcome(False, before, after, f"{request} answered {resp.status_code}: {text[:300]}")

    async def aclose(self) -> None:
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None
