"""Triage hashes and writes exactly what the plain definitions say.

* ``content_hash`` is the hash of canonical JSON ``[status, labels, annotations, severity]`` (the
  definition dedup has always compared), whatever the text;
* labels and annotations written by the triage pass read back through the ORM equal to what was sent,
  and the incident link rows exist;
* a stored fingerprint stays the same for the same labels (pinned value).
"""

from __future__ import annotations

import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.store.db import Database
from bot.store.queries import incident_alerts
from bot.triage.alert import make_alert
from bot.triage.fingerprint import content_hash, fingerprint
from tests.triage_fixtures import alerts, incidents, make_ctx

text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
mapping = st.dictionaries(text.filter(bool), text, max_size=8)


def reference_hash(status: str, labels: dict, annotations: dict, severity: str) -> str:
    blob = json.dumps([status, labels, annotations, severity], sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@given(labels=mapping, annotations=mapping, status=st.sampled_from(["firing", "resolved"]))
@settings(max_examples=200, deadline=None)
def test_content_hash_matches_the_canonical_definition(labels, annotations, status) -> None:
    a = make_alert(source="generic", labels=labels, annotations=annotations, status=status, starts_at=1.0)
    assert content_hash(a) == reference_hash(a.status, a.labels, a.annotations, a.severity)


def test_fingerprint_is_stable_for_the_same_labels() -> None:
    a = make_alert(source="alertmanager", labels={"alertname": "HighLatency", "service": "checkout", "pod": "p-1",
                                                  "prometheus_replica": "r-0"}, starts_at=1.0)
    b = make_alert(source="alertmanager", labels={"pod": "p-1", "service": "checkout", "alertname": "HighLatency",
                                                  "prometheus_replica": "r-1"}, starts_at=2.0)
    assert fingerprint(a) == fingerprint(b) == "alertmanager:h:99bf806769d39ce87d4cb8f7b21f610b"


async def test_bulk_rows_read_back_as_sent(db: Database) -> None:
    ctx = make_ctx(db)
    odd = {"alertname": "Disk\"Full'", "service": "lédger-db", "note": "é ✓ 🚀 \\ \n \u2028", "empty": ""}
    ann = {"summary": "ünïcode “quoted” \t tab", "runbook_url": "https://x/?a=1&b=2"}
    sent = [make_alert(source="alertmanager", labels=odd, annotations=ann, starts_at=10.0),
            make_alert(source="alertmanager", labels={**odd, "alertname": "Other"}, annotations={}, starts_at=11.0)]
    out = await ctx.triage.ingest(sent)
    assert out.stored == 2
    changed = make_alert(source="alertmanager", labels=odd, annotations={**ann, "summary": "now different ✓"},
                         starts_at=10.0)
    assert (await ctx.triage.ingest([changed])).updated == 1
    stored = {a.name: a for a in await alerts(db)}
    assert stored["Disk\"Full'"].labels == odd and stored["Disk\"Full'"].annotations["summary"] == "now different ✓"
    assert stored["Other"].labels == {**odd, "alertname": "Other"} and stored["Other"].annotations == {}
    assert stored["Other"].flips == [] and stored["Other"].content_hash == content_hash(sent[1])
    async with db.session() as s:
        members = {a.id for inc in await incidents(db) for a in await incident_alerts(s, inc.id)}
    assert members == {a.id for a in stored.values()}
