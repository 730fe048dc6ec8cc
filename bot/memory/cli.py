"""``onwatch memory import|list|show|forget`` and ``onwatch incidents confirm|correct``.

The CLI is an operator on the host: its feedback is trusted (no feedback group) and audited as ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from bot.config import Settings, load_settings
from bot.memory.feedback import set_cause, set_fix
from bot.memory.feedback import state as feedback_state
from bot.memory.postmortem import import_dir
from bot.memory.store import forget, get_memory, list_memories, memory_dict
from bot.operator_cli import operator, run_on_database
from bot.store.db import Database

T = TypeVar("T")


def _run(args: argparse.Namespace, fn: Callable[[Database, Settings], Awaitable[T]]) -> T:
    settings = load_settings(getattr(args, "config", None))
    return run_on_database(settings, lambda db: fn(db, settings))


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if t else "-"


def import_main(args: argparse.Namespace) -> int:
    async def go(db: Database, _: Settings) -> list[dict[str, Any]]:
        return [memory_dict(m) for m in await import_dir(db, Path(args.dir), operator())]

    rows = _run(args, go)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"imported {len(rows)} postmortem(s) as confirmed memories: " + ", ".join(r["ref"] for r in rows))
    return 0


def list_main(args: argparse.Namespace) -> int:
    async def go(db: Database, _: Settings) -> list[dict[str, Any]]:
        return [memory_dict(m) for m in await list_memories(db, args.limit)]

    rows = _run(args, go)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        cause = f"{r['cause_kind']} in {r['cause_service']}" if r["cause_service"] else "cause not established"
        print(f"{r['ref']:<24} {_when(r['resolved_at'])}  {r['grade']:<11} {cause}  — {r['title'][:60]}")
    if not rows:
        print("nothing remembered yet")
    return 0


def show_main(args: argparse.Namespace) -> int:
    async def go(db: Database, _: Settings) -> dict[str, Any]:
        return memory_dict(await get_memory(db, args.ref))

    r = _run(args, go)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['ref']}  {r['title']}")
    print(f"  grade:    {r['grade']}" + (f" ({r['grade_note']})" if r["grade_note"] else ""))
    print(f"  services: {', '.join(r['services'])}")
    print(f"  cause:    {r['cause_kind']} in {r['cause_service']}" + (f" — {r['cause']}" if r["cause"] else ""))
    print(f"  fix:      {r['fix'] or '-'}")
    sig = r["signature"] or {}
    for k in ("alertnames", "failure_classes", "signal_kinds", "log_templates"):
        if sig.get(k):
            print(f"  {k.replace('_', ' ')}: {', '.join(sig[k])}")
    if r.get("tags"):
        print(f"  tags:     {', '.join(r['tags'])}")
    if r.get("text"):
        print("\n" + r["text"])
    return 0


def forget_main(args: argparse.Namespace) -> int:
    async def go(db: Database, _: Settings) -> str:
        return (await forget(db, args.ref, operator())).ref

    print(f"forgot {_run(args, go)}")
    return 0


def feedback_main(args: argparse.Namespace) -> int:
    """``incidents confirm ID [--fix TEXT]`` and ``incidents correct ID (--rank N | --service S --kind K)``."""
    incident_id = str(args.id).upper()

    async def go(db: Database, settings: Settings) -> dict[str, Any]:
        actor = operator()
        if args.sub == "confirm":
            await set_cause(db, settings, incident_id, actor, confirm=True, note=args.note or "")
        elif args.rank is not None:
            await set_cause(db, settings, incident_id, actor, rank=args.rank, note=args.note or "")
        elif args.service or args.kind:
            if not (args.service and args.kind):
                raise SystemExit("onwatch: incidents correct: give both --service and --kind (or --rank N)")
            await set_cause(db, settings, incident_id, actor, service=args.service, kind=args.kind,
                            note=args.note or "")
        elif not args.fix:
            raise SystemExit("onwatch: incidents correct: give --rank N, or --service S --kind K, or --fix TEXT")
        if args.fix:
            await set_fix(db, settings, incident_id, actor, text=args.fix)
        st = await feedback_state(db, incident_id, settings.memory.edit_window_s)
        fb = st.feedback
        assert fb is not None
        return {"incident_id": incident_id, "cause_service": fb.cause_service, "cause_kind": fb.cause_kind,
                "cause_choice": fb.cause_choice, "cause_by": fb.cause_by, "fix": fb.fix, "fix_by": fb.fix_by}

    out = _run(args, go)
    if getattr(args, "json", False):
        print(json.dumps(out, indent=2))
    else:
        cause = f"{out['cause_kind']} in {out['cause_service']}" if out["cause_service"] else "not confirmed"
        print(f"{incident_id}: cause {cause}; fix {out['fix'] or 'not recorded'}")
    return 0
