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
    strings, lists and string mappings alerts carry."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def label_hash(labels: dict[str, str]) -> str:
    ident = {k: v for k, v in labels.items() if k.lower() not in VOLATILE_LABELS and not k.startswith("__")}
    return hashlib.sha256(_canonical(ident).encode("utf-8")).hexdigest()[:32]


def fingerprint(alert: AlertIn) -> str:
    """``<source>:<own id>`` or ``<source>:h:<label hash>``, at most 128 characters."""
    source, own = alert.source, alert.fingerprint
    if own:
        fp = f"{source}:{own}"
        if len(fp) <= MAX_FINGERPRINT:
            return fp
        return f"{source}:x:{hashlib.sha256(own.encode()).hexdigest()}"
    labels = alert.labels or {"alertname": alert.name, "service": alert.service}
    if "alertname" not in labels:
        labels = {**labels, "alertname": alert.name}
    return f"{source}:h:{label_hash(labels)}"


def content_hash(alert: AlertIn) -> str:
    """What a re-send must repeat to count as a duplicate: the SHA-256 of the canonical JSON of
    ``[status, labels, annotations, severity]``. A change of status or annotations is a new content hash."""
    blob = _canonical([alert.status, alert.labels, alert.annotations, alert.severity])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
