"""Alert posts: messages other tools post in the incident channel, turned into alerts.

Recognised (by content, not by who posted): Alertmanager's default Slack template (and the common
"*Alert:* / *Details:*" text template), Grafana's Slack contact point, Datadog monitors, PagerDuty,
Opsgenie, Sentry and AWS Chatbot (CloudWatch alarms), in their attachment and Block Kit shapes.
Anything else returns ``[]``. The parser is platform-neutral: chat listeners (Slack, Teams) build a
``ChatPost`` and hand it here. It never raises on odd input: a field of the wrong type is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
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


# ---------------------------------------------------------------------------- flattening


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _dicts(v: Any) -> list[dict[str, Any]]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _block_texts(blocks: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for b in blocks:
        t = b.get("text")
        if isinstance(t, dict):
            out.append(_s(t.get("text")))
        elif isinstance(t, str):
            out.append(t)
        for f in _dicts(b.get("fields")):
            out.append(_s(f.get("text")))
        for e in _dicts(b.get("elements")):
            out.append(_s(e.get("text")) if not isinstance(e.get("text"), dict) else _s(e["text"].get("text")))
            for inner in _dicts(e.get("elements")):  # rich_text sections
                out.append(_s(inner.get("text")) or _s(inner.get("url")))
    return [t for t in out if t]


@dataclass
class _Part:
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


def _fields_from_texts(texts: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for t in texts:
        m = _FIELD_MRKDWN.match(t.strip())
        if m:
            out.setdefault(m.group(1).strip().rstrip(":"), m.group(2).strip())
    return out


def _parts(post: ChatPost) -> list[_Part]:
    parts: list[_Part] = []
    for a in _dicts(post.attachments)[:50]:
        inner_blocks = _dicts(a.get("blocks"))
        texts = _block_texts(inner_blocks)
        fields = {_s(f.get("title")): _s(f.get("value")) for f in _dicts(a.get("fields")) if _s(f.get("title"))}
        fields.update({k: v for k, v in _fields_from_texts(texts).items() if k not in fields})
        parts.append(_Part(title=_s(a.get("title")), title_link=_s(a.get("title_link")), pretext=_s(a.get("pretext")),
                           text=_s(a.get("text")) or _s(a.get("fallback")), footer=_s(a.get("footer")),
                           color=_s(a.get("color")), fields=fields, lines=texts))
    texts = _block_texts(_dicts(post.blocks)[:100])
    if texts or post.text:
        parts.append(_Part(text=post.text, fields=_fields_from_texts(texts), lines=texts))
    return parts


_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|([^>]*))?>")
_URL = re.compile(r"https?://[^\s|>)\"']+")


def _links(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), re.sub(r"[*_`~]", "", m.group(2) or "").strip()) for m in _LINK.finditer(text)]


def _urls(text: str) -> list[str]:
    return _URL.findall(text)


def _plain(text: str) -> str:
    """Slack mrkdwn to plain text: links to their labels, emphasis and code marks dropped."""
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    return re.sub(r"[*_`~]", "", text).strip()


def _clean_labels(labels: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in labels.items():
        k = re.sub(r"\s+", "_", k.strip())[:MAX_KEY]
        if k and len(out) < MAX_LABELS:
            out[k] = v.strip()[:MAX_VALUE]
    return out


def _alert(source: str, labels: dict[str, str], *, annotations: dict[str, str] | None = None,
           status: str = "firing", fingerprint: str | None = None, url: str = "", severity: str | None = None,
           name: str | None = None) -> AlertIn | None:
    try:
        return make_alert(source=source, labels=_clean_labels(labels),
                          annotations={k: v[:10_000] for k, v in (annotations or {}).items() if v},
                          status=status, fingerprint=fingerprint[:300] if fingerprint else None,
                          generator_url=url[:2000], severity=severity, name=name[:300] if name else None)
    except ValidationError:
        return None


def _tags(text: str) -> dict[str, str]:
    """``service:checkout, env:prod`` style tags."""
    out: dict[str, str] = {}
    for m in re.finditer(r"(?<![\w/.:-])([a-z][\w.-]{0,40}):([\w./-]{1,100})", text):
        key, value = m.group(1), m.group(2)
        if key not in {"http", "https"} and not value.startswith("//"):
            out.setdefault(key, value)
    return out


# ---------------------------------------------------------------------------- Alertmanager / Grafana

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
        low = _plain(line).lower()
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
            urls = _urls(line)
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
            ann["summary"] = _plain(m.group(1))
            if m.group(2) and "severity" not in labels:
                labels["severity"] = m.group(2)
        m = re.search(r"\*Description:\*\s*(.+)", chunk)
        if m:
            ann["description"] = _plain(m.group(1))
        if labels:
            out.append((labels, ann))
    return out


def _parse_prom_family(p: _Part) -> list[AlertIn] | None:
    m = _AM_TITLE.match(_plain(p.title) or _plain(p.text.split("\n", 1)[0]))
    if not m:
        return None
    out: list[AlertIn] = []
    status = m.group(1).lower()
    is_grafana = "grafana" in (p.footer + p.title_link).lower() or "/alerting/" in p.title_link or \
        "Labels:" in p.text and " = " in p.text
    if is_grafana:
        for st, labels, ann, src in _grafana_sections(p.text, status):
            a = _alert("grafana", labels, annotations=ann, status=st, url=src or p.title_link)
            if a:
                out.append(a)
        return out
    per_alert = _am_text_alerts(p.text)
    for labels, ann in per_alert:
        a = _alert("alertmanager", labels, annotations=ann, status=status, url=p.title_link)
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
        ann = {"summary": _plain(p.text)[:2000]} if p.text and not p.text.startswith("[") else {}
        if common:
            ann["common_labels"] = common.group(1)
        a = _alert("alertmanager", labels, annotations=ann, status=status, url=p.title_link)
        if a:
            out.append(a)
    return out


# ---------------------------------------------------------------------------- Datadog

_DD_TITLE = re.compile(
    r"^\s*(?:\[(Triggered|Re-Triggered|Recovered|Warn|No Data|Renotify|Re-Notify|Re-Warn)(?: on \{([^}]*)\})?\]"
    r"|(Triggered|Re-Triggered|Recovered|Warn|No Data|Renotify|Re-Notify|Re-Warn):)\s*(.+)$", re.I | re.S)


def _parse_datadog(p: _Part) -> list[AlertIn] | None:
    title = _plain(p.title) or _plain(p.text.split("\n", 1)[0])
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
    tags = _tags(_plain(p.text))
    for k in ("service", "env", "team", "host", "cluster", "namespace", "kube_namespace"):
        if k in tags:
            labels.setdefault(k, tags[k])
    link = next((u for u in [p.title_link, *_urls(blob)] if "datadoghq" in u or "/monitors/" in u), "")
    monitor = re.search(r"/monitors/(\d+)", link)
    fp = f"monitor-{monitor.group(1)}-{group}" if monitor else None
    a = _alert("datadog", labels, annotations={"summary": _plain(p.text)[:4000]},
               status="resolved" if state == "recovered" else "firing", fingerprint=fp, url=link, severity=sev,
               name=name)
    return [a] if a else []


# ---------------------------------------------------------------------------- PagerDuty

_PD_INCIDENT = re.compile(r"https?://[\w.-]*pagerduty\.com/incidents/([A-Z0-9]+)", re.I)


def _parse_pagerduty(p: _Part) -> list[AlertIn] | None:
    blob = p.blob
    m = _PD_INCIDENT.search(blob)
    if not m:
        return None
    pd_id = m.group(1)
    label = next((lbl for url, lbl in _links(blob) if pd_id in url and lbl), "") or _plain(p.title)
    label = re.sub(r"^\s*\[?#\d+\]?:?\s*", "", _plain(label))
    status_text = p.fields.get("Status", "") or blob
    status = "resolved" if re.search(r"\bresolved\b", status_text, re.I) else "firing"
    if not re.search(r"\b(triggered|acknowledged|resolved|escalated|reassigned)\b", blob, re.I):
        return []
    service = _plain(p.fields.get("Service", ""))
    urgency = _plain(p.fields.get("Urgency", "") or p.fields.get("Priority", ""))
    labels = {"alertname": label or f"PagerDuty {pd_id}", "pagerduty_incident": pd_id}
    if service:
        labels["service"] = service
    a = _alert("pagerduty", labels, status=status, fingerprint=pd_id, url=m.group(0),
               severity={"high": "critical", "low": "warning"}.get(urgency.lower(), urgency or "high"),
               annotations={"summary": label})
    return [a] if a else []


# ---------------------------------------------------------------------------- Opsgenie

_OG_ALERT = re.compile(r"https?://[\w.-]*opsgenie\.com/alert/detail/([\w-]+)", re.I)


def _parse_opsgenie(p: _Part) -> list[AlertIn] | None:
    blob = p.blob
    m = _OG_ALERT.search(blob)
    if not m and "opsgenie" not in (p.footer + p.pretext).lower():
        return None
    title = _plain(p.title) or next((lbl for _u, lbl in _links(blob) if lbl), "")
    title = re.sub(r"^\s*#\d+:?\s*", "", title)
    if not title:
        return []
    head = (p.pretext + " " + _plain(p.text)).lower()
    status = "resolved" if re.search(r"\b(closed|resolved)\b", head) else "firing"
    tags = _tags(p.fields.get("Tags", ""))
    labels = {"alertname": title, **{k: v for k, v in tags.items() if k in {"service", "env", "cluster", "team"}}}
    if "Source" in p.fields:
        labels["og_source"] = _plain(p.fields["Source"])
    a = _alert("opsgenie", labels, status=status, fingerprint=m.group(1) if m else None,
               url=m.group(0) if m else "", severity=p.fields.get("Priority") or None,
               annotations={"summary": title, "description": _plain(p.text)[:4000]})
    return [a] if a else []


# ---------------------------------------------------------------------------- Sentry

_SENTRY_ISSUE = re.compile(r"https?://(?:[\w-]+\.)?sentry\.io/(?:organizations/[\w-]+/)?issues/(\d+)", re.I)


def _parse_sentry(p: _Part) -> list[AlertIn] | None:
    blob = p.blob
    m = _SENTRY_ISSUE.search(blob)
    if not m:
        return None
    issue = m.group(1)
    title = _plain(p.title) or next((lbl for u, lbl in _links(blob) if issue in u and lbl), "")
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
    a = _alert("sentry", labels, status="resolved" if resolved else "firing", fingerprint=issue, url=m.group(0),
               severity=level.group(1) if level else "error", annotations={"summary": title,
                                                                            "culprit": _plain(p.text)[:2000]})
    return [a] if a else []


# ---------------------------------------------------------------------------- AWS Chatbot (CloudWatch)

_CW_TITLE = re.compile(r"CloudWatch Alarm\s*\|\s*([^|\n]+?)\s*\|\s*([a-z]{2}(?:-gov)?-[a-z]+-\d)(?:\s*\|\s*Account:\s*(\d+))?",
                       re.I)


def _parse_cloudwatch(p: _Part) -> list[AlertIn] | None:
    blob = p.blob
    m = _CW_TITLE.search(_plain(blob))
    if not m:
        return None
    name, region, account = m.group(1).strip(), m.group(2), m.group(3) or ""
    state = (p.fields.get("State") or p.fields.get("New State") or "").upper()
    if not state:
        sm = re.search(r"\b(ALARM|OK|INSUFFICIENT_DATA)\b", blob)
        state = sm.group(1) if sm else ("OK" if ":white_check_mark:" in blob or "✅" in blob else "ALARM")
    labels = {"alertname": name, "region": region}
    if account:
        labels["aws_account"] = account
    dims = " ".join([p.fields.get("Dimensions", ""), blob])
    for dm in re.finditer(r"\b(ServiceName|FunctionName|ClusterName|DBInstanceIdentifier)\s*[=:]\s*([\w.-]+)", dims):
        key = "service" if dm.group(1) in {"ServiceName", "FunctionName"} else dm.group(1)
        labels.setdefault(key, dm.group(2))
    reason = next((ln for ln in [_plain(p.text), *map(_plain, p.lines)] if "threshold" in ln.lower()), "")
    a = _alert("cloudwatch", labels, status="resolved" if state == "OK" else "firing",
               fingerprint=f"{account}:{region}:{name}", url=p.title_link or next(iter(_urls(blob)), ""),
               severity=p.fields.get("Severity") or "high", annotations={"summary": reason or name})
    return [a] if a else []


# Each vendor's parser reads one part: None when the part is not that vendor's, else its alerts (maybe none).
_PARSERS: tuple[Callable[[_Part], list[AlertIn] | None], ...] = (
    _parse_cloudwatch, _parse_pagerduty, _parse_opsgenie, _parse_sentry, _parse_datadog, _parse_prom_family,
)


def parse_alert_post(post: ChatPost) -> list[AlertIn]:
    """The alerts a chat message carries, or ``[]`` when it is not an alert post."""
    size = len(post.text) + sum(len(str(a)) for a in post.attachments[:50]) + sum(len(str(b)) for b in post.blocks[:100])
    if size > MAX_POST_CHARS:
        return []
    parts = _parts(post)
    if not parts:
        return []
    for parse in _PARSERS:
        results = [parse(p) for p in parts]
        if any(r is not None for r in results):
            return [a for r in results if r for a in r]
    return []
