"""The one parser of times that come from outside: RFC 3339 text (or epoch seconds), by pydantic.

A time without a zone (``2024-05-01T10:00:00``) is refused: the sender's clock zone is unknowable, and
guessing UTC silently shifts an alert by hours. Every sender onwatch speaks to (Alertmanager, Grafana,
Kubernetes, GitHub, Argo CD, case bundles) writes ``Z`` or an offset.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, TypeAdapter, ValidationError

_AWARE: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


def parse_datetime(value: str | datetime) -> datetime:
    """An aware datetime, or ``ValueError`` saying why the text is not an RFC 3339 time with a zone."""
    try:
        return _AWARE.validate_python(value)
    except ValidationError as exc:
        why = exc.errors(include_url=False)[0]["msg"]
        shown = value[:40] if isinstance(value, str) else value
        raise ValueError(f"not an RFC 3339 time with a zone (Z or +hh:mm): {shown!r}: {why}") from None


def parse_rfc3339(value: str | datetime) -> float:
    """Unix seconds of an RFC 3339 time (``2022-05-17T21:13:30Z``); ``ValueError`` when it is not one."""
    return parse_datetime(value.strip() if isinstance(value, str) else value).timestamp()
