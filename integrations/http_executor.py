"""The HTTP executor: a webhook (trigger a pipeline, an Argo CD rollback) or a feature-flag API call.

The body is serialised once and those exact bytes are signed with HMAC-SHA256 under the secret the runbook
names with ``sign_with``, one of the settings' ``runbooks.secrets`` (from the environment or a mounted file like
every onwatch secret) (``X-Onwatch-Signature: sha256=<hex>``), so the receiver can check
that the request came from onwatch and was not altered. ``X-Onwatch-Delivery`` carries the execution id for
the receiver's idempotency. Every call has a timeout; a timeout after the request was sent is ``unknown``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import SecretStr

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

    def __init__(self, client: httpx.AsyncClient | None = None, secrets: Mapping[str, SecretStr] | None = None):
        self._client = client
        self._own_client = client is None
        self._secrets = dict(secrets or {})

    def _secret(self, action: Mapping[str, Any]) -> str | None:
        if action.get("hmac_secret_env"):
            raise ExecutorRefused("this action names its signing secret by environment variable (hmac_secret_env), "
                                  "which is no longer read: propose it again from the runbook's sign_with")
        name = action.get("sign_with")
        if not name:
            return None
        value = self._secrets.get(str(name))
        if value is None or not value.get_secret_value():
            raise ExecutorRefused(f"the signing secret {name!r} is not set: set ONWATCH_RUNBOOKS__SECRETS__"
                                  f"{str(name).upper()} or runbooks.secrets.{name}_file")
        return value.get_secret_value()

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
