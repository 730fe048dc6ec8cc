"""The incident lifecycle, in one place: statuses, phases, the moves allowed between them, and ``transition``.

``status`` is where the incident stands (open, mitigated, resolved); ``phase`` is what onwatch is doing about
it (the root card shows it). Triage, investigation and remediation change them only through ``transition``
(triage, which changes many incidents in one statement, through ``plan`` and ``audit_entry``), which checks
the move against the table below and writes the row, its audit entry and an outbox event in the caller's
transaction — all three or none. The stored strings are the enum values, so rows written before the enums
read back unchanged.

Allowed phase moves (target <- the phases it may follow):

    new                 <- resolved                      (a related alert reopened it)
    investigating       <- any phase but resolved        (a new look may be asked for at any time)
    cause_found,
    inconclusive        <- investigating, cause_found, inconclusive   (a later answer replaces an earlier one)
    remediation phases  <- any phase but resolved        (they follow the latest proposal's step)
    resolved            <- any phase but resolved        (all of its alerts resolved)

Allowed status moves: open -> mitigated (with phase ``verified``: a fix held) | resolved; mitigated -> resolved;
resolved -> open (reopened, phase ``new``). An incident is ``resolved`` exactly when its phase is ``resolved``:
a late step on a resolved incident (an investigation asked for afterwards, a verification) is recorded in its
own rows, not in the phase.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.audit import Actor, AuditEntry, audit
from bot.errors import NotFound, OnwatchError
from bot.incidents.outbox import EventKind, emit
from bot.store.db import Database
from bot.store.models import Incident


class IncidentStatus(StrEnum):
    OPEN = "open"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"


class IncidentPhase(StrEnum):
    NEW = "new"
    INVESTIGATING = "investigating"
    CAUSE_FOUND = "cause_found"
    INCONCLUSIVE = "inconclusive"
    AWAITING_APPROVAL = "awaiting_approval"
    REJECTED = "rejected"
    EXECUTING = "executing"
    EXECUTED = "executed"
    FAILED = "failed"
    EXECUTION_UNKNOWN = "execution_unknown"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    NOT_RECOVERED = "not_recovered"
    RESOLVED = "resolved"


P = IncidentPhase
S = IncidentStatus
ALL_PHASES = frozenset(IncidentPhase)
LIVE_PHASES = ALL_PHASES - {P.RESOLVED}
INVESTIGATION_RESULTS = frozenset({P.CAUSE_FOUND, P.INCONCLUSIVE})
REMEDIATION_PHASES = frozenset({P.AWAITING_APPROVAL, P.REJECTED, P.EXECUTING, P.EXECUTED, P.FAILED,
                                P.EXECUTION_UNKNOWN, P.VERIFYING, P.VERIFIED, P.NOT_RECOVERED})

# target phase -> the phases it may follow
PHASE_MOVES: dict[IncidentPhase, frozenset[IncidentPhase]] = {
    P.NEW: frozenset({P.RESOLVED}),
    P.INVESTIGATING: LIVE_PHASES,
    **{p: frozenset({P.INVESTIGATING}) | INVESTIGATION_RESULTS for p in INVESTIGATION_RESULTS},
    **{p: LIVE_PHASES for p in REMEDIATION_PHASES},
    P.RESOLVED: LIVE_PHASES,
}
# status -> the statuses it may move to (staying is always allowed)
STATUS_MOVES: dict[IncidentStatus, frozenset[IncidentStatus]] = {
    S.OPEN: frozenset({S.MITIGATED, S.RESOLVED}),
    S.MITIGATED: frozenset({S.RESOLVED}),
    S.RESOLVED: frozenset({S.OPEN}),
}


class IllegalTransition(OnwatchError):
    """A move the lifecycle does not have (e.g. a cause found without an investigation, a resolved incident
    mitigated). Raised before anything is written."""


class IncidentNotFound(NotFound):
    """The incident a transition names does not exist."""


@dataclass(frozen=True, slots=True)
class Move:
    """One checked move of one incident."""

    incident_id: str
    from_status: IncidentStatus
    from_phase: IncidentPhase
    to_status: IncidentStatus
    to_phase: IncidentPhase

    @property
    def audit_action(self) -> str:
        if self.to_status == self.from_status:
            return "incident.phase"
        return "incident.reopened" if self.to_status == S.OPEN else f"incident.{self.to_status}"

    def params(self) -> dict[str, str]:
        return {"from_status": str(self.from_status), "from_phase": str(self.from_phase),
                "to_status": str(self.to_status), "to_phase": str(self.to_phase)}


def _status(value: str) -> IncidentStatus:
    try:
        return IncidentStatus(value)
    except ValueError:
        raise IllegalTransition(f"unknown incident status {value!r}") from None


def _phase(value: str) -> IncidentPhase:
    try:
        return IncidentPhase(value)
    except ValueError:
        raise IllegalTransition(f"unknown incident phase {value!r}") from None


def plan(incident_id: str, from_status: str, from_phase: str, to_phase: IncidentPhase,
         to_status: IncidentStatus | None = None) -> Move:
    """Check a move against the tables; raise ``IllegalTransition`` when the lifecycle does not have it."""
    fs, fp = _status(from_status), _phase(from_phase)
    ts = fs if to_status is None else IncidentStatus(to_status)
    tp = IncidentPhase(to_phase)
    if ts != fs and ts not in STATUS_MOVES[fs]:
        raise IllegalTransition(f"incident {incident_id} cannot go from {fs} to {ts}")
    if (ts == S.RESOLVED) != (tp == P.RESOLVED):
        raise IllegalTransition(f"incident {incident_id}: status {ts} does not go with phase {tp}")
    if ts != fs and fs == S.RESOLVED and tp != P.NEW:
        raise IllegalTransition(f"incident {incident_id}: a reopened incident starts at phase new, not {tp}")
    if ts != fs and ts == S.MITIGATED and tp != P.VERIFIED:
        raise IllegalTransition(f"incident {incident_id}: it is mitigated by a verified fix, not at phase {tp}")
    if tp != fp and fp not in PHASE_MOVES[tp]:
        raise IllegalTransition(f"incident {incident_id} cannot go from phase {fp} to {tp}")
    return Move(incident_id, fs, fp, ts, tp)


def audit_entry(move: Move, actor: Actor, *, result: str = "", params: dict[str, Any] | None = None) -> AuditEntry:
    """The audit row of ``move`` (triage appends it with its batch's other rows)."""
    return AuditEntry(actor, move.audit_action, incident_id=move.incident_id,
                      params={**move.params(), **(params or {})}, result=result)


async def transition(
    session: AsyncSession,
    db: Database,
    incident_id: str,
    to_phase: IncidentPhase,
    actor: Actor,
    *,
    to_status: IncidentStatus | None = None,
    result: str = "",
    params: dict[str, Any] | None = None,
    late_ok: bool = False,
) -> Move | None:
    """Move the incident to ``to_phase`` (and ``to_status``): row, audit entry and outbox event, in ``session``.

    Returns the move, or None when nothing was written: the incident is already there, or (``late_ok``) the
    move is not allowed from where it stands now because something else moved it first (an investigation
    finishing after the incident was resolved). Without ``late_ok`` such a move raises ``IllegalTransition``;
    either way nothing is written for it.
    """
    q = select(Incident.status, Incident.phase).where(Incident.id == incident_id)
    if db.is_postgres:
        q = q.with_for_update()
    row = (await session.exec(q)).first()
    if row is None:
        raise IncidentNotFound(f"no incident {incident_id}")
    cur_status, cur_phase = row
    target_status = IncidentStatus(to_status) if to_status is not None else _status(cur_status)
    if (cur_status, cur_phase) == (target_status, to_phase):
        return None
    try:
        move = plan(incident_id, cur_status, cur_phase, to_phase, target_status)
    except IllegalTransition:
        if late_ok:
            return None
        raise
    now = time.time()
    values: dict[str, Any] = {"status": str(move.to_status), "phase": str(move.to_phase), "updated_at": now}
    if move.to_status != move.from_status:
        values["resolved_at"] = now if move.to_status == S.RESOLVED else None
    res = await session.exec(  # type: ignore[call-overload]
        update(Incident)
        .where(col(Incident.id) == incident_id, col(Incident.status) == cur_status, col(Incident.phase) == cur_phase)
        .values(**values)
    )
    if res.rowcount != 1:
        return None  # moved by another writer between the read and the update (SQLite reads without a row lock)
    entry = audit_entry(move, actor, result=result, params=params)
    await audit(db, actor, entry.action, incident_id=incident_id, params=entry.params, result=entry.result,
                session=session)
    await emit(session, incident_id, EventKind.INCIDENT_CHANGED, move.params())
    return move
