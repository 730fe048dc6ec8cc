"""``onwatch silences list|add|remove``: the operator's view of silences (same limits as chat, audited).

Adding or removing one posts the same note as chat does, in the incident channel of each configured
platform, so a silence set from a terminal is as visible as one set in chat."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.config import Settings, load_settings
from bot.durations import parse_duration
from bot.errors import OnwatchError
from bot.messages.format import utc_time
from bot.operator_cli import operator, run_on_database
from bot.store.db import Database
from bot.triage import silences

T = TypeVar("T")
# posts a note where chat-created silences are announced; the platforms it reached (wired by bot.cli)
Notify = Callable[[Settings, Database, str], Awaitable[list[str]]]
MATCHER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,63})=([^=\n]{1,200})$")


class UsageError(OnwatchError):
    """A bad argument on the command line."""


def _run(args: argparse.Namespace, fn: Callable[[Database, Settings], Awaitable[T]]) -> T:
    settings = load_settings(getattr(args, "config", None))
    return run_on_database(settings, lambda db: fn(db, settings))


def list_main(args: argparse.Namespace) -> int:
    rows = _run(args, lambda db, _: silences.active(db))
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
        return 0
    if not rows:
        print("no active silences")
    for r in rows:
        print(f"{r.id:>6}  until {utc_time(r.ends_at)}  {r.created_by:<24} {r.shown_matchers}"
              + (f"  # {r.comment}" if r.comment else ""))
    return 0


def add_main(args: argparse.Namespace, notify: Notify | None = None) -> int:
    matchers: dict[str, str] = {}
    for m in args.matchers:
        hit = MATCHER.match(m)
        if not hit:
            raise UsageError(f"matcher {m[:60]!r} must look like label=value, label=~regex or label=!value")
        matchers[hit.group(1)] = hit.group(2)
    try:
        seconds = parse_duration(args.duration.strip().lower(), units="smhd")
    except ValueError:
        raise UsageError(f"--for {args.duration[:20]!r} must look like 30m, 2h or 1d") from None
    actor = operator()

    async def change(db: Database, st: Settings) -> tuple[silences.SilenceView, list[str]]:
        made = await silences.create(db, st, actor, None, matchers, seconds, args.comment or "",
                                     confirm_all=args.confirm_all)
        note = silences.created_note(made, f"{actor.name} (onwatch CLI)")
        return made, await notify(st, db, note) if notify is not None else []

    made, posted = _run(args, change)
    print(f"silence {made.id}: {made.shown_matchers} until {utc_time(made.ends_at)}{_posted(posted)}")
    return 0


def remove_main(args: argparse.Namespace, notify: Notify | None = None) -> int:
    actor = operator()

    async def change(db: Database, st: Settings) -> tuple[silences.SilenceView, list[str]]:
        gone = await silences.remove(db, st, actor, None, args.id)
        note = silences.removed_note(gone, f"{actor.name} (onwatch CLI)")
        return gone, await notify(st, db, note) if notify is not None else []

    gone, posted = _run(args, change)
    print(f"silence {gone.id} removed ({gone.shown_matchers}){_posted(posted)}")
    return 0


def _posted(platforms: list[str]) -> str:
    return f"; noted in the incident channel on {', '.join(platforms)}" if platforms else \
        "; no note posted (no chat incident channel configured or reachable)"
