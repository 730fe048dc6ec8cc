"""Suppression: silences, maintenance windows, known-noisy rules and flapping.

A suppressed alert is still stored and counted (nothing is lost), but it neither opens nor joins an
incident. Matchers are ``{label: value}``; a value starting with ``~`` is a regular expression that must
match the whole label value, and ``!`` negates (``!~`` negates a regex). ``alertname``/``service``/``severity``
also match the normalised fields when the labels lack them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from bot.config import TriageSettings
from bot.rfc3339 import parse_rfc3339
from bot.triage.alert import AlertIn


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _value_matches(expected: str, actual: str | None) -> bool:
    negate = expected.startswith("!")
    if negate:
        expected = expected[1:]
    if expected.startswith("~"):
        rx = _regex(expected[1:])
        ok = actual is not None and rx is not None and rx.fullmatch(actual) is not None
    else:
        ok = actual == expected
    return not ok if negate else ok


def alert_view(alert: AlertIn) -> dict[str, str]:
    """The labels matchers see: the alert's labels plus its normalised name, service and severity."""
    view = {"alertname": alert.name, "severity": alert.severity, "source": alert.source}
    if alert.service:
        view["service"] = alert.service
    view.update(alert.labels)
    return view


def matches(matchers: Mapping[str, str], view: Mapping[str, str]) -> bool:
    """True when every matcher holds (an empty matcher set matches nothing, so it can never silence all)."""
    if not matchers:
        return False
    return all(_value_matches(str(v), view.get(k)) for k, v in matchers.items())


def _when(value: Any) -> float | None:
    """A maintenance window's bound: epoch seconds or an RFC 3339 time with a zone (else the window is ignored)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_rfc3339(value if isinstance(value, datetime) else str(value))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Window:
    matchers: dict[str, str]
    starts: float
    ends: float
    why: str


def maintenance_windows(settings: TriageSettings) -> list[Window]:
    """``triage.maintenance`` as windows (an entry without matchers or with unreadable bounds is ignored)."""
    windows: list[Window] = []
    for mw in settings.maintenance:
        m = mw.get("matchers") or {}
        starts, ends = _when(mw.get("starts")), _when(mw.get("ends"))
        if isinstance(m, dict) and starts is not None and ends is not None:
            comment = str(mw.get("comment") or "")
            windows.append(Window({str(k): str(v) for k, v in m.items()}, starts, ends,
                                  f"maintenance{': ' + comment if comment else ''}"))
    return windows


@dataclass(frozen=True, slots=True)
class Suppressor:
    """Everything that can silence an alert at one moment, built once per ingested batch."""

    windows: tuple[Window, ...]
    noisy: tuple[dict[str, str], ...]
    flap_threshold: int
    flap_window_s: float

    @classmethod
    def build(cls, settings: TriageSettings, silences: Iterable[tuple[dict[str, str], float, float, str]]) -> Suppressor:
        windows = [Window(dict(m), s, e, f"silenced{': ' + c if c else ''}") for m, s, e, c in silences]
        windows += maintenance_windows(settings)
        return cls(tuple(windows), tuple(dict(r) for r in settings.noisy_rules), settings.flap_threshold,
                   float(settings.flap_window_s))

    def reason(self, alert: AlertIn, now: float) -> str:
        """Why the alert is suppressed by a rule (silence, maintenance, noisy rule), or ''."""
        if not self.windows and not self.noisy:
            return ""
        view = alert_view(alert)
        for w in self.windows:
            if w.starts <= now < w.ends and matches(w.matchers, view):
                return w.why[:300]
        for rule in self.noisy:
            if matches(rule, view):
                return "known noisy rule: " + ",".join(f"{k}={v}" for k, v in sorted(rule.items()))[:280]
        return ""

    def recent_flips(self, flips: list[float], now: float) -> list[float]:
        return [t for t in flips if now - t <= self.flap_window_s]

    def is_flapping(self, flips: list[float], now: float) -> bool:
        return len(flips) >= self.flap_threshold and len(self.recent_flips(flips, now)) >= self.flap_threshold


# Values a real label could take, of different shapes: a matcher set that matches every one of them for every
# label it names (``alertname=~.*``, ``service=~.+``, ``!x``) is treated as matching every alert.
_PROBES = ("x", "checkout", "HighLatency", "onwatch-probe-7f3a", "0", "payments_api.v2", "Ünïcode välue", "a b/c:d")


def matches_everything(matchers: Mapping[str, str]) -> bool:
    """True when ``matchers`` select no real subset of alerts: empty, or every matcher is a negation or a
    regular expression that accepts every probe value. Such a silence would mute all alerting."""
    if not matchers:
        return True
    for value in matchers.values():
        v = str(value)
        if v.startswith("!"):
            continue  # a negation keeps almost everything
        if not v.startswith("~"):
            return False  # an exact value selects
        rx = _regex(v[1:])
        if rx is None or not all(rx.fullmatch(p) for p in _PROBES):
            return False
    return True


def bad_matchers(matchers: Mapping[str, str]) -> list[str]:
    """Matchers whose regular expression does not compile (they would silently match nothing)."""
    out = []
    for k, v in matchers.items():
        body = str(v)[1:] if str(v).startswith("!") else str(v)
        if body.startswith("~") and _regex(body[1:]) is None:
            out.append(f"{k}={v}")
    return out
