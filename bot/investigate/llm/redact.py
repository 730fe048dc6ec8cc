"""Redaction of text before it leaves onwatch for an LLM endpoint, reversibly.

Secrets are found by detect-secrets' plugins (provider tokens, private keys, JWTs, quoted keyword
assignments, high-entropy strings) plus a few patterns they do not cover in incident text: unquoted
``password=...`` pairs, ``Bearer``/``Basic`` headers, credentials in URLs, e-mail addresses, IPv4 and IPv6
addresses, and Luhn-valid card numbers. Each distinct value gets a numbered placeholder (``[EMAIL_1]``)
that stays the same for the whole investigation, so the model can still tell two addresses apart and its
answer can be mapped back with :meth:`Redactor.restore`.

What incident evidence is made of is kept on purpose: commit SHAs, trace and span ids, UUIDs, versions,
Unix timestamps (seconds or milliseconds) and evidence ids. Hex strings are secrets only when a keyword
says so (``secret = "2b7e…"``), never for their entropy alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.settings import default_settings

# detect-secrets type -> our placeholder tag
_DS_TAGS: dict[str, str] = {
    "AWS Access Key": "AWS_KEY",
    "Basic Auth Credentials": "URL_CREDENTIALS",
    "GitHub Token": "GITHUB_TOKEN",
    "GitLab Token": "GITLAB_TOKEN",
    "JSON Web Token": "JWT",
    "Private Key": "PRIVATE_KEY",
    "Slack Token": "SLACK_TOKEN",
    "Secret Keyword": "SECRET_VALUE",
    "OpenAI Token": "API_KEY",
    "Stripe Access Key": "API_KEY",
    "Public IP (ipv4)": "IPV4",
}
# SHAs and trace ids are evidence (keyword context catches hex secrets); URL credentials: our pattern keeps the user
_SKIP_DS = {"Hex High Entropy String", "Basic Auth Credentials"}

_OWN: tuple[tuple[str, re.Pattern[str], int], ...] = (
    # (tag, pattern, group holding the secret: 0 = the whole match)
    ("PRIVATE_KEY", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S), 0),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), 0),
    ("SLACK_TOKEN", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"), 0),
    ("GITHUB_TOKEN", re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{16,}"), 0),
    ("AWS_KEY", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), 0),
    ("URL_CREDENTIALS", re.compile(r"(?<=://)[^/\s:@]+:([^/\s@]+)(?=@)"), 1),
    ("AUTH_HEADER", re.compile(r"(?i)\b(?:bearer|basic|token)\s+([A-Za-z0-9._~+/=-]{8,})"), 1),
    ("SECRET_VALUE", re.compile(
        r"(?i)(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret|private[_-]?key)"
        r"[\"']?\s*[=:]\s*(?:\"([^\"\s]+)\"|'([^'\s]+)'|([^\s,;\"'}]+))"), -1),
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), 0),
    ("IPV4", re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])"), 0),
    ("IPV6", re.compile(r"(?<![0-9A-Za-z:])(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}(?![0-9A-Za-z:])"
                        r"|(?<![0-9A-Za-z:])(?:[0-9a-fA-F]{1,4}:){1,6}:(?:[0-9a-fA-F]{1,4}:?){1,6}(?![0-9A-Za-z:])"), 0),
    ("CARD", re.compile(r"(?<![\d-])[3-6]\d{3}(?:[ -]?\d{4}){2}[ -]?\d{3,4}(?![\d-])"), 0),
)
# Values never treated as secrets by a plugin or an entropy test: they are what evidence is made of.
_EVIDENCE = (
    re.compile(r"[0-9a-fA-F]{7,64}"),  # commit SHAs, trace/span ids, digests
    re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),  # UUIDs
    re.compile(r"v?\d+(?:\.\d+){1,3}(?:[-+][0-9A-Za-z.]+)?"),  # versions
    re.compile(r"\d{1,19}(?:\.\d+)?"),  # timestamps, counts
)
# Values that hide nothing even after ``password=``: placeholders, masks, variable references.
_TRIVIAL = re.compile(r"\[[A-Z0-9_]+_\d+\]|[et]\d+|true|false|null|none|redacted|\*+|x+|\$\{?[A-Za-z_]+\}?|<[^>]*>", re.I)
# Tags whose values are identifiers of people and hosts, not secrets: no evidence exemption applies.
_PERSONAL = frozenset({"EMAIL", "IPV4", "IPV6", "CARD"})
_PLACEHOLDER = re.compile(r"\[([A-Z0-9_]+)_(\d+)\]")


def _luhn(digits: str) -> bool:
    nums = [int(c) for c in digits if c.isdigit()]
    total = 0
    for i, n in enumerate(reversed(nums)):
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return len(nums) in (15, 16) and total % 10 == 0


def _plugins() -> list[tuple[str, BasePlugin]]:
    mapping: dict[str, type[BasePlugin]] = dict(get_mapping_from_secret_type_to_class())
    with default_settings():
        return [(t, cls()) for t, cls in sorted(mapping.items()) if t not in _SKIP_DS]


_PLUGINS = _plugins()


def _kept(tag: str, value: str) -> bool:
    if _TRIVIAL.fullmatch(value):
        return True
    if tag in _PERSONAL or tag == "SECRET_VALUE":  # a keyword names it a secret: its shape does not matter
        return False
    return any(p.fullmatch(value) for p in _EVIDENCE)


def _own_matches(line: str) -> Iterator[tuple[str, int, int]]:
    for tag, pattern, group in _OWN:
        for m in pattern.finditer(line):
            if group == -1:
                g = next((i for i in (1, 2, 3) if m.group(i)), 0)
            else:
                g = group
            start, end = m.span(g)
            if tag == "CARD" and not _luhn(m.group(0)):
                continue
            yield tag, start, end


def _plugin_values(line: str) -> Iterator[tuple[str, str]]:
    with default_settings():
        for typ, plugin in _PLUGINS:
            try:
                found = plugin.analyze_line(filename="incident.py", line=line, line_number=1)
            except Exception:  # noqa: BLE001 - a plugin's bug must not stop redaction; own patterns still run
                continue
            for secret in found:
                value = secret.secret_value or ""
                if isinstance(plugin, RegexBasedDetector) and len(value) < 8:
                    # some plugins capture only a prefix group (``ghp``): take the whole match instead
                    for rx in plugin.denylist:
                        for m in rx.finditer(line):
                            if value in m.group(0):
                                yield _DS_TAGS.get(typ, "SECRET"), m.group(0)
                    continue
                yield _DS_TAGS.get(typ, "SECRET"), value


@dataclass
class Redactor:
    """One investigation's redaction: the same value always gets the same placeholder, and back."""

    enabled: bool = True
    _forward: dict[str, str] = field(default_factory=dict)
    _back: dict[str, str] = field(default_factory=dict)
    _next: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def _placeholder(self, tag: str, value: str) -> str:
        known = self._forward.get(value)
        if known is not None:
            return known
        n = self._next.get(tag, 0) + 1
        self._next[tag] = n
        ph = f"[{tag}_{n}]"
        self._forward[value] = ph
        self._back[ph] = value
        return ph

    def _line(self, line: str) -> str:
        spans: list[tuple[int, int, str]] = []
        for tag, start, end in _own_matches(line):
            if end > start and not _kept(tag, line[start:end]):
                spans.append((start, end, tag))
        for tag, value in _plugin_values(line):
            if len(value) < 4 or _kept(tag, value):
                continue
            for m in re.finditer(re.escape(value), line):
                spans.append((m.start(), m.end(), tag))
        if not spans:
            return line
        # longest first at each position, then drop overlaps
        spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
        out: list[str] = []
        pos = 0
        for start, end, tag in spans:
            if start < pos:
                continue
            out.append(line[pos:start])
            out.append(self._placeholder(tag, line[start:end]))
            self.counts[tag] = self.counts.get(tag, 0) + 1
            pos = end
        out.append(line[pos:])
        return "".join(out)

    def redact(self, text: str) -> str:
        if not self.enabled or not text:
            return text
        # private keys span lines: take them out whole first
        text = _OWN[0][1].sub(lambda m: self._count("PRIVATE_KEY", self._placeholder("PRIVATE_KEY", m.group(0))), text)
        return "\n".join(self._line(ln) for ln in text.split("\n"))

    def _count(self, tag: str, ph: str) -> str:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        return ph

    def redact_obj(self, obj: Any) -> Any:
        """Every string inside a JSON-like value, redacted (keys too: a header name can hold a token)."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {self.redact(str(k)): self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.redact_obj(v) for v in obj]
        return obj

    def restore(self, text: str) -> str:
        """Placeholders this investigation made, mapped back to the original values."""
        return _PLACEHOLDER.sub(lambda m: self._back.get(m.group(0), m.group(0)), text)

    def restore_obj(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.restore(obj)
        if isinstance(obj, dict):
            return {k: self.restore_obj(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.restore_obj(v) for v in obj]
        return obj


@dataclass(frozen=True, slots=True)
class Redacted:
    text: str
    counts: dict[str, int]


def redact(text: str) -> Redacted:
    """One-off redaction (a fresh placeholder table)."""
    r = Redactor()
    return Redacted(r.redact(text), dict(r.counts))
