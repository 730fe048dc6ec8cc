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

from bot import durations
from bot.acknowledge import acknowledge
from bot.audit import Actor
from bot.chat.compose import status_message
from bot.context import AppContext
from bot.errors import NotFound
from bot.investigate.requests import request_investigation
from bot.memory.feedback import FeedbackError, set_cause, set_fix
from bot.messages.model import Message, Text
from bot.ports import ThreadOrigin
from bot.store.models import Incident
from bot.triage import silences

INCIDENT_ID = re.compile(r"^INC-[0-9A-F]{4,12}$", re.IGNORECASE)
MATCHER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,63})=([^=\n]{1,200})$")
MAX_TEXT = 2000

HELP = (
    "*onwatch commands*\n"
    "• `investigate` — in an incident thread: investigate that incident again\n"
    "• `investigate INC-1A2B3C` — investigate that incident\n"
    "• `investigate checkout is slow since 14:00` — open an incident for the services named and investigate\n"
    "• `status` / `status INC-1A2B3C` — where an incident stands (without an id: open incidents)\n"
    "• `silence service=checkout alertname=HighLatency 2h [comment]` — mute matching alerts (silencers only)\n"
    "• `silences` / `unsilence ID` — list the active silences / end one now\n"
    "• `confirm [INC-…]` — in an incident thread: the leading cause was right\n"
    "• `cause [INC-…] #2` or `cause [INC-…] SERVICE KIND [why]` — the cause was another one\n"
    "• `fixed [INC-…] TEXT` — what fixed it\n"
    "• `ack` / `ack INC-1A2B3C` — acknowledge an incident: you are on it (counts for time to acknowledge)\n"
    "• `help` — this list"
)


@dataclass(frozen=True, slots=True)
class CommandContext:
    actor: Actor
    platform: str
    channel: str
    incident_id: str | None
    origin: ThreadOrigin | None
    principals: frozenset[str] = frozenset()  # identities the actor holds (user groups), for guarded verbs


@dataclass(frozen=True, slots=True)
class CommandReply:
    text: str
    message: Message | None = None
    ephemeral: bool = False
    title: str = ""  # a refusal's headline where a platform shows one (a Teams card), e.g. "Already acknowledged"


def _err(text: str, title: str = "") -> CommandReply:
    return CommandReply(text=text, ephemeral=True, title=title)


def parse_duration(raw: str) -> int | None:
    """A silence's length in chat (``90m``, ``2h``, ``1d``, any case); None when the word is not one."""
    try:
        return durations.parse_duration(raw.strip().lower(), units="mhd")
    except ValueError:
        return None


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
    target = arg or cc.incident_id or ""
    if target:
        if not INCIDENT_ID.match(target):
            return _err(f"`{target[:40]}` is not an incident id (they look like INC-1A2B3C).")
        msg = await status_message(ctx.db, target.upper(), ctx.settings.server.public_url)
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


FEEDBACK_VERBS = frozenset({"confirm", "cause", "fixed"})
FEEDBACK_VALUE = re.compile(r"^(INC-[0-9A-F]{4,12})\|(confirm|cause\|[1-9]|fix\|[A-Za-z0-9_-]{1,64})$")
RANK = re.compile(r"^#?([1-9])$")
SILENCE_VERBS = frozenset({"silence", "unsilence"})  # verbs whose actor must be authorised (principals needed)


async def _silence(ctx: AppContext, arg: str, cc: CommandContext) -> CommandReply:
    """``silence MATCHER… DURATION [comment]``: guarded by ``bot.triage.silences``; the answer is posted in
    the channel for everyone to see, with the way to undo it."""
    usage = ("Usage: `silence service=checkout alertname=HighLatency 2h [comment]` (duration in m, h or d; "
             f"at most {silences.fmt_duration(ctx.settings.silences.max_duration_s)}).")
    try:
        tokens = shlex.split(arg)  # only splits words and quotes; nothing is evaluated
    except ValueError as exc:
        return _err(f"I could not read that ({exc}). {usage}")
    matchers: dict[str, str] = {}
    duration: int | None = None
    confirm_all = False
    rest: list[str] = []
    for i, tok in enumerate(tokens):
        if tok.lower() in ("confirm-all", "--confirm-all"):
            confirm_all = True
            continue
        m = MATCHER.match(tok)
        if m:
            matchers[m.group(1)] = m.group(2)
            continue
        if (d := parse_duration(tok)) is not None:
            duration = d
            rest = tokens[i + 1:]
            break
        return _err(f"I did not understand `{tok[:40]}`. {usage}")
    if not matchers and not confirm_all:
        return _err(f"Name at least one label to match. {usage}")
    if duration is None:
        return _err(f"Say how long. {usage}")
    try:
        made = await silences.create(ctx.db, ctx.settings, cc.actor, cc.principals, matchers, duration,
                                     " ".join(rest)[:1000], confirm_all=confirm_all, incident_id=cc.incident_id)
    except silences.SilenceRefused as exc:
        return _err(str(exc))
    return CommandReply(text=silences.created_note(made, cc.actor.name or cc.actor.id))


async def _unsilence(ctx: AppContext, arg: str, cc: CommandContext) -> CommandReply:
    ident = arg.strip().lstrip("#")
    if not ident.isdigit() or len(ident) > 12:
        return _err("Usage: `unsilence ID` (`silences` lists the active ones).")
    try:
        gone = await silences.remove(ctx.db, ctx.settings, cc.actor, cc.principals, int(ident))
    except silences.SilenceRefused as exc:
        return _err(str(exc))
    return CommandReply(text=silences.removed_note(gone, cc.actor.name or cc.actor.id))


async def _silences(ctx: AppContext, cc: CommandContext) -> CommandReply:
    rows = await silences.active(ctx.db)
    if not rows:
        return CommandReply(text="No active silences.", ephemeral=True)
    lines = [f"• {r.id}: {r.shown_matchers} until {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(r.ends_at))} "
             f"by {r.created_by}" + (f" — {r.comment[:200]}" if r.comment else "") for r in rows[:30]]
    more = f"\n…and {len(rows) - 30} more (`onwatch silences list`)" if len(rows) > 30 else ""
    return CommandReply(text="Active silences:\n" + "\n".join(lines) + more, ephemeral=True)


async def _ack(ctx: AppContext, arg: str, cc: CommandContext) -> CommandReply:
    """``ack``: the person is on the incident; audited; the first one ends its time to acknowledge."""
    target = (arg.split() or [cc.incident_id or ""])[0]
    if not target:
        return _err("Which incident? Use `ack` in an incident's thread or name it: `ack INC-…`.")
    if not INCIDENT_ID.match(target):
        return _err(f"`{target[:40]}` is not an incident id (they look like INC-1A2B3C).")
    try:
        res = await acknowledge(ctx.db, target.upper(), cc.actor)
    except NotFound:
        return _err(f"There is no incident {target.upper()}. Type `status` to list open incidents.")
    if res.already:
        return _err(f"You already acknowledged {res.incident_id}.", title="Already acknowledged")
    await ctx.chat.incident_updated(res.incident_id)  # the root message names who acknowledged
    who = cc.actor.name or cc.actor.id
    return CommandReply(text=f"{who} acknowledged {res.incident_id}" + (" (first)" if res.first else "") + ".")


async def ack_click(ctx: AppContext, value: str, cc: CommandContext) -> CommandReply:
    """The Acknowledge button of an incident's root message: its value is the incident id, checked here, and
    it takes the same path as the ``ack`` command (one acknowledgement per person, audited)."""
    if not INCIDENT_ID.match(value or ""):
        return _err("That button is malformed; nothing was changed. Type `ack INC-…` instead.")
    return await _ack(ctx, value, cc)


async def _feedback_done(ctx: AppContext, incident_id: str, what: str) -> CommandReply:
    await ctx.chat.feedback_changed(incident_id, ctx.settings.memory.edit_window_s)
    return CommandReply(text=f"{incident_id}: {what}. Thank you — onwatch will remember it.")


async def _feedback(ctx: AppContext, verb: str, arg: str, cc: CommandContext) -> CommandReply:
    """``confirm``, ``cause``, ``fixed``: people's word on the cause and the fix (``bot.memory.feedback``)."""
    words = arg.split()
    incident_id = cc.incident_id
    if words and INCIDENT_ID.match(words[0]):
        incident_id, words = words[0].upper(), words[1:]
    if incident_id is None:
        return _err(f"Which incident? Use `{verb}` in an incident's thread or name it: `{verb} INC-…`.")
    try:
        if verb == "confirm":
            fb = await set_cause(ctx.db, ctx.settings, incident_id, cc.actor, cc.principals, confirm=True)
            return await _feedback_done(ctx, incident_id, f"cause confirmed: {fb.cause_kind} in {fb.cause_service}")
        if verb == "cause":
            if words and (m := RANK.match(words[0])):
                fb = await set_cause(ctx.db, ctx.settings, incident_id, cc.actor, cc.principals, rank=int(m.group(1)),
                                     note=" ".join(words[1:]))
            elif len(words) >= 2:
                fb = await set_cause(ctx.db, ctx.settings, incident_id, cc.actor, cc.principals, service=words[0],
                                     kind=words[1].lower(), note=" ".join(words[2:]))
            else:
                return _err("Usage: `cause #2` (one of the ranked causes) or `cause SERVICE KIND [why]`, "
                            "e.g. `cause payments-api deploy the v42 migration locked the table`.")
            return await _feedback_done(ctx, incident_id, f"cause recorded: {fb.cause_kind} in {fb.cause_service}")
        text = " ".join(words)
        if not text:
            return _err("Usage: `fixed TEXT`, e.g. `fixed rolled back payments-api to v41`.")
        fb = await set_fix(ctx.db, ctx.settings, incident_id, cc.actor, cc.principals, text=text)
        return await _feedback_done(ctx, incident_id, f"fix recorded: {fb.fix}")
    except FeedbackError as exc:
        return _err(str(exc))


async def feedback_click(ctx: AppContext, value: str, cc: CommandContext) -> CommandReply:
    """A feedback button. Its value names the incident and the choice; both are checked here, and the clicker
    is authorised by ``bot.memory.feedback`` every time."""
    m = FEEDBACK_VALUE.match(value or "")
    if m is None:
        return _err("That button is malformed; nothing was changed.")
    incident_id, choice = m.group(1).upper(), m.group(2)
    try:
        if choice == "confirm":
            fb = await set_cause(ctx.db, ctx.settings, incident_id, cc.actor, cc.principals, confirm=True)
            what = f"cause confirmed: {fb.cause_kind} in {fb.cause_service}"
        elif choice.startswith("cause|"):
            fb = await set_cause(ctx.db, ctx.settings, incident_id, cc.actor, cc.principals,
                                 rank=int(choice.split("|", 1)[1]))
            what = f"cause corrected: {fb.cause_kind} in {fb.cause_service}"
        else:
            fb = await set_fix(ctx.db, ctx.settings, incident_id, cc.actor, cc.principals,
                               proposal_id=choice.split("|", 1)[1])
            what = f"fix recorded: {fb.fix}"
    except FeedbackError as exc:
        return _err(str(exc))
    return await _feedback_done(ctx, incident_id, what)


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
    if verb == "unsilence":
        return await _unsilence(ctx, arg, cc)
    if verb == "silences":
        return await _silences(ctx, cc)
    if verb in ("ack", "acknowledge"):
        return await _ack(ctx, arg, cc)
    if verb in FEEDBACK_VERBS:
        return await _feedback(ctx, verb, arg, cc)
    return _err(f"I don't know `{verb[:40]}`.\n{HELP}")
