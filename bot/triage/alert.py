"""The one normalised alert every source is turned into, and the helpers that normalise fields.

Intake adapters (Alertmanager, Grafana, generic webhooks, chat alert posts) build ``AlertIn``; triage
never sees a source-specific shape. Strings are checked here so that nothing a sender writes can break
storage later (NUL bytes and lone surrogates are refused, sizes are bounded).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from bot.rfc3339 import parse_datetime
from bot.triage.severity import normalise_severity

MAX_LABELS = 100
MAX_KEY = 200
MAX_VALUE = 2000
MAX_TEXT = 20_000

# Labels that name the affected service, most specific first.
SERVICE_LABELS = ("service", "service_name", "app", "app_kubernetes_io_name", "application", "job", "container",
                  "deployment", "component")


def check_text(value: str) -> str:
    """Refuse what no database column can hold: NUL bytes and unpaired surrogates."""
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("string is not valid Unicode (unpaired surrogate)") from None
    return value


SafeStr = Annotated[str, AfterValidator(check_text)]


def _check_mapping(value: dict[str, str], what: str, max_value: int) -> dict[str, str]:
    if len(value) > MAX_LABELS:
        raise ValueError(f"{what}: at most {MAX_LABELS} entries")
    # Sizes are checked with C-level min/max first; only when one is out of bounds is the entry named.
    if value and (min(map(len, value)) < 1 or max(map(len, value)) > MAX_KEY
                  or max(map(len, value.values())) > max_value):
        for k, v in value.items():
            if not k or len(k) > MAX_KEY:
                raise ValueError(f"{what}: key {k[:40]!r} must be 1-{MAX_KEY} characters")
            if len(v) > max_value:
                raise ValueError(f"{what}: value of {k[:40]!r} is longer than {max_value} characters")
    # One scan of all keys and values for NUL bytes and unpaired surrogates; only on a hit, name the entry.
    blob = "\x01".join(value) + "\x01" + "\x01".join(value.values())
    try:
        clean = "\x00" not in blob and bool(blob.encode("utf-8"))
    except UnicodeEncodeError:
        clean = False
    if not clean:
        for k, v in value.items():
            check_text(k)
            check_text(v)
    return value


def to_epoch(value: datetime | float | int | str | None) -> float | None:
    """RFC 3339 (with a zone) / epoch seconds (or milliseconds) to epoch seconds; Go's zero time is unset."""
    if value is None or value == "":
        return None
    if isinstance(value, str | datetime):
        dt = parse_datetime(value)  # a time without a zone is refused (see bot/rfc3339.py)
        return None if dt.year < 1971 else dt.timestamp()
    try:
        f = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise ValueError("epoch seconds out of range") from None
    if f > 1e11:  # milliseconds, common in generic senders (1e11 s is the year 5138)
        f /= 1000.0
    if not math.isfinite(f) or f < 0 or f > 32503680000:  # year 3000
        raise ValueError("epoch seconds out of range")
    return f if f > 0 else None


def service_of(labels: dict[str, str]) -> str:
    for key in SERVICE_LABELS:
        v = labels.get(key)
        if v:
            return v
    return ""


Source = Literal["alertmanager", "grafana", "generic", "chat", "datadog", "pagerduty", "opsgenie", "sentry",
                 "cloudwatch", "slo"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertIn:
    """One alert, whatever sent it. ``fingerprint`` is the source's own identity when it has one.

    A plain frozen dataclass: a storm builds thousands of these per second, and a pydantic model cost
    microseconds each even unvalidated. Nothing checks its fields: build it with ``make_alert``, which
    enforces the rules (or, like the vendor webhook models, enforce the same rules before building it).
    """

    source: Source = "generic"
    name: str
    status: Literal["firing", "resolved"] = "firing"
    severity: str = "warning"
    service: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: float = 0.0
    ends_at: float | None = None
    generator_url: str = ""
    fingerprint: str | None = None


class _AlertRules(BaseModel):
    """What ``make_alert`` holds unchecked input to before it builds an ``AlertIn`` (same names, same errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="AlertIn")

    source: Source = "generic"
    name: SafeStr = Field(min_length=1, max_length=300)
    status: Literal["firing", "resolved"] = "firing"
    severity: str = "warning"
    service: SafeStr = Field(default="", max_length=300)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: float = Field(default=0.0, ge=0)
    ends_at: float | None = None
    generator_url: SafeStr = Field(default="", max_length=2000)
    fingerprint: SafeStr | None = Field(default=None, max_length=300)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_mapping(v, "labels", MAX_VALUE)

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_mapping(v, "annotations", MAX_TEXT)

    @field_validator("severity")
    @classmethod
    def _severity(cls, v: str) -> str:
        return normalise_severity(v)


RESOLVED_WORDS = frozenset({"resolved", "ok", "normal", "closed", "recovered"})


def alert_name(labels: dict[str, str], annotations: dict[str, str]) -> str:
    """The name an alert without an explicit one goes by: its alertname, else its summary, else "alert"."""
    return labels.get("alertname") or labels.get("alert") or annotations.get("summary", "")[:300] or "alert"


def raw_severity(labels: dict[str, str]) -> str:
    """The severity word as the sender wrote it (``normalise_severity`` maps it to the scale)."""
    return labels.get("severity") or labels.get("priority") or labels.get("level") or "warning"


def make_alert(
    *,
    source: str,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
    status: str = "firing",
    starts_at: float | None = None,
    ends_at: float | None = None,
    generator_url: str = "",
    fingerprint: str | None = None,
    name: str | None = None,
    severity: str | None = None,
    service: str | None = None,
    now: float | None = None,
) -> AlertIn:
    """Build an ``AlertIn`` from labels, deriving name, severity and service the usual way, validated by
    ``_AlertRules`` (a pydantic ``ValidationError``). The webhook fast path (``bot.intake.payloads``) builds
    ``AlertIn`` itself from models that hold the same rules natively, with the same derivations."""
    annotations = annotations or {}
    fields: dict[str, Any] = {
        "source": source,
        "name": (name or alert_name(labels, annotations))[:300],
        "status": "resolved" if status.lower() in RESOLVED_WORDS else "firing",
        "severity": severity or raw_severity(labels),
        "service": (service if service is not None else service_of(labels))[:300],
        "labels": labels,
        "annotations": annotations,
        "starts_at": starts_at if starts_at else (now if now is not None else time.time()),
        "ends_at": ends_at,
        "generator_url": generator_url[:2000],
        "fingerprint": fingerprint or None,
    }
    return AlertIn(**_AlertRules(**fields).__dict__)
