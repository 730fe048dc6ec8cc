"""What a proactive check hands the watch (``WatchFinding``), and the states and outcomes of a watch item.

A finding is an early warning about one service, not a page: the detector (``bot.detect``) or the SLO slow-burn
check (``bot.slo``) says what it saw, keyed by a stable ``key`` so the same condition seen on the next tick is
recognised as the same warning. Bad findings are refused with a ``WatchFindingError`` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.errors import OnwatchError

MAX_KEY = 300
MAX_SERVICE = 300
MAX_SIGNAL = 200
MAX_TITLE = 500
MAX_SUMMARY = 2000
MAX_LABELS = 50


class WatchKind(StrEnum):
    DEGRADATION = "degradation"  # the streaming degradation detector (bot.detect)
    SLO_BURN = "slo_burn"  # the SLO slow-burn check (bot.slo)


class WatchStatus(StrEnum):
    OPEN = "open"  # posted, still seen
    ESCALATED = "escalated"  # an incident about its service is being investigated (incident_id set)
    CLOSED = "closed"  # recovered (or closed by hand)


class WatchOutcome(StrEnum):
    """What ``WatchService.observe`` did with a finding."""

    OPENED = "opened"  # a new item, audited and posted
    HELD = "held"  # its key already has a live item: last seen updated, nothing posted
    SILENCED = "silenced"  # an active silence matches its labels
    RATE_LIMITED = "rate_limited"  # its service had a new item less than the interval ago
    DISABLED = "disabled"  # watch.enabled is false


class WatchFindingError(OnwatchError):
    """A finding that cannot be taken: ``field`` names what is wrong."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"watch finding: {field_name}: {message}")


def _finite(name: str, v: float | None) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise WatchFindingError(name, f"must be a finite number, got {v!r}")
    return float(v)


def _text(name: str, v: Any, limit: int, *, required: bool) -> str:
    if not isinstance(v, str):
        raise WatchFindingError(name, f"must be a string, got {type(v).__name__}")
    if required and not v.strip():
        raise WatchFindingError(name, "must not be empty")
    if len(v) > limit:
        raise WatchFindingError(name, f"is {len(v)} characters long; at most {limit}")
    return v


@dataclass(frozen=True, slots=True)
class WatchFinding:
    """One early warning as a check sees it now.

    ``points`` are ``(unix seconds, value)`` of the signal around ``started_at`` (the chart); ``value`` is the
    current value and ``baseline`` what it usually is. ``labels`` are extra labels silences can match; the
    finding's own ``service``, ``signal``, ``kind`` and ``alertname`` (``name``, else the kind) always win.
    """

    kind: WatchKind
    key: str
    service: str
    signal: str
    title: str
    summary: str
    started_at: float
    value: float | None = None
    baseline: float | None = None
    unit: str = ""
    points: Sequence[tuple[float, float]] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        try:
            kind = WatchKind(self.kind)
        except ValueError:
            raise WatchFindingError("kind", f"{self.kind!r} is not one of {', '.join(WatchKind)}") from None
        object.__setattr__(self, "kind", kind)
        _text("key", self.key, MAX_KEY, required=True)
        _text("service", self.service, MAX_SERVICE, required=True)
        _text("signal", self.signal, MAX_SIGNAL, required=False)
        _text("title", self.title, MAX_TITLE, required=True)
        _text("summary", self.summary, MAX_SUMMARY, required=False)
        _text("unit", self.unit, 40, required=False)
        _text("name", self.name, MAX_SIGNAL, required=False)
        started = _finite("started_at", self.started_at)
        if started is None or started <= 0:
            raise WatchFindingError("started_at", "must be a Unix time in seconds")
        object.__setattr__(self, "started_at", started)
        object.__setattr__(self, "value", _finite("value", self.value))
        object.__setattr__(self, "baseline", _finite("baseline", self.baseline))
        pts: list[tuple[float, float]] = []
        for i, p in enumerate(self.points):
            if not isinstance(p, Sequence) or len(p) != 2:
                raise WatchFindingError(f"points[{i}]", "must be a (time, value) pair")
            t, v = _finite(f"points[{i}]", p[0]), _finite(f"points[{i}]", p[1])
            assert t is not None and v is not None
            pts.append((t, v))
        object.__setattr__(self, "points", tuple(sorted(pts)))
        if len(self.labels) > MAX_LABELS:
            raise WatchFindingError("labels", f"{len(self.labels)} labels; at most {MAX_LABELS}")
        labels: dict[str, str] = {}
        for name, value in self.labels.items():
            labels[_text("labels", name, MAX_SIGNAL, required=True)] = _text(f"labels.{name}", value, MAX_SUMMARY,
                                                                             required=False)
        object.__setattr__(self, "labels", labels)

    @property
    def alertname(self) -> str:
        return self.name or str(self.kind)

    def label_view(self) -> dict[str, str]:
        """The labels silences match (``bot.triage.suppress.matches``), like an alert's ``alert_view``."""
        return {**self.labels, "alertname": self.alertname, "service": self.service, "signal": self.signal,
                "kind": str(self.kind), "severity": "warning", "source": "watch"}


@dataclass(frozen=True, slots=True)
class PostRef:
    """Where a watch item was posted on one platform: replies (recovered, escalated) go to ``thread``."""

    platform: str
    channel: str
    thread: str

    def to_dict(self) -> dict[str, str]:
        return {"platform": self.platform, "channel": self.channel, "thread": self.thread}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PostRef | None:
        platform, channel, thread = d.get("platform"), d.get("channel"), d.get("thread")
        if not (isinstance(platform, str) and isinstance(channel, str) and isinstance(thread, str)):
            return None
        return cls(platform, channel, thread)
