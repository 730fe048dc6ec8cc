"""Masking of credentials in text shown to people (errors, logs, CLI output).

Settings errors echo the value that was wrong, and a value may be a URL with a password in it
(``postgresql://u:pw@db/x``) or a DSN (``password=pw``). ``mask`` replaces the secret part with ``***`` and
keeps the rest, so the message still says what was wrong and where.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host — the password ends at the last '@' before the host part.
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@'\"]*):(?P<pw>[^\s'\"]*)@(?=[^\s@'\"]*)")
# key=value / key: value pairs whose key names a secret (DSNs, query strings, YAML snippets)
_SECRET_PAIRS = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|token|secret|api_key|apikey|access_token|client_secret|app_password|"
    r"bot_token|signing_secret|app_token|hmac_secret|bearer_token|audit_key)\b\s*[=:]\s*)(?P<q>['\"]?)"
    r"(?P<val>[^\s&'\",;}]+)",
    re.IGNORECASE,
)


def mask(text: str) -> str:
    """``text`` with URL passwords and ``password=…``-style values replaced by ``***``."""
    if not text:
        return text
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    return _SECRET_PAIRS.sub(lambda m: f"{m.group('key')}{m.group('q')}{MASK}", text)
