"""Redaction before anything reaches a model: a test per kind, evidence kept, placeholders reversible."""

from __future__ import annotations

import pytest

from bot.investigate.llm.redact import Redactor, redact


@pytest.mark.parametrize("raw,leak,tag", [
    ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop", "AUTH_HEADER"),
    ("slack xoxb-12345678-abcdefgh", "xoxb-12345678", "SLACK_TOKEN"),
    ('token: "ghp_abcdefghijklmnopqrstuvwxyz0123456789"', "ghp_abcdefghij", "GITHUB_TOKEN"),
    ("mail alice@example.com now", "alice@example.com", "EMAIL"),
    ("from 192.168.10.42 port", "192.168.10.42", "IPV4"),
    ("from 8.8.8.8 port", "8.8.8.8", "IPV4"),
    ("peer fe80::1ff:fe23:4567:890a closed", "fe80::1ff:fe23:4567:890a", "IPV6"),
    ("password=s3cr3t! next", "s3cr3t!", "SECRET_VALUE"),
    ('+    DB_PASSWORD = "Tr0ub4dor&3"', "Tr0ub4dor&3", "SECRET_VALUE"),
    ('secret = "2b7e151628aed2a6abf7158809cf4f3c"', "2b7e151628aed2a6abf7158809cf4f3c", "SECRET_VALUE"),
    ("key AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP", "AWS_KEY"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "dozjgNryP4J3", "JWT"),
    ("postgres://app:hunter2@db:5432/x", "hunter2", "URL_CREDENTIALS"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----", "MIIEpAIBAAKCAQEA7",
     "PRIVATE_KEY"),
    ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111", "CARD"),
])
def test_each_kind_is_redacted(raw: str, leak: str, tag: str) -> None:
    out = redact(raw)
    assert leak not in out.text
    assert out.counts.get(tag, 0) >= 1, out


@pytest.mark.parametrize("kept", [
    "9b1e04c3f2a1d4e5b6c7d8e9f0a1b2c3d4e5f6a7",  # a commit SHA (was [HEX_SECRET])
    "4f2c9e1a7b3d",  # a short SHA
    "1700001110123",  # epoch milliseconds (was [CARD])
    "1700001110123456",  # epoch microseconds
    "1700001110",
    "v1.8.4", "2.14.0-rc.1",
    "2024-05-17T21:13:30Z",
    "4bf92f3577b34da6a3ce929d0e0e4736",  # a trace id
    "123e4567-e89b-12d3-a456-426614174000",
    "[e3]", "t12",
    "INC-1A2B3C",
])
def test_evidence_is_kept(kept: str) -> None:
    text = f"deploy {kept} at the alert"
    assert redact(text).text == text


def test_placeholders_are_stable_and_reversible() -> None:
    r = Redactor()
    a = r.redact("alice@example.com failed from 10.1.2.3; token=abc123secret")
    b = r.redact("again alice@example.com and bob@example.com")
    assert "[EMAIL_1]" in a and "[EMAIL_1]" in b and "[EMAIL_2]" in b
    assert r.restore(a) == "alice@example.com failed from 10.1.2.3; token=abc123secret"
    assert r.restore("blame [EMAIL_2] and [EMAIL_9]") == "blame bob@example.com and [EMAIL_9]"
    obj = r.redact_obj({"user": "alice@example.com", "n": [1, "10.1.2.3"]})
    assert obj == {"user": "[EMAIL_1]", "n": [1, "[IPV4_1]"]}
    assert r.restore_obj(obj) == {"user": "alice@example.com", "n": [1, "10.1.2.3"]}
    assert Redactor(enabled=False).redact("alice@example.com") == "alice@example.com"
