"""Silences: who may mute alerts, for how long, and with what matchers; every change audited.

A silence is the one thing a person in chat can do that turns alerting off, so it is guarded like an
approval: the actor must belong to ``silences.groups`` (names of ``approvals.groups``; empty means any
approvals group), it lasts at most ``silences.max_duration_s``, and a matcher set that would match every
alert (``alertname=~.*``, negations only) is refused unless ``confirm_all`` is given. Creating and removing
one each write an audit row in the same transaction. The CLI acts as an operator (``principals=None``):
it already holds the database, so the group check does not apply to it; the limits do.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import update
from sqlmodel import col, select

from bot.audit import Actor, audit
from bot.config import Settings
from bot.errors import OnwatchError
from bot.messages.format import utc_time
from bot.store.db import Database
from bot.store.models import Silence
from bot.triage.suppress import bad_matchers, matches_everything


class Refusal(StrEnum):
    UNAUTHORISED = "unauthorised"
    TOO_LONG = "too_long"
    MATCHES_ALL = "matches_all"
    BAD_MATCHER = "bad_matcher"
    NOT_FOUND = "not_found"


class SilenceRefused(OnwatchError):
    """A silence was not created or removed; ``message`` says why and what to do instead."""

    def __init__(self, refusal: Refusal, message: str):
        self.refusal = refusal
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class SilenceView:
    id: int
    matchers: dict[str, str]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str

    @property
    def shown_matchers(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.matchers.items())


def _view(row: Silence) -> SilenceView:
    return SilenceView(int(row.id or 0), dict(row.matchers), row.starts_at, row.ends_at, row.created_by, row.comment)


def silencers(settings: Settings) -> frozenset[str]:
    """The identities allowed to silence from chat (``slack:U…``, ``slack:S…`` user groups, ``teams:<id>``)."""
    groups = settings.silences.groups or list(settings.approvals.groups)
    return frozenset(m for g in groups for m in settings.approvals.groups.get(g, []))


def may_silence(settings: Settings, actor: Actor, principals: frozenset[str] | None) -> bool:
    """``principals=None`` is an operator at the CLI; a chat user must hold one of ``silencers``."""
    if principals is None:
        return True
    return bool((principals | {actor.key}) & silencers(settings))


def _authorise(settings: Settings, actor: Actor, principals: frozenset[str] | None, what: str) -> None:
    if not may_silence(settings, actor, principals):
        groups = ", ".join(settings.silences.groups or list(settings.approvals.groups)) or "(none configured)"
        raise SilenceRefused(Refusal.UNAUTHORISED,
                             f"Only members of {groups} may {what} silences; ask one of them, or an operator "
                             "(`onwatch silences`).")


def check_new(settings: Settings, matchers: Mapping[str, str], duration_s: int, confirm_all: bool) -> None:
    """Refuse a silence that is too long, has a broken regex, or would mute every alert unconfirmed."""
    limit = settings.silences.max_duration_s
    if duration_s <= 0 or duration_s > limit:
        raise SilenceRefused(Refusal.TOO_LONG, f"A silence lasts at most {fmt_duration(limit)} "
                                               "(silences.max_duration_s); use a shorter duration.")
    broken = bad_matchers(matchers)
    if broken:
        raise SilenceRefused(Refusal.BAD_MATCHER, f"Not a valid regular expression: {', '.join(broken)[:200]}.")
    if matches_everything(matchers) and not confirm_all:
        raise SilenceRefused(Refusal.MATCHES_ALL,
                             "Those matchers match every alert, so this would mute all alerting. Name a label "
                             "value (e.g. service=checkout), or add `confirm-all` if you really mean it.")


async def create(db: Database, settings: Settings, actor: Actor, principals: frozenset[str] | None,
                 matchers: Mapping[str, str], duration_s: int, comment: str = "", *, confirm_all: bool = False,
                 incident_id: str | None = None, now: float | None = None) -> SilenceView:
    """Create a silence (and its audit row, atomically) after the checks above."""
    _authorise(settings, actor, principals, "create")
    check_new(settings, matchers, duration_s, confirm_all)
    at = time.time() if now is None else now
    row = Silence(matchers=dict(matchers), starts_at=at, ends_at=at + duration_s, created_by=actor.key[:200],
                  comment=comment[:1000])
    async with db.begin() as s:
        s.add(row)
        await s.flush()
        await audit(db, actor, "silence.created", incident_id=incident_id,
                    params={"silence_id": row.id, "matchers": dict(matchers), "duration_s": duration_s,
                            "comment": comment[:1000], "matches_all": matches_everything(matchers)},
                    session=s)
    return _view(row)


async def remove(db: Database, settings: Settings, actor: Actor, principals: frozenset[str] | None,
                 silence_id: int, *, now: float | None = None) -> SilenceView:
    """End an active silence now (one conditional update and its audit row)."""
    _authorise(settings, actor, principals, "remove")
    at = time.time() if now is None else now
    async with db.begin() as s:
        res = await s.exec(update(Silence).where(col(Silence.id) == silence_id, col(Silence.ends_at) > at)  # type: ignore[call-overload]
                           .values(ends_at=at))
        if res.rowcount != 1:
            raise SilenceRefused(Refusal.NOT_FOUND, f"There is no active silence {silence_id}; `silences` lists them.")
        row = await s.get(Silence, silence_id)
        assert row is not None
        await audit(db, actor, "silence.removed", params={"silence_id": silence_id, "matchers": dict(row.matchers)},
                    session=s)
        return _view(row)


async def active(db: Database, now: float | None = None) -> list[SilenceView]:
    at = time.time() if now is None else now
    async with db.session() as s:
        rows = (await s.exec(select(Silence).where(col(Silence.starts_at) <= at, col(Silence.ends_at) > at)
                             .order_by(col(Silence.id)))).all()
    return [_view(r) for r in rows]


def fmt_duration(seconds: float) -> str:
    s = int(seconds)
    if s % 86400 == 0:
        return f"{s // 86400}d"
    if s % 3600 == 0:
        return f"{s // 3600}h"
    return f"{max(1, s // 60)}m"


def created_note(made: SilenceView, who: str) -> str:
    """The note everyone in the channel sees when a silence starts (from chat or the CLI), with its undo."""
    return (f"🔕 {who} silenced alerts matching {made.shown_matchers or '(everything)'} for "
            f"{fmt_duration(round(made.ends_at - made.starts_at))} (until {utc_time(made.ends_at)}), silence {made.id}. "
            f"Undo: `unsilence {made.id}`.")


def removed_note(gone: SilenceView, who: str) -> str:
    """The note everyone in the channel sees when a silence is ended early."""
    return f"🔔 {who} removed silence {gone.id} ({gone.shown_matchers}); those alerts page again."
