"""An alert as the triage pass takes it: identity, content hash and serialised mappings worked out up front.

``prepare`` does the per-alert work that needs nothing from the database (fingerprint, content hash, the
canonical JSON of labels and annotations, the grouping identity) where the alert arrives, so the pass itself,
which holds the write lock, only dedups, groups and writes. A ``Prepared`` is a flat tuple of strings and
numbers; the mappings are decoded again only where a rule or a store needs them.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from bot.triage.alert import AlertIn
from bot.triage.fingerprint import content_parts_of, fingerprint_of
from bot.triage.grouping import Identity, alert_family, placement


class Prepared(NamedTuple):
    fingerprint: str
    content_hash: str
    labels_json: str  # canonical JSON (sorted keys), as stored on SQLite
    annotations_json: str
    source: str
    name: str
    status: str
    severity: str
    service: str
    starts_at: float
    ends_at: float | None
    generator_url: str
    cluster: str
    namespace: str
    family: str

    @property
    def labels(self) -> dict[str, str]:
        """Decoded on demand: only suppression rules and non-SQLite stores need the mapping itself."""
        labels: dict[str, str] = orjson.loads(self.labels_json)
        return labels

    @property
    def annotations(self) -> dict[str, str]:
        annotations: dict[str, str] = orjson.loads(self.annotations_json)
        return annotations

    @property
    def identity(self) -> Identity:
        return Identity(service=self.service, cluster=self.cluster, namespace=self.namespace, family=self.family)


def prepare(alert: AlertIn) -> Prepared:
    return prepared_from(alert.source, alert.name, alert.status, alert.severity, alert.service, alert.labels,
                         alert.annotations, alert.starts_at, alert.ends_at, alert.generator_url, alert.fingerprint)


def prepared_from(source: str, name: str, status: str, severity: str, service: str, labels: dict[str, str],
                  annotations: dict[str, str], starts_at: float, ends_at: float | None, generator_url: str,
                  own_fingerprint: str | None) -> Prepared:
    """``prepare`` from an alert's fields, already held to ``AlertIn``'s rules: the webhook fast path builds
    these straight from the validated payload, without an ``AlertIn`` in between."""
    content_hash, labels_json, annotations_json = content_parts_of(status, labels, annotations, severity)
    cluster, namespace = placement(labels)
    return Prepared(fingerprint_of(source, own_fingerprint, labels, name, service), content_hash, labels_json,
                    annotations_json, source, name, status, severity, service, starts_at, ends_at, generator_url,
                    cluster, namespace, alert_family(name))
