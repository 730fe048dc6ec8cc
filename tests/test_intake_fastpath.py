"""The Alertmanager/Grafana fast path (pydantic-core's JSON parser, native constraints) is as strict as before.

Every string that reaches storage is still free of NUL and unpaired surrogates and within ``AlertIn``'s
limits; bad times are a 422 naming the field; refusals are dead-lettered; and what is accepted is the
very ``AlertIn`` that ``make_alert(checked=False)`` builds from the same fields.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.intake.payloads import NUL_REASON, AlertmanagerWebhook, GrafanaWebhook, has_nul_escape
from bot.intake.routes import Rejected, read_alerts, read_prepared
from bot.triage.alert import MAX_KEY, MAX_LABELS, MAX_TEXT, MAX_VALUE, AlertIn, make_alert, to_epoch
from bot.triage.prepared import prepare
from tests.triage_fixtures import alerts, am_alert, am_payload, auth, client_for, dead_letters, make_ctx

VENDORS = {"/webhooks/alertmanager": AlertmanagerWebhook, "/webhooks/grafana": GrafanaWebhook}
STARTS = "2024-05-01T10:00:00Z"


def body_of(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def with_text(where: str, text: str) -> dict[str, Any]:
    """A valid payload with ``text`` (JSON-escaped by the caller's choice of characters) put at ``where``."""
    doc = am_payload(am_alert())
    alert = doc["alerts"][0]
    if where == "label key":
        alert["labels"][text] = "v"
    elif where == "label value":
        alert["labels"]["cluster"] = text
    elif where == "annotation key":
        alert["annotations"][text] = "v"
    elif where == "annotation value":
        alert["annotations"]["summary"] = text
    elif where in ("generatorURL", "fingerprint"):
        alert[where] = text
    elif where == "ignored alert field":
        alert["extra"] = {"nested": [text]}
    elif where == "ignored top-level field":
        doc["extra"] = text
    else:
        raise AssertionError(where)
    return doc


PLACES = ["label key", "label value", "annotation key", "annotation value", "generatorURL", "fingerprint",
          "ignored alert field", "ignored top-level field"]


def refusal(model: Any, body: bytes) -> Rejected:
    with pytest.raises(Rejected) as info:
        read_alerts(model, body)
    return info.value


# ----------------------------------------------------------------- NUL and unpaired surrogates


@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize("model", VENDORS.values())
def test_a_nul_escape_anywhere_is_422(model: Any, where: str) -> None:
    rej = refusal(model, body_of(with_text(where, "a\x00b")))
    assert (rej.status, rej.reason) == (422, NUL_REASON)


@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize("escape", ["\\ud800", "\\udc00", "\\ud800\\u0041", "x\\udfff"])
def test_an_unpaired_surrogate_anywhere_is_400(where: str, escape: str) -> None:
    raw = body_of(with_text(where, "SURROGATE")).replace(b"SURROGATE", escape.encode())
    for model in VENDORS.values():
        rej = refusal(model, raw)
        assert rej.status == 400 and rej.reason.startswith("body is not valid JSON: "), rej.reason


def test_surrogates_as_raw_utf8_bytes_are_refused() -> None:
    raw = body_of(with_text("label value", "SURROGATE")).replace(b"SURROGATE", b"\xed\xa0\x80")
    assert refusal(AlertmanagerWebhook, raw).status == 400


def test_the_text_backslash_u0000_is_not_a_nul() -> None:
    doc = with_text("label value", "C:\\u0000 and \\\\u0000")
    [a] = read_alerts(AlertmanagerWebhook, body_of(doc))
    assert a.labels["cluster"] == "C:\\u0000 and \\\\u0000"


async def test_refusals_are_dead_lettered_with_their_reason(db) -> None:
    ctx = make_ctx(db)
    nul = body_of(with_text("ignored alert field", "\x00"))
    lone = body_of(with_text("label value", "SURROGATE")).replace(b"SURROGATE", b"\\ud800")
    async with client_for(ctx) as c:
        for path in VENDORS:
            for raw, status in ((nul, 422), (lone, 400)):
                r = await c.post(path, data=raw, headers=auth())
                assert r.status == status, await r.text()
    dl = await dead_letters(db)
    assert [d.source for d in dl] == ["alertmanager", "alertmanager", "grafana", "grafana"]
    assert [d.body for d in dl] == [nul, lone, nul, lone]
    assert dl[0].reason == NUL_REASON and "not valid JSON" in dl[1].reason
    assert await alerts(db) == []


texts = st.text(alphabet=st.sampled_from(["\\", "u", "0", "\x00", "a", '"', "\n", "é"]), max_size=30)


@settings(max_examples=300, deadline=None)
@given(strings=st.lists(texts, max_size=12))
def test_nul_escape_scan_agrees_with_the_decoded_text(strings: list[str]) -> None:
    raw = json.dumps({"alerts": strings}).encode()
    assert has_nul_escape(raw) == any("\x00" in s for s in strings)


# ----------------------------------------------------------------- limits


def labels_with(**extra: str) -> dict[str, Any]:
    return am_payload(am_alert(**extra))


@pytest.mark.parametrize("model", VENDORS.values())
@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda a: a["labels"].update({"k" * (MAX_KEY + 1): "v"}), "alerts.0.labels"),
        (lambda a: a["labels"].update({"": "v"}), "alerts.0.labels"),
        (lambda a: a["labels"].update({"x": "v" * (MAX_VALUE + 1)}), "alerts.0.labels.x"),
        (lambda a: a["labels"].update({f"l{i}": "v" for i in range(MAX_LABELS)}), "alerts.0.labels"),
        (lambda a: a["annotations"].update({"d": "v" * (MAX_TEXT + 1)}), "alerts.0.annotations.d"),
        (lambda a: a["annotations"].update({f"a{i}": "v" for i in range(MAX_LABELS + 1)}), "alerts.0.annotations"),
        (lambda a: a.update(generatorURL="h" * 2001), "alerts.0.generatorURL"),
        (lambda a: a.update(fingerprint="f" * 301), "alerts.0.fingerprint"),
        (lambda a: a.update(labels=["not", "a", "map"]), "alerts.0.labels"),
        (lambda a: a.update(status="pending"), "alerts.0.status"),
    ],
)
def test_over_the_limits_is_422_naming_the_place(model: Any, mutate: Any, where: str) -> None:
    doc = am_payload(am_alert())
    mutate(doc["alerts"][0])
    rej = refusal(model, body_of(doc))
    assert rej.status == 422 and f"{where}" in rej.reason, rej.reason


def test_grafana_links_cannot_push_annotations_over_the_limit() -> None:
    doc = am_payload(am_alert())
    doc["alerts"][0]["annotations"] = {f"a{i}": "v" for i in range(MAX_LABELS)}
    doc["alerts"][0]["dashboardURL"] = "http://g/d"
    rej = refusal(GrafanaWebhook, body_of(doc))
    assert rej.status == 422 and "alerts.0.annotations" in rej.reason and "at most 100" in rej.reason
    del doc["alerts"][0]["dashboardURL"]
    [a] = read_alerts(GrafanaWebhook, body_of(doc))
    assert len(a.annotations) == MAX_LABELS


def test_a_long_label_key_is_cut_in_the_reason() -> None:
    doc = am_payload(am_alert())
    doc["alerts"][0]["labels"]["k" * 5000] = "v" * (MAX_VALUE + 1)
    rej = refusal(AlertmanagerWebhook, body_of(doc))
    assert rej.status == 422 and len(rej.reason) < 300


# ----------------------------------------------------------------- times


@pytest.mark.parametrize("model", VENDORS.values())
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("startsAt", "yesterday", "not an RFC 3339 time: 'yesterday'"),
        ("endsAt", "2024-13-45T00:00:00Z", "not an RFC 3339 time"),
        ("startsAt", True, "a time must be an RFC 3339 string or epoch seconds"),
        ("endsAt", [1], "a time must be an RFC 3339 string or epoch seconds"),
        ("startsAt", {"t": 1}, "a time must be an RFC 3339 string or epoch seconds"),
        ("startsAt", -5, "epoch seconds out of range"),
        ("startsAt", 10**400, "epoch seconds out of range"),
        ("startsAt", 1e300, "epoch seconds out of range"),
    ],
)
def test_a_bad_time_is_422_naming_the_alert_and_field(model: Any, field: str, value: Any, message: str) -> None:
    doc = am_payload(am_alert("A"), am_alert("B"), am_alert("C"))
    doc["alerts"][2][field] = value  # endsAt is checked on a firing alert too, as it always was
    rej = refusal(model, body_of(doc))
    assert rej.status == 422 and f"alerts.2.{field}: Value error, {message}" in rej.reason, rej.reason


def test_every_bad_time_is_named() -> None:
    doc = am_payload(*(am_alert(f"A{i}") for i in range(3)))
    for a in doc["alerts"]:
        a["startsAt"] = "soon"
    reason = refusal(AlertmanagerWebhook, body_of(doc)).reason
    assert all(f"alerts.{i}.startsAt" in reason for i in range(3))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0001-01-01T00:00:00Z", None),
        (None, None),
        ("", None),
        (0, None),
        (1714557600, 1714557600.0),
        (1714557600.5, 1714557600.5),
        (1714557600000, 1714557600.0),  # milliseconds
        ("2024-05-01T12:00:00+02:00", 1714557600.0),
        ("2024-05-01T10:00:00", 1714557600.0),  # no offset: UTC
    ],
)
def test_times_convert_as_to_epoch_says(value: Any, expected: float | None) -> None:
    doc = am_payload(am_alert(status="resolved"))
    doc["alerts"][0]["endsAt"] = value
    [a] = read_alerts(AlertmanagerWebhook, body_of(doc))
    assert a.ends_at == expected and a.starts_at == 1714557600.0
    assert to_epoch(value) == expected


def test_a_firing_alerts_go_zero_end_is_unset() -> None:
    [a] = read_alerts(AlertmanagerWebhook, body_of(am_payload(am_alert())))
    assert a.ends_at is None and a.status == "firing"


# ----------------------------------------------------------------- what stdlib json reads but jiter does not


def test_a_bom_or_utf16_body_is_read_as_before() -> None:
    doc = am_payload(am_alert())
    plain = read_alerts(AlertmanagerWebhook, body_of(doc))
    for raw in (b"\xef\xbb\xbf" + body_of(doc), json.dumps(doc).encode("utf-16")):
        got = read_alerts(AlertmanagerWebhook, raw)
        assert [dataclasses.replace(a, starts_at=0) for a in got] == [dataclasses.replace(a, starts_at=0)
                                                                      for a in plain]


def test_deep_nesting_in_an_ignored_field_is_still_accepted() -> None:
    doc = am_payload(am_alert())
    raw = body_of(doc)[:-1] + b', "x": ' + b"[" * 300 + b"]" * 300 + b"}"
    assert len(read_alerts(AlertmanagerWebhook, raw)) == 1
    bad = raw.replace(b'"firing"', b'"weird"', 1)
    assert refusal(AlertmanagerWebhook, bad).status == 422


@pytest.mark.parametrize(("raw", "status", "reason"), [
    (b"", 400, "empty body"), (b"  ", 400, "empty body"), (b"not json", 400, "body is not valid JSON: Expecting value"),
    (b"[1, 2]", 422, "expected a JSON object, got list"), (b"NaN", 422, "expected a JSON object, got float"),
    (b"\xff\xfe\x00garbage", 400, ""), (b"[" * 3000 + b"]" * 3000, 400, "RecursionError"),
    (b'{"version": "3", "status": "firing", "alerts": []}', 422, "version"),
])
def test_unreadable_bodies_keep_the_stdlib_reasons(raw: bytes, status: int, reason: str) -> None:
    rej = refusal(AlertmanagerWebhook, raw)
    assert rej.status == status and reason in rej.reason


def test_python_input_is_held_to_the_same_text_rules() -> None:
    """``model_validate`` on a dict (the demo's path) refuses what the JSON path refuses."""
    for text in ("a\x00b", "\ud800"):
        doc = with_text("label value", text)
        with pytest.raises(ValidationError):
            AlertmanagerWebhook.model_validate(doc)
    assert AlertmanagerWebhook.model_validate(am_payload(am_alert())).to_alerts()[0].name == "HighLatency"


# ----------------------------------------------------------------- the same AlertIn as make_alert(checked=False)

hostile = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=8),  # surrogates included
    st.sampled_from(["\x00", "a\x00", "\ud800", "\udc00x", "critical", "P1", "  Warn ", "checkout", "\u202e", "𝕏"]),
    st.integers(min_value=0, max_value=3).map(lambda k: "v" * [0, 199, 200, 201][k]),
)
label_keys = st.one_of(hostile, st.sampled_from(["alertname", "alert", "severity", "priority", "level", "service",
                                                 "app", "job", "k" * MAX_KEY, "k" * (MAX_KEY + 1), ""]))
label_values = st.one_of(hostile, st.integers(min_value=0, max_value=2).map(lambda k: "x" * (MAX_VALUE - 1 + k)))
annotation_values = st.one_of(hostile, st.integers(min_value=0, max_value=2).map(lambda k: "x" * (MAX_TEXT - 1 + k)))
many = st.integers(min_value=MAX_LABELS - 1, max_value=MAX_LABELS + 1).map(lambda n: {f"k{i}": "v" for i in range(n)})


def _expected(source: str, alert: dict[str, Any], annotations: dict[str, str]) -> AlertIn | None:
    try:
        return make_alert(source=source, labels=alert["labels"], annotations=annotations, status=alert["status"],
                          starts_at=to_epoch(alert["startsAt"]), generator_url=alert["generatorURL"],
                          fingerprint=alert.get("fingerprint"), now=0.0)
    except ValidationError:
        return None


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(labels=st.one_of(st.dictionaries(label_keys, label_values, max_size=6), many),
       annotations=st.one_of(st.dictionaries(label_keys, annotation_values, max_size=4), many),
       fingerprint=st.one_of(st.none(), hostile), status=st.sampled_from(["firing", "resolved"]),
       grafana=st.booleans())
def test_fast_path_accepts_exactly_what_make_alert_accepts(labels: dict[str, str], annotations: dict[str, str],
                                                          fingerprint: str | None, status: str,
                                                          grafana: bool) -> None:
    alert = {"status": status, "labels": labels, "annotations": annotations, "startsAt": STARTS,
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph", "fingerprint": fingerprint}
    doc = am_payload(alert)
    model, source = (GrafanaWebhook, "grafana") if grafana else (AlertmanagerWebhook, "alertmanager")
    expected = _expected(source, alert, annotations)
    try:
        [got] = read_alerts(model, body_of(doc))
    except Rejected as rej:
        event(f"refused {rej.status}")
        assert 400 <= rej.status < 500 and rej.reason
        assert expected is None, (rej.reason, expected)
        with pytest.raises(Rejected) as journaled:  # the journaled path refuses the same body the same way
            read_prepared(model, body_of(doc))
        assert (journaled.value.status, journaled.value.reason) == (rej.status, rej.reason)
        return
    event("accepted")
    assert expected is not None
    assert got == expected and got.starts_at == 1714557600.0
    # The journaled path builds the same prepared alert without the AlertIn in between.
    assert read_prepared(model, body_of(doc)) == [prepare(got)]


@settings(max_examples=40, deadline=None)
@given(value=st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                       st.datetimes().map(lambda d: d.isoformat()), st.lists(st.integers(), max_size=2)))
def test_fast_path_times_match_the_field_validator(value: Any) -> None:
    """The time a payload carries is refused or converted exactly as the old ``Time`` field did."""
    from bot.intake.payloads import _epoch_or_none

    doc = am_payload(am_alert(status="resolved"))
    doc["alerts"][0]["endsAt"] = value
    try:
        expected: float | None | str = _epoch_or_none(value)
    except ValueError as exc:
        expected = str(exc)
    try:
        [a] = read_alerts(AlertmanagerWebhook, json.dumps(doc, allow_nan=True).encode())
    except Rejected as rej:
        nul = isinstance(value, str) and "\x00" in value  # refused for the NUL before its time is read
        assert rej.status == 422 and (rej.reason == NUL_REASON if nul else
                                      f"alerts.0.endsAt: Value error, {expected}" in rej.reason), rej.reason
        return
    assert a.ends_at == expected


# ----------------------------------------------------------------- AlertIn and make_alert


def test_alert_in_is_a_frozen_dataclass_and_make_alert_still_validates() -> None:
    a = make_alert(source="generic", labels={"alertname": "X", "severity": "P1"}, starts_at=5.0)
    assert a == AlertIn(source="generic", name="X", severity="critical", labels={"alertname": "X", "severity": "P1"},
                        starts_at=5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "Y"  # type: ignore[misc]
    for labels, words in (({"a": "x\x00"}, "NUL"), ({"a": "\ud800"}, "unpaired surrogate"),
                          ({"": "x"}, "must be 1-200"), ({"a": "x" * (MAX_VALUE + 1)}, "longer than")):
        with pytest.raises(ValidationError, match=words) as info:
            make_alert(source="generic", labels=labels)
        assert info.value.title == "AlertIn"
    with pytest.raises(ValidationError, match="fingerprint"):
        make_alert(source="generic", labels={"alertname": "X"}, fingerprint="f\x00")
