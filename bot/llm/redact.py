"""Redaction of text before it leaves onwatch for an LLM endpoint.

Patterns cover what incident data leaks most: credentials (bearer/basic tokens, API keys, Slack and
GitHub tokens, AWS keys, JWTs, passwords in URLs and key=value pairs), e-mail addresses, IP addresses
and long hex/base64 secrets. Each match becomes a typed placeholder so the text still reads sensibly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("PRIVATE_KEY", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("SLACK_TOKEN", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}")),
    ("GITHUB_TOKEN", re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{16,}")),
    ("AWS_KEY", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("URL_CREDENTIALS", re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")),
    ("AUTH_HEADER", re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")),
    ("SECRET_VALUE", re.compile(
        r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret)\b(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)")),
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    ("IPV4", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
    ("IPV6", re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){4,7}[0-9a-fA-F]{1,4}\b")),
    ("CARD", re.compile(r"\b(?:\d[ -]?){13,16}\b")),
    ("HEX_SECRET", re.compile(r"\b[0-9a-fA-F]{40,}\b")),
)


@dataclass(frozen=True, slots=True)
class Redacted:
    text: str
    counts: dict[str, int]


def redact(text: str) -> Redacted:
    counts: dict[str, int] = {}
    for name, pattern in _PATTERNS:
        def _sub(m: re.Match[str], name: str = name) -> str:
            counts[name] = counts.get(name, 0) + 1
            if name == "SECRET_VALUE":
                return f"{m.group(1)}{m.group(2)}[{name}]"
            if name == "AUTH_HEADER":
                return f"{m.group(1)} [{name}]"
            return f"[{name}]"

        text = pattern.sub(_sub, text)
    return Redacted(text, counts)
