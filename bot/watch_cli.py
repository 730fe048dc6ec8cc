"""``onwatch watch list|close``: the operator's view of the early warnings (watch items) that are live.

``close`` is for an item whose condition became the new normal, or whose series no longer reports: the checks
close an item only when they read its series and find it healthy. The close is audited as the operator's and
a reply under the item's post says who closed it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bot.audit import Actor
from bot.config import Settings, load_settings
from bot.messages.format import terminal_line, utc_time
from bot.operator_cli import operator, run_on_database
from bot.store.db import Database
from bot.store.models import WatchItem
from bot.watch.store import live_items

# closes a live item by id with a reply in chat (wired by bot.cli to bot.app.close_watch_item)
Close = Callable[[Settings, Database, int, str, Actor], Awaitable[bool]]
MAX_REASON = 500


def _row(item: WatchItem) -> dict[str, Any]:
    started = item.detail.get("started_at")
    return {"id": item.id, "key": item.key, "kind": item.kind, "service": item.service, "signal": item.signal,
            "status": item.status, "title": item.title,
            "started_at": started if isinstance(started, int | float) else None, "opened_at": item.opened_at,
            "last_seen_at": item.last_seen_at, "incident_id": item.incident_id}


def list_main(args: argparse.Namespace) -> int:
    settings = load_settings(getattr(args, "config", None))
    rows = [_row(i) for i in run_on_database(settings, live_items)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no live early warnings")
    for r in rows:
        where = f" -> {r['incident_id']}" if r["incident_id"] else ""
        print(f"{r['id']:>6}  {r['status']:<9} since {utc_time(r['started_at'] or r['opened_at'])}  "
              f"last seen {utc_time(r['last_seen_at'])}{where}  {terminal_line(r['title'])}")
    return 0


def close_main(args: argparse.Namespace, close: Close) -> int:
    """Exit 0 when closed, 1 when no live item has that id, 2 on a bad argument."""
    reason = " ".join(str(args.reason or "").split())
    if len(reason) > MAX_REASON:
        print(f"onwatch watch close: --reason is {len(reason)} characters; at most {MAX_REASON}", file=sys.stderr)
        return 2
    settings = load_settings(getattr(args, "config", None))
    who = operator()
    done = run_on_database(settings, lambda db: close(settings, db, args.id, reason, who))
    if not done:
        print(f"onwatch watch close: no live early warning has id {args.id} (onwatch watch list shows them)",
              file=sys.stderr)
        return 1
    print(f"closed early warning {args.id}")
    return 0
