"""The chat verbs, shared by every adapter: ``investigate``, ``status``, ``silence``, ``help``.

Text a user types is parsed into one of these verbs and their plain arguments; it is never evaluated,
formatted into a query, or passed to a shell. Errors the user caused come back as an ephemeral reply
that says what to type instead.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from sqlmodel import col, select

from bot.audit import Actor, audit
from bot.chat.hub import ThreadOrigin
from bot.chat.model import Message, Text
from bot.context import AppContext
from bot.store.models import Incident, Silence

INCIDENT_ID = re.compile(r"^INC-[0-9A-F]{4,12}$", re.IGNORECASE)
MATCHER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,63})=([^=\n]{1,200})$")
DURATION = re.compile(r"^(\d{1,4})([mhd])$")
MAX_SILENCE_S = 7 * 86400
MAX_TEXT = 2000

HELP = (
    "*onwatch commands*\n"
    "• `investigate` — in an incident thread: investigate that incident again\n"
    "• `investigate INC-1A2B3C` — investigate that incident\n"
    "• `investigate checkout is slow since 14:00` — open an incident for the services named and investigate\n"
    "• `status` / `status INC-1A2B3C` — where an incident stands (without an id: open incidents)\n"
    "• `silence service=checkout alertname=HighLatency 2h [comment]` — mute matching alerts (max 7d)\n"
    "• `help` — this list"
)


@dataclass(frozen=True, slots=True)
class CommandContext:
    actor: Actor
    platform: str
    channel: str
    incident_id: str | None
    origin: ThreadOrigin | None


@dataclass(frozen=True, slots=True)
class CommandReply:
    text: str
    message: Message | None = None
    ephemeral: bool = False


def _err(text: str) -> CommandReply:
    return CommandReply(text=text, ephemeral=True)


def parse_duration(raw: str) -> int | None:
    m = DURATION.match(raw.strip().lower())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return n * {"m": 60, "h": 3600, "d": 86400}[unit]


async def _incident(ctx: AppContext, incident_id: str) -> Incident | None:
    async with ctx.db.session() as s:
        return await s.get(Incident, incident_id.upper())


async def _investigate(ctx: AppContext, arg: str, cc: CommandContext) -> CommandReply:
    if not arg:
        if cc.incident_id is None:
            return _err("Which incident? Type `investigate INC-…`, or describe the problem "
                        "(`investigate checkout errors since 14:00`), or use it inside an incident's thread.")
        arg = cc.incident_id
    if INCIDENT_ID.match(arg):
        inc = await _incident(ctx, arg)
        if inc is None:
            return _err(f"There is no incident {arg.upper()}. Type `status` to list open incidents.")
        from bot.investigate.service import request_investigation

        inv_id = await request_investigation(ctx, inc.id, cc.actor)
        return CommandReply(text=f"Investigating {inc.id} ({inv_id}); the findings will appear in its thread.")
    if ctx.triage is None:
        return _err("Ad-hoc investigations are not available: triage is not running in this process.")
    incident_id = await ctx.triage.open_adhoc(arg, cc.actor, cc.origin)
    if incident_id is None:
        return _err("I could not find a service I know in that text. Name one, e.g. "
                    "`investigate checkout latency`, or give an incident id.")
    return CommandReply(text=f"Opened {incident_id} for “{arg[:200]}” and started investigating; "
                             "the findings will appear in its thread.")


async def _status(ctx: AppContext, arg: str, cc: CommandContext) -> CommandReply:
    from bot.chat.compose import status_message

    target = arg or cc.incident_id or ""
    if target:
        if not INCIDENT_ID.match(target):
            return _err(f"`{target[:40]}` is not an incident id (they look like INC-1A2B3C).")
        msg = await status_message(ctx.db, target.upper())
        if msg is None:
            return _err(f"There is no incident {target.upper()}. Type `status` to list open incidents.")
        return CommandReply(text=msg.fallback, message=msg)
    async with ctx.db.session() as s:
        rows = (await s.exec(select(Incident).where(Incident.status == "open")
                             .order_by(col(Incident.opened_at).desc()).limit(15))).all()
    if not rows:
        return CommandReply(text="No open incidents.")
    lines = [f"• {r.id} [{r.severity}] {r.title} — {r.phase}" for r in rows]
    text = "Open incidents:\n" + "\n".join(lines)
    return CommandReply(text=text, message=Message(blocks=(Text(text),), fallback=text))


async def _silence(ctx: AppContext, arg: str, cc: CommandContext) -> CommandReply:
    usage = "Usage: `silence service=checkout alertname=HighLatency 2h [comment]` (duration in m, h or d; max 7d)."
    try:
        tokens = shlex.split(arg)  # only splits words and quotes; nothing is evaluated
    except ValueError as exc:
        return _err(f"I could not read that ({exc}). {usage}")
    matchers: dict[str, str] = {}
    duration: int | None = None
    dur_tok = ""
    rest: list[str] = []
    for i, tok in enumerate(tokens):
        m = MATCHER.match(tok)
        if m and duration is None:
            matchers[m.group(1)] = m.group(2)
            continue
        if duration is None and (d := parse_duration(tok)) is not None:
            duration, dur_tok = d, tok
            rest = tokens[i + 1:]
            break
        return _err(f"I did not understand `{tok[:40]}`. {usage}")
    if not matchers:
        return _err(f"Name at least one label to match. {usage}")
    if duration is None or duration <= 0:
        return _err(f"Say how long. {usage}")
    if duration > MAX_SILENCE_S:
        return _err("A silence from chat lasts at most 7 days; use a shorter duration.")
    now = time.time()
    comment = " ".join(rest)[:1000]
    async with ctx.db.begin() as s:
        row = Silence(matchers=matchers, starts_at=now, ends_at=now + duration, created_by=cc.actor.key,
                      comment=comment)
        s.add(row)
        await s.flush()
        await audit(ctx.db, cc.actor, "silence.created", incident_id=cc.incident_id,
                    params={"silence_id": row.id, "matchers": matchers, "duration_s": duration, "comment": comment},
                    session=s)
    shown = " ".join(f"{k}={v}" for k, v in matchers.items())
    return CommandReply(text=f"Silenced alerts matching {shown} for {dur_tok} "
                             f"(until {time.strftime('%H:%M UTC', time.gmtime(now + duration))}).")


async def handle_command(ctx: AppContext, text: str, cc: CommandContext) -> CommandReply:
    """Run one chat command. Unknown verbs and bad arguments get an ephemeral reply saying what to do."""
    text = (text or "").strip()
    if len(text) > MAX_TEXT:
        return _err(f"That is too long ({len(text)} characters); keep commands under {MAX_TEXT}.")
    verb, _, arg = text.partition(" ")
    verb, arg = verb.lower(), arg.strip()
    if verb in ("", "help", "?"):
        return CommandReply(text=HELP, ephemeral=True)
    if verb == "investigate":
        return await _investigate(ctx, arg, cc)
    if verb == "status":
        return await _status(ctx, arg, cc)
    if verb == "silence":
        return await _silence(ctx, arg, cc)
    return _err(f"I don't know `{verb[:40]}`.\n{HELP}")
