"""Opsgenie alert posts. ``parse`` reads one part: None when it is not this vendor's, else its alerts."""

from __future__ import annotations

import re

from bot.intake.posts.common import Part, build_alert, find_links, parse_tags, plain
from bot.triage.alert import AlertIn

_OG_ALERT = re.compile(r"https?://[\w.-]*opsgenie\.com/alert/detail/([\w-]+)", re.I)


def parse(p: Part) -> list[AlertIn] | None:
    blob = p.blob
    m = _OG_ALERT.search(blob)
    if not m and "opsgenie" not in (p.footer + p.pretext).lower():
        return None
    title = plain(p.title) or next((lbl for _u, lbl in find_links(blob) if lbl), "")
    title = re.sub(r"^\s*#\d+:?\s*", "", title)
    if not title:
        return []
    head = (p.pretext + " " + plain(p.text)).lower()
    status = "resolved" if re.search(r"\b(closed|resolved)\b", head) else "firing"
    tags = parse_tags(p.fields.get("Tags", ""))
    labels = {"alertname": title, **{k: v for k, v in tags.items() if k in {"service", "env", "cluster", "team"}}}
    if "Source" in p.fields:
        labels["og_source"] = plain(p.fields["Source"])
    a = build_alert("opsgenie", labels, status=status, fingerprint=m.group(1) if m else None,
               url=m.group(0) if m else "", severity=p.fields.get("Priority") or None,
               annotations={"summary": title, "description": plain(p.text)[:4000]})
    return [a] if a else []
