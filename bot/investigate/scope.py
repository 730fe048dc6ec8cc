"""What one investigation is about: symptom services, onset, and the windows to compare.

The onset is the earliest alert start. An alert fires after its condition has held for a while (a
``for:`` clause, an evaluation window), so the fault is assumed to begin up to ``lead_s`` before it:
the baseline ends there and the incident window starts there, running to the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from integrations.base import TimeWindow


class ScopeError(ValueError):
    """The incident does not say enough to investigate (no alert start, no clock)."""


@dataclass(frozen=True, slots=True)
class Scope:
    symptoms: tuple[str, ...]
    onset: float
    now: float
    baseline: TimeWindow
    incident: TimeWindow
    lead_s: float = 60.0
    incident_id: str = ""
    title: str = ""
    alert_names: tuple[str, ...] = ()
    topology: Mapping[str, Sequence[str]] = field(default_factory=dict)  # caller -> callees, from settings
    owners: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "title": self.title,
            "symptoms": list(self.symptoms),
            "onset": self.onset,
            "now": self.now,
            "baseline": [self.baseline.start, self.baseline.end],
            "incident": [self.incident.start, self.incident.end],
            "alerts": list(self.alert_names),
        }


def build_scope(
    symptoms: Sequence[str],
    onset: float,
    now: float,
    *,
    lead_s: float = 60.0,
    baseline_s: float = 600.0,
    incident_id: str = "",
    title: str = "",
    alert_names: Sequence[str] = (),
    topology: Mapping[str, Sequence[str]] | None = None,
    owners: Mapping[str, str] | None = None,
) -> Scope:
    if now < onset:
        # a clock behind the alert: look at the alert moment itself
        now = onset
    cut = onset - lead_s
    return Scope(
        symptoms=tuple(sorted({s for s in symptoms if s})),
        onset=onset,
        now=now,
        baseline=TimeWindow(cut - baseline_s, cut),
        incident=TimeWindow(cut, now),
        lead_s=lead_s,
        incident_id=incident_id,
        title=title,
        alert_names=tuple(sorted(set(alert_names))),
        topology=dict(topology or {}),
        owners=dict(owners or {}),
    )


def scope_from_alertmanager(payload: Mapping[str, Any], now: float, **kw: Any) -> Scope:
    """A scope from an Alertmanager webhook payload (as in a case bundle's ``alert.json``)."""
    from integrations.replay import parse_time

    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise ScopeError("the alert payload holds no alerts")
    starts: list[float] = []
    services: list[str] = []
    names: list[str] = []
    for a in alerts:
        if not isinstance(a, Mapping):
            raise ScopeError("an alert is not an object")
        labels = a.get("labels") or {}
        try:
            starts.append(parse_time(str(a.get("startsAt", ""))))
        except ValueError:
            raise ScopeError(f"alert startsAt is not RFC 3339: {a.get('startsAt')!r}") from None
        svc = labels.get("service") or labels.get("job") or labels.get("app") or ""
        if svc:
            services.append(str(svc))
        if labels.get("alertname"):
            names.append(str(labels["alertname"]))
    title = str((alerts[0].get("annotations") or {}).get("summary", "")) or ", ".join(sorted(set(names)))
    return build_scope(services, min(starts), now, title=title, alert_names=names, **kw)
