"""PagerDuty incident posts. ``parse`` reads one part: None when it is not this vendor's, else its alerts."""

from __future__ import annotations

import re

from bot.intake.posts.common import Part, build_alert, find_links, plain
from bot.triage.alert import AlertIn

_PD_INCIDENT = re.compile(r"https?://[\w.-]*pagerduty\.com/incidents/([A-Z0-9]+)", re.I)


def parse(p: Part) -> list[AlertIn] | None:
    blob = p.blob
    m = _PD_INCIDENT.search(blob)
    if not m:
        return None
    pd_id = m.group(1)
    label = next((lbl for url, lbl in find_links(blob) if pd_id in url and lbl), "") or plain(p.title)
    label = re.sub(r"^\s*\[?#\d+\]?:?\s*", "", plain(label))
    status_text = p.fields.get("Status", "") or blob
    status = "resolved" if re.search(r"\bresolved\b", status_text, re.I) else "firing"
    if not re.search(r"\b(triggered|acknowledged|resolved|escalated|reassigned)\b", blob, re.I):
        return []
    service = plain(p.fields.get("Service", ""))
    urgency = plain(p.fields.get("Urgency", "") or p.fields.get("Priority", ""))
    labels = {"alertname": label or f"PagerDuty {pd_id}", "pagerduty_incident": pd_id}
    if service:
        labels["service"] = service
    a = build_alert("pagerduty", labels, status=status, fingerprint=pd_id, url=m.group(0),
               severity={"high": "critical", "low": "warning"}.get(urgency.lower(), urgency or "high"),
               annotations={"summary": label})
    return [a] if a else []
