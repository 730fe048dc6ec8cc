"""Who may read the web view: a viewer token (Bearer header or the login form's session cookie), or an
authenticating reverse proxy's user header — believed only from the configured proxy addresses — checked
against an allowlist of users and groups. Off unless ``web.enabled``; nothing here ever grants a write.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from dataclasses import dataclass
from enum import Enum

from aiohttp import web

from bot.config import WebSettings

COOKIE = "onwatch_view"


class Denied(Enum):
    """Why a request is refused: 401 asks for credentials, 403 means the ones given are not allowed."""

    NO_CREDENTIALS = 401
    BAD_TOKEN = 401
    UNTRUSTED_PROXY = 403
    NOT_ALLOWED = 403


@dataclass(frozen=True, slots=True)
class Viewer:
    name: str
    via: str  # token | session | proxy


class AccessDenied(Exception):
    def __init__(self, why: Denied, detail: str):
        super().__init__(detail)
        self.why = why
        self.detail = detail


def _key(token: str) -> bytes:
    return hashlib.sha256(b"onwatch-web-session\0" + token.encode()).digest()


def session_value(token: str, now: float, ttl_s: int) -> str:
    """``<expiry>.<hmac>``: a cookie that proves the token was typed, without holding the token itself."""
    exp = str(int(now + ttl_s))
    return exp + "." + hmac.new(_key(token), exp.encode(), hashlib.sha256).hexdigest()


def session_ok(token: str, value: str, now: float) -> bool:
    exp, _, mac = value.partition(".")
    if not exp.isdigit() or int(exp) < now:
        return False
    return hmac.compare_digest(mac, hmac.new(_key(token), exp.encode(), hashlib.sha256).hexdigest())


def token_ok(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def _trusted(remote: str | None, cfg: WebSettings) -> bool:
    if not remote:
        return False
    try:
        addr = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(n, strict=False) for n in cfg.trusted_proxies)


def _proxy_viewer(request: web.Request, cfg: WebSettings) -> Viewer:
    user = request.headers.get(cfg.user_header, "").strip()
    if not user:
        raise AccessDenied(Denied.NO_CREDENTIALS, f"the proxy sent no {cfg.user_header} header")
    groups = {g.strip() for g in request.headers.get(cfg.groups_header, "").split(",") if g.strip()}
    allowed = set(cfg.allow)
    if user in allowed or any(f"group:{g}" in allowed for g in groups):
        return Viewer(user, "proxy")
    raise AccessDenied(Denied.NOT_ALLOWED, f"{user} is not in web.allow")


def authenticate(request: web.Request, cfg: WebSettings, now: float | None = None) -> Viewer:
    """The viewer of ``request``, or ``AccessDenied`` saying why not."""
    now = time.time() if now is None else now
    token = cfg.viewer_token.get_secret_value() if cfg.viewer_token is not None else None
    if cfg.trusted_proxies and cfg.user_header in request.headers:
        if _trusted(request.remote, cfg):
            return _proxy_viewer(request, cfg)
        if token is None:
            raise AccessDenied(Denied.UNTRUSTED_PROXY, f"{cfg.user_header} from {request.remote}, "
                                                       "which is not in web.trusted_proxies")
    if token is not None:
        auth = request.headers.get("Authorization", "")
        if auth:
            scheme, _, given = auth.partition(" ")
            if scheme.lower() == "bearer" and token_ok(token, given.strip()):
                return Viewer("token holder", "token")
            raise AccessDenied(Denied.BAD_TOKEN, "wrong viewer token")
        cookie = request.cookies.get(COOKIE, "")
        if cookie and session_ok(token, cookie, now):
            return Viewer("token holder", "session")
        raise AccessDenied(Denied.NO_CREDENTIALS, "sign in with the viewer token")
    if _trusted(request.remote, cfg):
        raise AccessDenied(Denied.NO_CREDENTIALS, f"the proxy sent no {cfg.user_header} header")
    raise AccessDenied(Denied.UNTRUSTED_PROXY, f"{request.remote} is not a trusted proxy")
