"""Times for people: ISO 8601 with an explicit offset in a chosen zone, and on-call shift boundaries.

Everything is stored as Unix seconds (UTC); only what is shown or bucketed depends on a zone, and shift
boundaries are local times of day, so a shift keeps its wall-clock start across daylight-saving changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = ZoneInfo("UTC")


def zone(name: str | None) -> ZoneInfo:
    """The named IANA zone, UTC when the name is empty or unknown (a viewer's bad ``tz`` is not an error)."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def iso(ts: float | None, tz: dt.tzinfo = UTC) -> str | None:
    """``2025-03-01T14:03:07+01:00`` (seconds precision), or None for no time."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


def parse_hm(hm: str) -> dt.time:
    h, m = hm.split(":")
    return dt.time(int(h), int(m))


def shift_bounds(start: float, end: float, starts: Sequence[str], tz: dt.tzinfo) -> list[tuple[float, float]]:
    """The on-call shifts overlapping [start, end): each from one local boundary to the next, in order."""
    times = sorted(parse_hm(s) for s in starts)
    first = dt.datetime.fromtimestamp(start, tz).date() - dt.timedelta(days=1)
    last = dt.datetime.fromtimestamp(end, tz).date() + dt.timedelta(days=1)
    points: list[float] = []
    day = first
    while day <= last:
        for t in times:
            # fold=0: an ambiguous local time (clocks going back) is its first occurrence
            points.append(dt.datetime.combine(day, t, tzinfo=tz).timestamp())
        day += dt.timedelta(days=1)
    points = sorted(set(points))
    return [(a, b) for a, b in zip(points, points[1:], strict=False) if b > start and a < end]
