"""What every chat alert-post parser shares: a message flattened to parts, and the alert builder."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from bot.triage.alert import MAX_KEY, MAX_LABELS, MAX_VALUE, AlertIn, make_alert

MAX_POST_CHARS = 100_000


@dataclass(frozen=True, slots=True)
class ChatPost:
    platform: str
    channel: str
    ts: str
    user: str = ""
    bot_id: str = ""
    username: str = ""
    text: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)


def as_str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def dicts(v: Any) -> list[dict[str, Any]]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def block_texts(blocks: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for b in blocks:
        t = b.get("text")
        if isinstance(t, dict):
            out.append(as_str(t.get("text")))
        elif isinstance(t, str):
            out.append(t)
        for f in dicts(b.get("fields")):
            out.append(as_str(f.get("text")))
        for e in dicts(b.get("elements")):
            out.append(as_str(e.get("text")) if not isinstance(e.get("text"), dict) else as_str(e["text"].get("text")))
            for inner in dicts(e.get("elements")):  # rich_text sections
                out.append(as_str(inner.get("text")) or as_str(inner.get("url")))
    return [t for t in out if t]


@dataclass
class Part:
    """One attachment (or the message itself) flattened to what the parsers read."""

    title: str = ""
    title_link: str = ""
    pretext: str = ""
    text: str = ""
    footer: str = ""
    color: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def blob(self) -> str:
        return "\n".join([self.pretext, self.title, self.title_link, self.text, self.footer,
                          *[f"{k}: {v}" for k, v in self.fields.items()], *self.lines])


_FIELD_MRKDWN = re.compile(r"^\*([^*\n]{1,60}):?\*:?\s*(?:\n|\s)\s*(.+)$", re.S)


def fields_from_texts(texts: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for t in texts:
        m = _FIELD_MRKDWN.match(t.strip())
        if m:
            out.setdefault(m.group(1).strip().rstrip(":"), m.group(2).strip())
    return out


def split_parts(post: ChatPost) -> list[Part]:
    parts: list[Part] = []
    for a in dicts(post.attachments)[:50]:
        inner_blocks = dicts(a.get("blocks"))
        texts = block_texts(inner_blocks)
        fields = {as_str(f.get("title")): as_str(f.get("value")) for f in dicts(a.get("fields")) if as_str(f.get("title"))}
        fields.update({k: v for k, v in fields_from_texts(texts).items() if k not in fields})
        parts.append(Part(title=as_str(a.get("title")), title_link=as_str(a.get("title_link")), pretext=as_str(a.get("pretext")),
                           text=as_str(a.get("text")) or as_str(a.get("fallback")), footer=as_str(a.get("footer")),
                           color=as_str(a.get("color")), fields=fields, lines=texts))
    texts = block_texts(dicts(post.blocks)[:100])
    if texts or post.text:
        parts.append(Part(text=post.text, fields=fields_from_texts(texts), lines=texts))
    return parts


_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|([^>]*))?>")
_URL = re.compile(r"https?://[^\s|>)\"']+")


def find_links(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), re.sub(r"[*_`~]", "", m.group(2) or "").strip()) for m in _LINK.finditer(text)]


def find_urls(text: str) -> list[str]:
    return _URL.findall(text)


def plain(text: str) -> str:
    """Slack mrkdwn to plain text: links to their labels, emphasis and code marks dropped."""
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    return re.sub(r"[*_`~]", "", text).strip()


def clean_labels(labels: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in labels.items():
        k = re.sub(r"\s+", "_", k.strip())[:MAX_KEY]
        if k and len(out) < MAX_LABELS:
            out[k] = v.strip()[:MAX_VALUE]
    return out


def build_alert(source: str, labels: dict[str, str], *, annotations: dict[str, str] | None = None,
           status: str = "firing", fingerprint: str | None = None, url: str = "", severity: str | None = None,
           name: str | None = None) -> AlertIn | None:
    try:
        return make_alert(source=source, labels=clean_labels(labels),
                          annotations={k: v[:10_000] for k, v in (annotations or {}).items() if v},
                          status=status, fingerprint=fingerprint[:300] if fingerprint else None,
                          generator_url=url[:2000], severity=severity, name=name[:300] if name else None)
    except ValidationError:
        return None


def parse_tags(text: str) -> dict[str, str]:
    """``service:checkout, env:prod`` style tags."""
    out: dict[str, str] = {}
    for m in re.finditer(r"(?<![\w/.:-])([a-z][\w.-]{0,40}):([\w./-]{1,100})", text):
        key, value = m.group(1), m.group(2)
        if key not in {"http", "https"} and not value.startswith("//"):
            out.setdefault(key, value)
    return out
