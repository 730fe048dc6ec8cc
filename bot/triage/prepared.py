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
from bot.triage.fingerprint import content_parts, fingerprint
from bot.triage.grouping import Identity


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
    content_hash, labels_json, annotations_json = content_parts(alert)
    ident = Identity.of(alert)
    return Prepared(fingerprint(alert), content_hash, labels_json, annotations_json, alert.source, alert.name,
                    alert.status, alert.severity, alert.service, alert.starts_at, alert.ends_at, alert.generator_url,
                    ident.cluster, ident.namespace, ident.family)
