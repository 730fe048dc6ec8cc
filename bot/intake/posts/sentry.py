"""Sentry issue posts. ``parse`` reads one part: None when it is not this vendor's, else its alerts."""

from __future__ import annotations

import re

from bot.intake.posts.common import Part, build_alert, find_links, plain
from bot.triage.alert import AlertIn

_SENTRY_ISSUE = re.compile(r"https?://(?:[\w-]+\.)?sentry\.io/(?:organizations/[\w-]+/)?issues/(\d+)", re.I)


def parse(p: Part) -> list[AlertIn] | None:
    blob = p.blob
    m = _SENTRY_ISSUE.search(blob)
    if not m:
        return None
    issue = m.group(1)
    title = plain(p.title) or next((lbl for u, lbl in find_links(blob) if issue in u and lbl), "")
    if not title:
        return []
    project = ""
    pm = re.search(r"sentry\.io/(?:organizations/[\w-]+/)?projects/([\w-]+)", blob) or \
        re.search(r"Project:\s*(?:<[^|>]*\|)?([\w-]+)", blob)
    if pm:
        project = pm.group(1)
    elif p.footer:
        sid = re.match(r"^([A-Z0-9-]+)-[A-Z0-9]+\b", p.footer)
        project = sid.group(1).lower() if sid else ""
    resolved = re.search(r"\b(marked as resolved|resolved by|state:\s*\*?resolved)", blob, re.I) or \
        ":white_check_mark:" in blob
    level = re.search(r"\blevel:\s*\*?(fatal|error|warning|info)", blob, re.I)
    labels = {"alertname": title[:300], "sentry_issue": issue}
    if project:
        labels["service"] = project
    a = build_alert("sentry", labels, status="resolved" if resolved else "firing", fingerprint=issue, url=m.group(0),
               severity=level.group(1) if level else "error", annotations={"summary": title,
                                                                            "culprit": plain(p.text)[:2000]})
    return [a] if a else []
