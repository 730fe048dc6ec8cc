"""Severity: one four-level scale for alerts, and an incident's severity from its alerts and blast radius.

Incident severity starts at the worst firing alert's severity, then goes up one level when a user-facing
service is hit and one more when three or more services are hit: an SRE pages on customer impact and
breadth, not on the loudest label alone.
"""

from __future__ import annotations

from collections.abc import Iterable

LEVELS = ("info", "warning", "high", "critical")
RANK = {name: i for i, name in enumerate(LEVELS)}
PAGING = frozenset({"high", "critical"})
WIDE_BLAST = 3

_ALIASES = {
    "critical": "critical", "crit": "critical", "fatal": "critical", "emergency": "critical", "emerg": "critical",
    "alert": "critical", "page": "critical", "p1": "critical", "sev1": "critical", "sev-1": "critical",
    "sev0": "critical", "p0": "critical", "disaster": "critical", "blocker": "critical",
    "high": "high", "error": "high", "err": "high", "major": "high", "p2": "high", "sev2": "high",
    "sev-2": "high", "urgent": "high",
    "warning": "warning", "warn": "warning", "medium": "warning", "moderate": "warning", "minor": "warning",
    "p3": "warning", "sev3": "warning", "sev-3": "warning", "average": "warning", "ticket": "warning",
    "info": "info", "informational": "info", "information": "info", "low": "info", "p4": "info", "p5": "info",
    "sev4": "info", "sev5": "info", "none": "info", "notice": "info", "debug": "info", "ok": "info",
}


def normalise_severity(raw: str | None) -> str:
    """Map any source's severity word to critical | high | warning | info (unknown words: warning)."""
    if not raw:
        return "warning"
    key = raw.strip().lower().replace(" ", "")
    return _ALIASES.get(key, "warning")


def worst(severities: Iterable[str]) -> str:
    best = -1
    for s in severities:
        best = max(best, RANK.get(s, 1))
    return LEVELS[best] if best >= 0 else "warning"


def incident_severity(alert_severities: Iterable[str], services: Iterable[str],
                      user_facing: Iterable[str]) -> str:
    """Worst alert severity, +1 if a user-facing service is hit, +1 if three or more services are."""
    base = RANK[worst(alert_severities)]
    svc = {s for s in services if s}
    if svc & set(user_facing):
        base += 1
    if len(svc) >= WIDE_BLAST:
        base += 1
    return LEVELS[min(base, len(LEVELS) - 1)]


def is_page(severity: str) -> bool:
    """Whether an incident of this severity wakes someone up (counts against the two-pages-per-shift budget)."""
    return severity in PAGING
