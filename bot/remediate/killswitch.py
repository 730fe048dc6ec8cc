"""The global kill switch for automatic execution.

Automatic execution runs only when BOTH the setting ``runbooks.auto_enabled`` is true AND the runtime flag
``auto_execution`` (a ``RuntimeFlag`` row shared by every replica) is not ``off``. ``onwatch auto off`` flips
the flag at once for all replicas; it is checked when a proposal is auto-approved and again right before
an automatic action executes. Human-approved actions are not affected.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from bot.audit import Actor, audit
from bot.config import Settings, load_settings
from bot.operator_cli import operator, run_on_database
from bot.store.db import Database
from bot.store.models import RuntimeFlag

FLAG_KEY = "auto_execution"


@dataclass(frozen=True, slots=True)
class SwitchState:
    setting: bool
    flag: str  # "on" | "off" | "" (never set)
    updated_by: str = ""
    updated_at: float | None = None

    @property
    def enabled(self) -> bool:
        return self.setting and self.flag != "off"

    def describe(self) -> str:
        why = []
        if not self.setting:
            why.append("runbooks.auto_enabled is false")
        if self.flag == "off":
            who = f" by {self.updated_by}" if self.updated_by else ""
            why.append(f"switched off{who}")
        return "on" if self.enabled else "off (" + "; ".join(why) + ")"


async def state(db: Database, settings: Settings) -> SwitchState:
    async with db.session() as s:
        row = await s.get(RuntimeFlag, FLAG_KEY)
    if row is None:
        return SwitchState(settings.runbooks.auto_enabled, "")
    return SwitchState(settings.runbooks.auto_enabled, row.value, row.updated_by, row.updated_at)


async def auto_enabled(db: Database, settings: Settings) -> bool:
    return (await state(db, settings)).enabled


async def set_auto(db: Database, on: bool, actor: Actor) -> None:
    """Flip the runtime flag (with an audit row in the same transaction)."""
    value = "on" if on else "off"
    async with db.begin() as s:
        row = await s.get(RuntimeFlag, FLAG_KEY, with_for_update=True)
        if row is None:
            s.add(RuntimeFlag(key=FLAG_KEY, value=value, updated_by=actor.key, updated_at=time.time()))
        else:
            row.value, row.updated_by, row.updated_at = value, actor.key, time.time()
            s.add(row)
        await audit(db, actor, f"auto.{value}", params={"flag": FLAG_KEY}, session=s)


def main(args: argparse.Namespace) -> int:
    """``onwatch auto on|off|status``."""
    settings = load_settings(getattr(args, "config", None))

    async def _run(db: Database) -> SwitchState:
        if args.state in {"on", "off"}:
            await set_auto(db, args.state == "on", operator())
        return await state(db, settings)

    st = run_on_database(settings, _run)
    print(f"automatic execution: {st.describe()}")
    return 0
