"""Datadog monitor posts. ``parse`` reads one part: None when it is not this vendor's, else its alerts."""

from __future__ import annotations

import re

from bot.intake.posts.common import Part, build_alert, find_urls, parse_tags, plain
from bot.triage.alert import AlertIn

_DD_TITLE = re.compile(
    r"^\s*(?:\[(Triggered|Re-Triggered|Recovered|Warn|No Data|Renotify|Re-Notify|Re-Warn)(?: on \{([^}]*)\})?\]"
    r"|(Triggered|Re-Triggered|Recovered|Warn|No Data|Renotify|Re-Notify|Re-Warn):)\s*(.+)$", re.I | re.S)


def parse(p: Part) -> list[AlertIn] | None:
    title = plain(p.title) or plain(p.text.split("\n", 1)[0])
    m = _DD_TITLE.match(title)
    blob = p.blob
    if not m or ("datadog" not in blob.lower() and "datadoghq" not in blob):
        return None
    state = (m.group(1) or m.group(3)).lower()
    group, name = m.group(2) or "", m.group(4).strip()
    sev = "warning" if state in {"warn", "re-warn", "no data"} else "high"
    pm = re.match(r"^\[(P[1-5])\]\s*(.+)$", name)
    if pm:
        sev, name = pm.group(1), pm.group(2)
    labels = {"alertname": name}
    for kv in filter(None, (g.strip() for g in group.split(","))):
        k, _, v = kv.partition(":")
        if v:
            labels[k] = v
    tags = parse_tags(plain(p.text))
    for k in ("service", "env", "team", "host", "cluster", "namespace", "kube_namespace"):
        if k in tags:
            labels.setdefault(k, tags[k])
    link = next((u for u in [p.title_link, *find_urls(blob)] if "datadoghq" in u or "/monitors/" in u), "")
    monitor = re.search(r"/monitors/(\d+)", link)
    fp = f"monitor-{monitor.group(1)}-{group}" if monitor else None
    a = build_alert("datadog", labels, annotations={"summary": plain(p.text)[:4000]},
               status="resolved" if state == "recovered" else "firing", fingerprint=fp, url=link, severity=sev,
               name=name)
    return [a] if a else []
