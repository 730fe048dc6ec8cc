"""Pydantic models of what alert senders post, and their conversion to ``AlertIn``.

* Alertmanager webhook, version 4 (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)
* Grafana unified alerting webhook contact point (Alertmanager-like, plus ``orgId``, ``state``, ``title``,
  ``message``, per-alert ``values``/``valueString``/``dashboardURL``/``panelURL``/``silenceURL``)
* onwatch's generic shape (documented in docs/triage.md)

Unknown fields of the two vendor formats are ignored (they grow over versions); the generic shape is
strict so that a typo is answered with its name.

The two vendor formats carry alert storms, so they are read straight from the body by pydantic-core's
own JSON parser (``Vendor.from_json``) with native constraints only: a Python validator per field cost
several times the parse. The parser refuses raw control characters, invalid UTF-8 and unpaired
surrogates itself; the one thing it reads that storage cannot hold, the ``\\u0000`` escape, is refused
by a scan of the raw body. Times are kept as sent and converted once per payload in ``to_alerts``.
The generic shape is no storm path: it keeps its Python validators, which name the offending field.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails

from bot.triage.alert import (
    MAX_KEY,
    MAX_LABELS,
    MAX_TEXT,
    MAX_VALUE,
    AlertIn,
    SafeStr,
    Source,
    alert_name,
    make_alert,
    raw_severity,
    service_of,
    to_epoch,
)
from bot.triage.prepared import Prepared, prepare, prepared_from
from bot.triage.severity import normalise_severity

MAX_ALERTS = 5000
NUL_REASON = "payload contains a NUL character (\\u0000), which no alert field may hold"
_WALKED_ESCAPES = 8


def _epoch_or_none(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        if isinstance(v, bool):
            raise ValueError("a time must be an RFC 3339 string or epoch seconds")
        return None
    if not isinstance(v, str | int | float):
        raise ValueError("a time must be an RFC 3339 string or epoch seconds")
    return to_epoch(v)


Time = Annotated[float | None, BeforeValidator(_epoch_or_none)]
Labels = dict[SafeStr, SafeStr]

# What ``AlertIn`` holds labels and annotations to, as constraints pydantic-core checks by itself.
Key = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY)]
LabelValue = Annotated[str, StringConstraints(max_length=MAX_VALUE)]
AnnotationValue = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
VendorLabels = Annotated[dict[Key, LabelValue], Field(max_length=MAX_LABELS)]
VendorAnnotations = Annotated[dict[Key, AnnotationValue], Field(max_length=MAX_LABELS)]
RawTime = Any  # RFC 3339 text, epoch seconds or null: checked by ``_epoch_or_none`` in ``to_alerts``


class UnsafeText(ValueError):
    """Text no alert field may hold (a NUL character, an unpaired surrogate)."""


def _backslashes_before(raw: bytes, at: int) -> int:
    """How many backslashes end just before ``at``: an even number means ``raw[at]`` starts an escape."""
    run = 0
    while at > run and raw[at - run - 1] == 0x5C:
        run += 1
    return run


def has_nul_escape(raw: bytes) -> bool:
    """Whether JSON text holds the escape ``\\u0000`` (JSON ``"\\\\u0000"`` is the harmless text \\u0000).

    The first escapes are visited by memchr, which is all most bodies have; past those, a substring search
    finds candidates and the backslashes before each say whether it is an escape."""
    at = raw.find(b"\\")
    for _ in range(_WALKED_ESCAPES):
        if at < 0:
            return False
        if raw.startswith(b"u0000", at + 1):
            return True
        at = raw.find(b"\\", at + 2)
    while at >= 0:
        at = raw.find(b"\\u0000", at)
        if at < 0:
            return False
        if _backslashes_before(raw, at) % 2 == 0:
            return True
        at += 1
    return False


def refuse_nul(raw: bytes) -> None:
    """Raise ``UnsafeText`` if JSON text holds the ``\\u0000`` escape."""
    if has_nul_escape(raw):
        raise UnsafeText(NUL_REASON)


def refuse_unsafe(data: Any) -> None:
    """Hold Python data to what ``Vendor.from_json`` holds a body to: no NUL, no unpaired surrogate."""
    try:
        text = json.dumps(data, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeText("payload holds a string that is not valid Unicode (unpaired surrogate)") from None
    except (ValueError, RecursionError) as exc:  # a cycle, or nesting too deep to serialise
        raise UnsafeText(f"payload cannot be read as JSON: {type(exc).__name__}") from None
    refuse_nul(text)


class _Epochs:
    """One payload's times as epoch seconds, with every bad one recorded under its location.

    A storm repeats a handful of timestamps, so each distinct text is parsed once per payload."""

    __slots__ = ("cache", "errors")

    def __init__(self) -> None:
        self.cache: dict[str, float | None] = {}
        self.errors: list[InitErrorDetails] = []

    def of(self, value: Any, index: int, name: str) -> float | None:
        if type(value) is str:
            hit = self.cache.get(value, -1.0)  # -1.0: not cached (an epoch is never negative)
            if hit != -1.0:
                return hit
        try:
            epoch = _epoch_or_none(value)
        except ValueError as exc:
            self.problem(("alerts", index, name), value, exc)
            return None
        if type(value) is str:
            self.cache[value] = epoch
        return epoch

    def problem(self, loc: tuple[str | int, ...], value: Any, exc: ValueError) -> None:
        self.errors.append({"type": "value_error", "loc": loc, "input": value, "ctx": {"error": exc}})


class _Ignoring(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Vendor(_Ignoring):
    """A vendor webhook: unknown fields ignored; read with ``from_json``, which also refuses ``\\u0000``."""

    @classmethod
    def from_json(cls, body: bytes) -> Self:
        """The payload, or ``ValidationError`` (bad JSON or shape), or ``UnsafeText`` (a NUL escape)."""
        payload = cls.model_validate_json(body)
        refuse_nul(body)
        return payload

    @model_validator(mode="after")
    def _hold_python_input_to_json_rules(self, info: ValidationInfo) -> Self:
        # JSON was checked by the parser and ``refuse_nul``; Python data (``model_validate``) is checked here.
        if info.mode != "json":
            refuse_unsafe(self.model_dump())
        return self

    def to_alerts(self) -> list[AlertIn]:
        raise NotImplementedError

    def to_prepared(self) -> list[Prepared]:
        """What ``prepare`` makes of ``to_alerts()``, without the ``AlertIn``s in between (the journaled path)."""
        raise NotImplementedError


class AMAlert(_Ignoring):
    """One alert, held natively to ``AlertIn``'s limits (see ``to_alerts``)."""

    status: Literal["firing", "resolved"]
    labels: VendorLabels = Field(default_factory=dict)
    annotations: VendorAnnotations = Field(default_factory=dict)
    startsAt: RawTime = None
    endsAt: RawTime = None
    generatorURL: str = Field(default="", max_length=2000)
    fingerprint: str | None = Field(default=None, max_length=300)

    def kept_annotations(self) -> dict[str, str]:
        return self.annotations


T = TypeVar("T")
# Builds one normalised alert from (source, name, status, severity, service, labels, annotations, starts_at,
# ends_at, generator_url, own fingerprint): ``AlertIn`` (``_alert_in``) or a ``Prepared`` (``prepared_from``).
Build = Callable[[Source, str, str, str, str, dict[str, str], dict[str, str], float, float | None, str, str | None], T]


def _alert_in(source: Source, name: str, status: str, severity: str, service: str, labels: dict[str, str],
              annotations: dict[str, str], starts_at: float, ends_at: float | None, generator_url: str,
              fingerprint: str | None) -> AlertIn:
    return AlertIn(source=source, name=name, status=status, severity=severity,  # type: ignore[arg-type]
                   service=service, labels=labels, annotations=annotations, starts_at=starts_at, ends_at=ends_at,
                   generator_url=generator_url, fingerprint=fingerprint)


def _vendor_alerts(source: Source, alerts: Sequence[AMAlert], title: str, build: Build[T]) -> list[T]:
    """Normalised alerts with ``make_alert``'s derivations, built directly: ``make_alert`` costs more per call.

    The model and ``Vendor.from_json`` already held every string to ``AlertIn``'s rules, and the status
    is one of the two words. Times are converted here; a bad one is a ``ValidationError`` at its location
    (``alerts.3.startsAt``), like any other field's."""
    now = time.time()
    epochs = _Epochs()
    levels: dict[str, str] = {}  # the sender's severity word -> the normalised level, once per payload
    out = []
    for i, a in enumerate(alerts):
        labels, annotations, status = a.labels, a.kept_annotations(), a.status
        starts = epochs.of(a.startsAt, i, "startsAt")
        ends = epochs.of(a.endsAt, i, "endsAt")
        if len(annotations) > MAX_LABELS:  # Grafana's links can push a full set over
            epochs.problem(("alerts", i, "annotations"), None, ValueError(f"annotations: at most {MAX_LABELS} entries"))
        word = raw_severity(labels)
        level = levels.get(word)
        if level is None:
            level = levels[word] = normalise_severity(word)
        out.append(build(source, alert_name(labels, annotations)[:300], status, level, service_of(labels)[:300],
                         labels, annotations, starts or now, ends if status == "resolved" else None, a.generatorURL,
                         a.fingerprint or None))
    if epochs.errors:
        raise ValidationError.from_exception_data(title, epochs.errors)
    return out


class AlertmanagerWebhook(Vendor):
    version: Literal["4"]
    groupKey: str = ""
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AMAlert] = Field(min_length=1, max_length=MAX_ALERTS)

    def to_alerts(self) -> list[AlertIn]:
        return _vendor_alerts("alertmanager", self.alerts, type(self).__name__, _alert_in)

    def to_prepared(self) -> list[Prepared]:
        return _vendor_alerts("alertmanager", self.alerts, type(self).__name__, prepared_from)


class GrafanaAlert(AMAlert):
    values: dict[str, Any] | None = None
    valueString: str = ""
    dashboardURL: str = ""
    panelURL: str = ""
    silenceURL: str = ""

    def kept_annotations(self) -> dict[str, str]:
        """The annotations plus the dashboard and panel links (unless the sender set those keys)."""
        if not (self.dashboardURL or self.panelURL):
            return self.annotations
        ann = dict(self.annotations)
        for key, url in (("dashboard_url", self.dashboardURL), ("panel_url", self.panelURL)):
            if url and len(url) <= 2000:
                ann.setdefault(key, url)
        return ann


class GrafanaWebhook(Vendor):
    receiver: str = ""
    status: Literal["firing", "resolved"]
    orgId: int = 0
    alerts: list[GrafanaAlert] = Field(min_length=1, max_length=MAX_ALERTS)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    version: str = "1"
    groupKey: str = ""
    truncatedAlerts: int = 0
    title: str = ""
    state: str = ""
    message: str = ""

    def to_alerts(self) -> list[AlertIn]:
        return _vendor_alerts("grafana", self.alerts, type(self).__name__, _alert_in)

    def to_prepared(self) -> list[Prepared]:
        return _vendor_alerts("grafana", self.alerts, type(self).__name__, prepared_from)


class GenericAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SafeStr = Field(min_length=1, max_length=300)
    status: Literal["firing", "resolved"] = "firing"
    severity: SafeStr = Field(default="", max_length=50)
    service: SafeStr = Field(default="", max_length=300)
    summary: SafeStr = Field(default="", max_length=4000)
    description: SafeStr = Field(default="", max_length=20000)
    labels: Labels = Field(default_factory=dict)
    annotations: Labels = Field(default_factory=dict)
    starts_at: Time = None
    ends_at: Time = None
    url: SafeStr = Field(default="", max_length=2000)
    fingerprint: SafeStr | None = Field(default=None, max_length=300)


class GenericWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: SafeStr = Field(default="", max_length=64, description="free-form name of the sender")
    alerts: list[GenericAlert] = Field(min_length=1, max_length=MAX_ALERTS)

    def to_alerts(self) -> list[AlertIn]:
        now = time.time()
        out = []
        for a in self.alerts:
            labels = {"alertname": a.name, **a.labels}
            if a.service:
                labels.setdefault("service", a.service)
            if a.severity:
                labels.setdefault("severity", a.severity)
            if self.source:
                labels.setdefault("sender", self.source)
            ann = dict(a.annotations)
            if a.summary:
                ann.setdefault("summary", a.summary)
            if a.description:
                ann.setdefault("description", a.description)
            out.append(make_alert(source="generic", labels=labels, annotations=ann, status=a.status,
                                  starts_at=a.starts_at, ends_at=a.ends_at if a.status == "resolved" else None,
                                  generator_url=a.url, fingerprint=a.fingerprint, name=a.name,
                                  severity=a.severity or None, service=a.service or None, now=now))
        return out

    def to_prepared(self) -> list[Prepared]:
        return [prepare(a) for a in self.to_alerts()]


Payload = type[AlertmanagerWebhook] | type[GrafanaWebhook] | type[GenericWebhook]

PAYLOADS: dict[str, Payload] = {
    "alertmanager": AlertmanagerWebhook,
    "grafana": GrafanaWebhook,
    "generic": GenericWebhook,
}
