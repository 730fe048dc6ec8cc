"""Alert identity: the source's own fingerprint when it has one, else a stable hash of identifying labels.

Volatile labels (replica of an HA pair, values, timestamps) are left out of the hash so that the same
condition reported twice is the same alert. ``content_hash`` is what dedup compares: an identical
re-send has the same fingerprint and content hash; a change of status or annotations does not.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from bot.triage.alert import AlertIn

VOLATILE_LABELS = frozenset({
    "prometheus_replica", "replica", "__replica__", "receive", "value", "values", "valuestring", "timestamp",
    "time", "ts", "pod_template_hash", "controller_revision_hash", "endsat", "startsat", "grafana_folder_uid",
})

MAX_FINGERPRINT = 128



def _canonical(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces, UTF-8 as is): what the label and content hashes are taken over.

    orjson's output equals ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` for the
    string mappings alerts carry, at a tenth of the cost; a storm serialises every alert's mappings.
    """
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def label_hash(labels: dict[str, str]) -> str:
    ident = {k: v for k, v in labels.items() if k.lower() not in VOLATILE_LABELS and not k.startswith("__")}
    return hashlib.sha256(_canonical(ident).encode("utf-8")).hexdigest()[:32]


def fingerprint(alert: AlertIn) -> str:
    """``<source>:<own id>`` or ``<source>:h:<label hash>``, at most 128 characters."""
    return fingerprint_of(alert.source, alert.fingerprint, alert.labels, alert.name, alert.service)


def fingerprint_of(source: str, own: str | None, labels: dict[str, str], name: str, service: str) -> str:
    """``fingerprint`` from an alert's fields (the webhook fast path has no ``AlertIn`` to pass)."""
    if own:
        fp = f"{source}:{own}"
        if len(fp) <= MAX_FINGERPRINT:
            return fp
        return f"{source}:x:{hashlib.sha256(own.encode()).hexdigest()}"
    labels = labels or {"alertname": name, "service": service}
    if "alertname" not in labels:
        labels = {**labels, "alertname": name}
    return f"{source}:h:{label_hash(labels)}"


# The JSON of the statuses and severity levels every alert has (plain ASCII words: just quoted).
_PLAIN = {w: f'"{w}"' for w in ("firing", "resolved", "critical", "high", "warning", "info")}


def content_parts(alert: AlertIn) -> tuple[str, str, str]:
    """``content_hash(alert)`` plus the canonical JSON of the labels and of the annotations it was made from.

    The hash is that of ``[status, labels, annotations, severity]`` in canonical JSON (sorted keys, no
    spaces); triage stores the two JSON texts as they are, so a storm serialises each mapping once.
    """
    return content_parts_of(alert.status, alert.labels, alert.annotations, alert.severity)


def content_parts_of(status: str, labels: dict[str, str], annotations: dict[str, str],
                     severity: str) -> tuple[str, str, str]:
    """``content_parts`` from an alert's fields."""
    labels_json, annotations_json = _canonical(labels), _canonical(annotations)
    blob = f"[{_PLAIN.get(status) or _canonical(status)},{labels_json},{annotations_json}," \
           f"{_PLAIN.get(severity) or _canonical(severity)}]"
    return hashlib.sha256(blob.encode("utf-8")).hexdigest(), labels_json, annotations_json


def content_hash(alert: AlertIn) -> str:
    """What a re-send must repeat to count as a duplicate: status, labels and annotations."""
    return content_parts(alert)[0]
