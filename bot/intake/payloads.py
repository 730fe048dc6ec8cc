"""Pydantic models of what alert senders post, and their conversion to ``AlertIn``.

* Alertmanager webhook, version 4 (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)
* Grafana unified alerting webhook contact point (Alertmanager-like, plus ``orgId``, ``state``, ``title``,
  ``message``, per-alert ``values``/``valueString``/``dashboardURL``/``panelURL``/``silenceURL``)
* onwatch's generic shape (documented in docs/triage.md)

Unknown fields of the two vendor formats are ignored (they grow over versions); the generic shape is
strict so that a typo is answered with its name.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from bot.triage.alert import AlertIn, AnnotationMap, LabelMap, SafeStr, make_alert, to_epoch

MAX_ALERTS = 5000


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


class _Vendor(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AMAlert(_Vendor):
    """One alert. Labels and annotations are held to ``AlertIn``'s limits here, once (see ``to_alerts``)."""

    status: Literal["firing", "resolved"]
    labels: LabelMap = Field(default_factory=dict)
    annotations: AnnotationMap = Field(default_factory=dict)
    startsAt: Time = None
    endsAt: Time = None
    generatorURL: SafeStr = Field(default="", max_length=2000)
    fingerprint: SafeStr | None = Field(default=None, max_length=300)


class AlertmanagerWebhook(_Vendor):
    version: Literal["4"]
    groupKey: SafeStr = ""
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: SafeStr = ""
    groupLabels: Labels = Field(default_factory=dict)
    commonLabels: Labels = Field(default_factory=dict)
    commonAnnotations: Labels = Field(default_factory=dict)
    externalURL: SafeStr = ""
    alerts: list[AMAlert] = Field(min_length=1, max_length=MAX_ALERTS)

    def to_alerts(self) -> list[AlertIn]:
        now = time.time()
        return [
            make_alert(source="alertmanager", labels=a.labels, annotations=a.annotations, status=a.status,
                       starts_at=a.startsAt, ends_at=a.endsAt if a.status == "resolved" else None,
                       generator_url=a.generatorURL, fingerprint=a.fingerprint, now=now, checked=True)
            for a in self.alerts
        ]


class GrafanaAlert(AMAlert):
    values: dict[str, Any] | None = None
    valueString: SafeStr = ""
    dashboardURL: SafeStr = ""
    panelURL: SafeStr = ""
    silenceURL: SafeStr = ""


class GrafanaWebhook(_Vendor):
    receiver: SafeStr = ""
    status: Literal["firing", "resolved"]
    orgId: int = 0
    alerts: list[GrafanaAlert] = Field(min_length=1, max_length=MAX_ALERTS)
    groupLabels: Labels = Field(default_factory=dict)
    commonLabels: Labels = Field(default_factory=dict)
    commonAnnotations: Labels = Field(default_factory=dict)
    externalURL: SafeStr = ""
    version: SafeStr = "1"
    groupKey: SafeStr = ""
    truncatedAlerts: int = 0
    title: SafeStr = ""
    state: SafeStr = ""
    message: SafeStr = ""

    def to_alerts(self) -> list[AlertIn]:
        now = time.time()
        out = []
        for a in self.alerts:
            ann = dict(a.annotations)
            for key, url in (("dashboard_url", a.dashboardURL), ("panel_url", a.panelURL)):
                if url and len(url) <= 2000:
                    ann.setdefault(key, url)
            out.append(make_alert(source="grafana", labels=a.labels, annotations=ann, status=a.status,
                                  starts_at=a.startsAt, ends_at=a.endsAt if a.status == "resolved" else None,
                                  generator_url=a.generatorURL, fingerprint=a.fingerprint, now=now))
        return out


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


PAYLOADS: dict[str, type[AlertmanagerWebhook] | type[GrafanaWebhook] | type[GenericWebhook]] = {
    "alertmanager": AlertmanagerWebhook,
    "grafana": GrafanaWebhook,
    "generic": GenericWebhook,
}
