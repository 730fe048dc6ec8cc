"""Alertmanager and Grafana posts (their default Slack templates and contact points). ``parse`` reads one part: None when it is not this vendor's, else its alerts."""

from __future__ import annotations

import re

from bot.intake.posts.common import Part, build_alert, find_urls, plain
from bot.triage.alert import AlertIn

_AM_TITLE = re.compile(r"^\s*\[(FIRING|RESOLVED)(?::(\d+))?\]\s+(.+?)\s*$", re.I | re.S)


def _grafana_sections(text: str, default_status: str) -> list[tuple[str, dict[str, str], dict[str, str], str]]:
    """Grafana's default message: per alert a "Labels:" and "Annotations:" list of `` - key = value``."""
    alerts: list[tuple[str, dict[str, str], dict[str, str], str]] = []
    status = alert_status = default_status
    mode = ""
    labels: dict[str, str] | None = None
    annotations: dict[str, str] = {}
    source = ""
    for raw in text.splitlines():
        line = raw.strip()
        low = plain(line).lower()
        if low in {"firing", "resolved"} or low.startswith("labels:"):
            if labels is not None:
                alerts.append((alert_status, labels, annotations, source))
                labels = None
            if low.startswith("labels:"):
                labels, annotations, source, mode, alert_status = {}, {}, "", "labels", status
            else:
                status = low
            continue
        if low.startswith("annotations:"):
            mode = "annotations"
            continue
        m = re.match(r"^[-•]\s*([^=]+?)\s*=\s*(.*)$", line)
        if m and labels is not None and mode:
            (labels if mode == "labels" else annotations)[m.group(1)] = m.group(2)
            continue
        if low.startswith("source:") and labels is not None:
            urls = find_urls(line)
            source = urls[0] if urls else ""
            mode = ""
        elif line and not m:
            mode = "" if ":" in line and not line.startswith("-") else mode
    if labels is not None:
        alerts.append((alert_status, labels, annotations, source))
    return alerts


def _am_text_alerts(text: str) -> list[tuple[dict[str, str], dict[str, str]]]:
    """The common Alertmanager Slack text template: ``*Alert:* … *Description:* … *Details:* • *k:* `v```."""
    out: list[tuple[dict[str, str], dict[str, str]]] = []
    for chunk in re.split(r"(?=\*Alert:\*)", text):
        if "*Alert:*" not in chunk:
            continue
        labels = {m.group(1): m.group(2) for m in re.finditer(r"[•\-]\s*\*([^*:]+):\*\s*`([^`]*)`", chunk)}
        ann: dict[str, str] = {}
        m = re.search(r"\*Alert:\*\s*(.+?)(?:\s+-\s+`([^`]*)`)?\s*$", chunk.split("\n", 1)[0])
        if m:
            ann["summary"] = plain(m.group(1))
            if m.group(2) and "severity" not in labels:
                labels["severity"] = m.group(2)
        m = re.search(r"\*Description:\*\s*(.+)", chunk)
        if m:
            ann["description"] = plain(m.group(1))
        if labels:
            out.append((labels, ann))
    return out


def parse(p: Part) -> list[AlertIn] | None:
    m = _AM_TITLE.match(plain(p.title) or plain(p.text.split("\n", 1)[0]))
    if not m:
        return None
    out: list[AlertIn] = []
    status = m.group(1).lower()
    is_grafana = "grafana" in (p.footer + p.title_link).lower() or "/alerting/" in p.title_link or \
        "Labels:" in p.text and " = " in p.text
    if is_grafana:
        for st, labels, ann, src in _grafana_sections(p.text, status):
            a = build_alert("grafana", labels, annotations=ann, status=st, url=src or p.title_link)
            if a:
                out.append(a)
        return out
    per_alert = _am_text_alerts(p.text)
    for labels, ann in per_alert:
        a = build_alert("alertmanager", labels, annotations=ann, status=status, url=p.title_link)
        if a:
            out.append(a)
    if not per_alert:
        group = m.group(3)
        common = re.search(r"\(([^()]*)\)\s*$", group)
        values = group[: common.start()].split() if common else group.split()
        labels = {"alertname": values[0] if values else "alert"}
        if len(values) > 1:
            labels["service"] = values[1]
        if len(values) > 2:
            labels["group"] = " ".join(values[2:])
        ann = {"summary": plain(p.text)[:2000]} if p.text and not p.text.startswith("[") else {}
        if common:
            ann["common_labels"] = common.group(1)
        a = build_alert("alertmanager", labels, annotations=ann, status=status, url=p.title_link)
        if a:
            out.append(a)
    return out
