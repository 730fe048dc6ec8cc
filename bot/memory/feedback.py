"""People's word on an incident: "Confirm cause", "Wrong cause" (a ranked alternative or a named service and
kind) and "What fixed it" (a runbook run or free text).

One domain path for Slack, Teams and the CLI. The person is authorised here, every time, like an approver
but against ``memory.feedback_groups`` (members of those ``approvals.groups``; any approvals group when the
list is empty); the CLI is an operator on the host and is trusted. Each change is one transaction: the
``incident_feedback`` row, an audit row carrying the previous value (so edits are visible), and the
incident's memory when it already exists. Feedback stays editable until the incident is closed: resolved
for longer than ``memory.edit_window_s``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.audit import Actor, audit
from bot.config import Settings
from bot.errors import OnwatchError
from bot.memory.grade import Grade
from bot.store.db import Database
from bot.store.models import Execution, Finding, Incident, IncidentFeedback, Investigation, Memory, Proposal

NAME = re.compile(r"^[A-Za-z0-9_.:/@-]{1,300}$")
KIND = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
MAX_NOTE = 2000
TRUSTED_PLATFORMS = frozenset({"cli"})
DEFAULT_EDIT_WINDOW_S = 7 * 86400.0


class FeedbackError(OnwatchError):
    """Feedback that cannot be taken; the message says what to do instead."""


class FeedbackNotAllowed(FeedbackError):
    """The person is not in the feedback groups."""


class FeedbackClosed(FeedbackError):
    """The incident is closed: its feedback can no longer change."""


class CauseChoice(StrEnum):
    CONFIRMED = "confirmed"  # the leading ranked cause, as it stood
    RANKED = "ranked"  # another of the ranked causes
    FREE = "free"  # a service and kind the person named


@dataclass(frozen=True, slots=True)
class RankedCause:
    rank: int
    service: str
    kind: str
    confidence: float


@dataclass(frozen=True, slots=True)
class FixOption:
    proposal_id: str
    title: str
    status: str


@dataclass(frozen=True, slots=True)
class FeedbackState:
    """Everything a feedback message or the CLI shows about one incident."""

    incident_id: str
    closed: bool
    causes: tuple[RankedCause, ...]
    fixes: tuple[FixOption, ...]
    feedback: IncidentFeedback | None


def allowed_principals(settings: Settings) -> frozenset[str]:
    groups = settings.approvals.groups
    names = settings.memory.feedback_groups or list(groups)
    missing = [g for g in names if g not in groups]
    if missing:
        raise FeedbackError(f"memory.feedback_groups names {', '.join(missing)}, which approvals.groups does not "
                            "define; ask an operator to fix the settings")
    return frozenset(p for g in names for p in groups[g])


def authorise(settings: Settings, actor: Actor, principals: frozenset[str]) -> None:
    if actor.platform in TRUSTED_PLATFORMS:
        return
    allowed = allowed_principals(settings)
    if not (frozenset(principals) | {actor.key}) & allowed:
        who = ", ".join(settings.memory.feedback_groups) or "any approvals group"
        raise FeedbackNotAllowed(f"Only members of {who} may confirm causes and record fixes; nothing was changed.")


def is_closed(inc: Incident, edit_window_s: float, now: float) -> bool:
    """Closed: marked so, or resolved for longer than the edit window."""
    if inc.status == "closed":
        return True
    return inc.status == "resolved" and inc.resolved_at is not None and now - inc.resolved_at > edit_window_s


async def _ranked(s: AsyncSession, incident_id: str) -> tuple[RankedCause, ...]:
    inv = (await s.exec(select(Investigation).where(Investigation.incident_id == incident_id,
                                                    Investigation.status == "done")
                        .order_by(col(Investigation.finished_at).desc()))).first()
    if inv is None:
        return ()
    rows = (await s.exec(select(Finding).where(Finding.investigation_id == inv.id).order_by(col(Finding.rank)))).all()
    return tuple(RankedCause(f.rank, f.service, f.kind, f.confidence) for f in rows)


async def _fixes(s: AsyncSession, incident_id: str) -> tuple[FixOption, ...]:
    rows = (await s.exec(select(Proposal.id, Proposal.title, Execution.status)
                         .join(Execution, col(Execution.proposal_id) == col(Proposal.id))
                         .where(Proposal.incident_id == incident_id)
                         .order_by(col(Execution.started_at)))).all()
    return tuple(FixOption(pid, title, status) for pid, title, status in rows)


async def state(db: Database, incident_id: str, edit_window_s: float = DEFAULT_EDIT_WINDOW_S,
                now: float | None = None) -> FeedbackState:
    async with db.session() as s:
        inc = await s.get(Incident, incident_id)
        if inc is None:
            raise FeedbackError(f"There is no incident {incident_id}.")
        return FeedbackState(inc.id, is_closed(inc, edit_window_s, time.time() if now is None else now),
                             await _ranked(s, inc.id), await _fixes(s, inc.id), await s.get(IncidentFeedback, inc.id))


async def _open_for_edit(s: AsyncSession, settings: Settings, incident_id: str, now: float) -> tuple[
        Incident, IncidentFeedback]:
    inc = await s.get(Incident, incident_id)
    if inc is None:
        raise FeedbackError(f"There is no incident {incident_id}.")
    if is_closed(inc, settings.memory.edit_window_s, now):
        raise FeedbackClosed(f"{inc.id} is closed; its cause and fix can no longer be changed.")
    fb = await s.get(IncidentFeedback, inc.id)
    return inc, fb if fb is not None else IncidentFeedback(incident_id=inc.id)


async def _refresh_memory(s: AsyncSession, fb: IncidentFeedback) -> None:
    """An incident already remembered takes the person's word at once (and becomes confirmed)."""
    mem = (await s.exec(select(Memory).where(Memory.incident_id == fb.incident_id))).first()
    if mem is None:
        return
    if fb.cause_service:
        mem.cause_service, mem.cause_kind = fb.cause_service, fb.cause_kind
        mem.cause_text = fb.cause_note or f"{fb.cause_kind.replace('_', ' ')} in {fb.cause_service}"
        mem.grade, mem.graded_by, mem.graded_at = Grade.CONFIRMED, fb.cause_by, fb.cause_at
        mem.grade_note = f"cause {fb.cause_choice} by {fb.cause_by_name or fb.cause_by}"
    if fb.fix:
        mem.fix = fb.fix
    s.add(mem)


async def set_cause(
    db: Database, settings: Settings, incident_id: str, actor: Actor, principals: frozenset[str] = frozenset(), *,
    confirm: bool = False, rank: int | None = None, service: str = "", kind: str = "", note: str = "",
    now: float | None = None,
) -> IncidentFeedback:
    """Confirm the leading cause (``confirm``), pick another ranked one (``rank``), or name one
    (``service`` and ``kind``). A later call replaces the earlier answer; both are in the audit trail."""
    authorise(settings, actor, principals)
    now = time.time() if now is None else now
    note = " ".join(note.split())[:MAX_NOTE]
    async with db.begin() as s:
        inc, fb = await _open_for_edit(s, settings, incident_id.upper(), now)
        if confirm or rank is not None:
            ranked = await _ranked(s, inc.id)
            want = 1 if confirm else rank
            picked = next((c for c in ranked if c.rank == want), None)
            if picked is None:
                raise FeedbackError(
                    f"{inc.id} has no ranked cause #{want}" + (" to confirm" if confirm else "")
                    + "; name the cause instead: `cause SERVICE KIND [why]`.")
            service, kind = picked.service, picked.kind
            choice = CauseChoice.CONFIRMED if want == 1 else CauseChoice.RANKED
        else:
            if not NAME.match(service):
                raise FeedbackError(f"`{service[:40]}` is not a service name (letters, digits and _ . : / @ -).")
            if not KIND.match(kind):
                raise FeedbackError(f"`{kind[:40]}` is not a cause kind; use a word like deploy, cpu_saturation, "
                                    "dependency_failure, config_change.")
            choice = CauseChoice.FREE
        before = {"service": fb.cause_service, "kind": fb.cause_kind, "by": fb.cause_by} if fb.cause_service else None
        fb.cause_service, fb.cause_kind, fb.cause_choice, fb.cause_note = service, kind, choice, note
        fb.cause_by, fb.cause_by_name, fb.cause_at, fb.updated_at = actor.key, actor.name, now, now
        s.add(fb)
        await _refresh_memory(s, fb)
        await audit(db, actor, "memory.cause_confirmed" if choice == CauseChoice.CONFIRMED else "memory.cause_corrected",
                    incident_id=inc.id,
                    params={"service": service, "kind": kind, "choice": str(choice), "note": note, "previous": before},
                    result=f"{service} {kind}", session=s)
    return fb


async def set_fix(
    db: Database, settings: Settings, incident_id: str, actor: Actor, principals: frozenset[str] = frozenset(), *,
    proposal_id: str = "", text: str = "", now: float | None = None,
) -> IncidentFeedback:
    """Record what fixed the incident: one of its runbook runs (``proposal_id``) or free text."""
    authorise(settings, actor, principals)
    now = time.time() if now is None else now
    text = " ".join(text.split())[:MAX_NOTE]
    async with db.begin() as s:
        inc, fb = await _open_for_edit(s, settings, incident_id.upper(), now)
        if proposal_id:
            run = next((f for f in await _fixes(s, inc.id) if f.proposal_id == proposal_id), None)
            if run is None:
                raise FeedbackError(f"That runbook did not run for {inc.id}; say what fixed it: `fixed TEXT`.")
            text = text or run.title
        elif not text:
            raise FeedbackError("Say what fixed it: `fixed rolled back payments-api to v41`.")
        before = {"fix": fb.fix, "by": fb.fix_by} if fb.fix else None
        fb.fix, fb.fix_proposal_id = text, proposal_id
        fb.fix_by, fb.fix_by_name, fb.fix_at, fb.updated_at = actor.key, actor.name, now, now
        s.add(fb)
        await _refresh_memory(s, fb)
        await audit(db, actor, "memory.fix_recorded", incident_id=inc.id,
                    params={"fix": text, "proposal_id": proposal_id, "previous": before}, result=text, session=s)
    return fb
