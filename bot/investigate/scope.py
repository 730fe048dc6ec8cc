"""What one investigation is about: symptom services, onset, and the windows to compare.

The onset is the earliest alert start. An alert fires after its condition has held for a while (a
``for:`` clause, an evaluation window), so the fault is assumed to begin up to ``lead_s`` before it:
the baseline ends there and the incident window starts there, running to ``now``. A ``for: 10m`` rule fires
ten minutes after its condition first held: where the metrics source can say when that was (Prometheus'
``ALERTS_FOR_STATE``), the engine starts the incident ``lead_s`` before it (``Scope.starting_at``), so the
fault's first minutes are not read as the baseline.

``now`` follows one rule wherever an alert is investigated (a case bundle, an alert file on live sources,
the server): ``window_end`` - the alert's start plus ``LOOKAHEAD_S``, or an explicit ``--at`` time, never
past the source's clock (the wall clock live, the end of the case in replay). So an alert from last week is
investigated over last week's data, and the same data gives the same answer through replay and live.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from integrations.base import TimeWindow, parse_rfc3339

LOOKAHEAD_S = 900.0  # how far past the alert's start an investigation looks, at most


class ScopeError(ValueError):
    """The incident does not say enough to investigate (no alert start, no clock)."""


def window_end(onset: float, clock: float, *, at: float | None = None, lookahead_s: float = LOOKAHEAD_S) -> float:
    """The end of the incident window: ``at`` when given, else ``onset + lookahead_s``; never after ``clock``."""
    end = at if at is not None else onset + lookahead_s
    return min(end, clock)


def parse_at(text: str | None) -> float | None:
    """A time given on the command line (``--at``): RFC 3339 or Unix seconds; ``ScopeError`` otherwise."""
    if text is None:
        return None
    try:
        t = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(t):
            return t
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ScopeError(f"--at {text!r} is neither RFC 3339 (2024-05-17T21:13:30Z) nor Unix seconds") from None


def alert_onset(payload: Mapping[str, Any]) -> float:
    """The earliest ``startsAt`` of an Alertmanager webhook payload."""
    return _alerts(payload)[0]


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
    alert_labels: tuple[Mapping[str, str], ...] = ()  # each alert's labels, to ask the source when it began

    def starting_at(self, t: float) -> Scope:
        """This scope with its incident starting at ``t`` (earlier), the baseline as long as before just before it."""
        return replace(self, baseline=TimeWindow(t - self.baseline.seconds, t), incident=TimeWindow(t, self.now),
                       lead_s=self.onset - t)

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
    alert_labels: Sequence[Mapping[str, str]] = (),
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
        alert_labels=tuple(dict(a) for a in alert_labels),
    )


def _alerts(payload: Mapping[str, Any]) -> tuple[float, list[str], list[str], str, list[dict[str, str]]]:
    """(earliest start, services, alert names, title, labels) of a webhook payload; ``ScopeError`` when malformed."""
    alerts = payload.get("alerts") if isinstance(payload, Mapping) else None
    if not isinstance(alerts, list) or not alerts:
        raise ScopeError("the alert payload holds no alerts")
    starts: list[float] = []
    services: list[str] = []
    names: list[str] = []
    all_labels: list[dict[str, str]] = []
    for a in alerts:
        if not isinstance(a, Mapping):
            raise ScopeError("an alert is not an object")
        labels = a.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise ScopeError("an alert's labels are not an object")
        all_labels.append({str(k): str(v) for k, v in labels.items()})
        try:
            starts.append(parse_rfc3339(str(a.get("startsAt", ""))))
        except ValueError:
            raise ScopeError(f"alert startsAt is not RFC 3339: {a.get('startsAt')!r}") from None
        svc = labels.get("service") or labels.get("job") or labels.get("app") or ""
        if svc:
            services.append(str(svc))
        if labels.get("alertname"):
            names.append(str(labels["alertname"]))
    title = str((alerts[0].get("annotations") or {}).get("summary", "")) or ", ".join(sorted(set(names)))
    return min(starts), services, names, title, all_labels


def scope_from_alertmanager(payload: Mapping[str, Any], now: float, **kw: Any) -> Scope:
    """A scope from an Alertmanager webhook payload (as in a case bundle's ``alert.json``)."""
    onset, services, names, title, labels = _alerts(payload)
    return build_scope(services, onset, now, title=title, alert_names=names, alert_labels=labels, **kw)


def anchored_scope(payload: Mapping[str, Any], clock: float, *, at: float | None = None, **kw: Any) -> Scope:
    """A scope whose window ends where ``window_end`` says: the one rule of replay and live alike."""
    return scope_from_alertmanager(payload, window_end(alert_onset(payload), clock, at=at), **kw)
