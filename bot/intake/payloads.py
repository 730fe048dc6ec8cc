"""What alert senders post, parsed once by pydantic, and normalised alert by alert to ``AlertIn``.

* Alertmanager webhook, version 4 (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)
* Grafana unified alerting webhook contact point (Alertmanager-like, plus ``orgId``, ``state``, ``title``,
  ``message``, per-alert ``values``/``valueString``/``dashboardURL``/``panelURL``/``silenceURL``)
* onwatch's generic shape (documented in docs/triage.md)

The envelope is parsed from the body by pydantic-core; each alert of it is then validated on its own, so
one bad alert (a NUL byte, a label too long, a time without a zone) is refused alone and the others of the
batch are still triaged. Unknown fields of the two vendor formats are ignored (they grow over versions);
the generic shape is strict so that a typo is answered with its name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bot.triage.alert import AlertIn, make_alert, to_epoch

MAX_ALERTS = 5000
LOC_PART_CAP = 60  # a label key named in a reason is cut to this


def _time(v: Any) -> float | None:
    if isinstance(v, bool) or not (v is None or isinstance(v, str | int | float)):
        raise ValueError("a time must be an RFC 3339 string or epoch seconds")
    return to_epoch(v)


Time = Annotated[float | None, BeforeValidator(_time)]


def _printable(text: str) -> str:
    """A reason echoes what the sender wrote: keep it storable (no NUL, no unpaired surrogate)."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def describe(exc: ValidationError, prefix: tuple[str | int, ...] = (), limit: int = 5) -> str:
    """A pydantic refusal as one line naming each place (``alerts.3.startsAt: ...``)."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:limit]:
        loc = ".".join(str(p)[:LOC_PART_CAP] for p in (*prefix, *err["loc"])) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return _printable("payload does not match the expected shape: " + "; ".join(parts) + more)


@dataclass
class Normalised:
    """A body's alerts: those accepted, and for each refused one its index, reason and the item as sent."""

    alerts: list[AlertIn]
    refused: list[tuple[int, str, Any]]


class AMAlert(BaseModel):  # unknown fields are ignored (pydantic's default)
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: Time = None
    endsAt: Time = None
    generatorURL: str = ""
    fingerprint: str | None = None

    def kept_annotations(self) -> dict[str, str]:
        return self.annotations


class GrafanaAlert(AMAlert):
    values: dict[str, Any] | None = None
    valueString: str = ""
    dashboardURL: str = ""
    panelURL: str = ""
    silenceURL: str = ""

    def kept_annotations(self) -> dict[str, str]:
        """The annotations plus the dashboard and panel links (unless the sender set those keys)."""
        ann = dict(self.annotations)
        for key, url in (("dashboard_url", self.dashboardURL), ("panel_url", self.panelURL)):
            if url and len(url) <= 2000:
                ann.setdefault(key, url)
        return ann


class GenericAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=300)
    status: Literal["firing", "resolved"] = "firing"
    severity: str = Field(default="", max_length=50)
    service: str = Field(default="", max_length=300)
    summary: str = Field(default="", max_length=4000)
    description: str = Field(default="", max_length=20000)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: Time = None
    ends_at: Time = None
    url: str = Field(default="", max_length=2000)
    fingerprint: str | None = Field(default=None, max_length=300)


class Envelope(BaseModel):
    """A webhook body: its alerts are checked one by one by ``normalise`` (``alert_model``)."""

    alerts: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ALERTS)

    def normalise(self) -> Normalised:
        now = time.time()
        out = Normalised([], [])
        for i, item in enumerate(self.alerts):
            try:
                out.alerts.append(self.to_alert(item, now))
            except ValidationError as exc:
                out.refused.append((i, describe(exc, ("alerts", i)), item))
        return out

    def to_alert(self, item: dict[str, Any], now: float) -> AlertIn:
        raise NotImplementedError


def _vendor_alert(source: str, a: AMAlert, now: float) -> AlertIn:
    return make_alert(source=source, labels=a.labels, annotations=a.kept_annotations(), status=a.status,
                      starts_at=a.startsAt, ends_at=a.endsAt if a.status == "resolved" else None,
                      generator_url=a.generatorURL, fingerprint=a.fingerprint, now=now)


class AlertmanagerWebhook(Envelope):
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    groupKey: str = ""
    receiver: str = ""

    def to_alert(self, item: dict[str, Any], now: float) -> AlertIn:
        return _vendor_alert("alertmanager", AMAlert.model_validate(item), now)


class GrafanaWebhook(Envelope):
    status: Literal["firing", "resolved"]
    receiver: str = ""
    orgId: int = 0

    def to_alert(self, item: dict[str, Any], now: float) -> AlertIn:
        return _vendor_alert("grafana", GrafanaAlert.model_validate(item), now)


class GenericWebhook(Envelope):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(default="", max_length=64, description="free-form name of the sender")

    def to_alert(self, item: dict[str, Any], now: float) -> AlertIn:
        a = GenericAlert.model_validate(item)
        labels = {"alertname": a.name, **a.labels}
        for key, value in (("service", a.service), ("severity", a.severity), ("sender", self.source)):
            if value:
                labels.setdefault(key, value)
        ann = dict(a.annotations)
        if a.summary:
            ann.setdefault("summary", a.summary)
        if a.description:
            ann.setdefault("description", a.description)
        return make_alert(source="generic", labels=labels, annotations=ann, status=a.status, starts_at=a.starts_at,
                          ends_at=a.ends_at if a.status == "resolved" else None, generator_url=a.url,
                          fingerprint=a.fingerprint, name=a.name, severity=a.severity or None,
                          service=a.service or None, now=now)


PAYLOADS: dict[str, type[Envelope]] = {
    "alertmanager": AlertmanagerWebhook,
    "grafana": GrafanaWebhook,
    "generic": GenericWebhook,
}
