"""The incident lifecycle (bot.incidents): the table of moves, ``transition`` writing row + audit + outbox event
together or not at all, and the outbox delivering each event to the chat hub once — twice drained, two
publishers at once, a publisher that died holding a claim — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlmodel import func, select

from bot.audit import BOT, Actor, verify_chain
from bot.chat.hub import ChatHub
from bot.chat.outbox import HubRenderer
from bot.incidents import lifecycle
from bot.incidents.lifecycle import (
    IllegalTransition,
    IncidentNotFound,
    IncidentPhase,
    IncidentStatus,
    plan,
    transition,
)
from bot.incidents.outbox import EventKind, Outbox, OutboxEvent, emit, opened_params
from bot.messages.model import IncidentCard, Message
from bot.ports import ThreadOrigin
from bot.store.db import Database
from bot.store.models import AuditEvent, Incident, LifecycleEvent
from bot.triage.alert import make_alert
from tests.triage_fixtures import make_ctx

P, S = IncidentPhase, IncidentStatus
ANA = Actor("slack", "U1", "ana")


async def _incident(db: Database, inc_id: str = "INC-LC0001", status: str = "open", phase: str = "new") -> str:
    async with db.begin() as s:
        s.add(Incident(id=inc_id, title="checkout errors", status=status, phase=phase,
                       resolved_at=1.0 if status == "resolved" else None))
    return inc_id


async def _counts(db: Database) -> tuple[int, int]:
    async with db.session() as s:
        audits = (await s.exec(select(func.count()).select_from(AuditEvent))).one()
        events = (await s.exec(select(func.count()).select_from(LifecycleEvent))).one()
    return int(audits), int(events)


async def _row(db: Database, inc_id: str) -> tuple[str, str, float | None]:
    async with db.session() as s:
        inc = await s.get(Incident, inc_id)
    assert inc is not None
    return inc.status, inc.phase, inc.resolved_at


# ---------------------------------------------------------------- the table


def test_enums_keep_the_stored_strings() -> None:
    assert [str(s) for s in IncidentStatus] == ["open", "mitigated", "resolved"]
    assert P.CAUSE_FOUND == "cause_found" and P("execution_unknown") is P.EXECUTION_UNKNOWN
    assert set(lifecycle.PHASE_MOVES) == set(IncidentPhase)  # every phase has its row in the table


@pytest.mark.parametrize(("status", "phase", "to_phase", "to_status"), [
    ("open", "new", P.CAUSE_FOUND, None),  # a cause without an investigation
    ("open", "awaiting_approval", P.INCONCLUSIVE, None),
    ("open", "new", P.NEW, S.RESOLVED),  # resolved goes with phase resolved
    ("open", "investigating", P.RESOLVED, None),  # ... and phase resolved with status resolved
    ("resolved", "resolved", P.VERIFIED, S.MITIGATED),  # a resolved incident is not mitigated
    ("resolved", "resolved", P.EXECUTING, None),
    ("resolved", "resolved", P.INVESTIGATING, S.OPEN),  # reopened starts at new
    ("mitigated", "verified", P.NEW, S.OPEN),
    ("open", "new", P.NEW, S.MITIGATED),
    ("open", "bogus", P.INVESTIGATING, None),  # an unknown stored phase is refused, not guessed
])
def test_plan_refuses_moves_the_lifecycle_lacks(status: str, phase: str, to_phase: IncidentPhase,
                                                to_status: IncidentStatus | None) -> None:
    with pytest.raises(IllegalTransition):
        plan("INC-X", status, phase, to_phase, to_status)


def test_plan_allows_the_flows_onwatch_takes() -> None:
    flow = [(P.INVESTIGATING, None), (P.CAUSE_FOUND, None), (P.AWAITING_APPROVAL, None), (P.EXECUTING, None),
            (P.VERIFYING, None), (P.VERIFIED, S.MITIGATED), (P.RESOLVED, S.RESOLVED), (P.NEW, S.OPEN)]
    status, phase = "open", "new"
    for to_phase, to_status in flow:
        move = plan("INC-X", status, phase, to_phase, to_status)
        status, phase = str(move.to_status), str(move.to_phase)
    assert (status, phase) == ("open", "new")
    assert plan("INC-X", "open", "cause_found", P.INVESTIGATING).audit_action == "incident.phase"
    assert plan("INC-X", "open", "verifying", P.VERIFIED, S.MITIGATED).audit_action == "incident.mitigated"
    assert plan("INC-X", "resolved", "resolved", P.NEW, S.OPEN).audit_action == "incident.reopened"


# ---------------------------------------------------------------- transition


async def test_illegal_transition_is_refused_and_writes_nothing(anydb: Database) -> None:
    inc = await _incident(anydb)
    before = await _counts(anydb)
    with pytest.raises(IllegalTransition):
        async with anydb.begin() as s:
            await transition(s, anydb, inc, P.CAUSE_FOUND, BOT)
    with pytest.raises(IllegalTransition):
        async with anydb.begin() as s:
            await transition(s, anydb, inc, P.VERIFIED, BOT, to_status=S.RESOLVED)
    assert await _counts(anydb) == before
    assert await _row(anydb, inc) == ("open", "new", None)
    with pytest.raises(IncidentNotFound):
        async with anydb.begin() as s:
            await transition(s, anydb, "INC-NONE00", P.INVESTIGATING, BOT)


async def test_late_move_is_skipped_without_writing(anydb: Database) -> None:
    inc = await _incident(anydb, status="resolved", phase="resolved")
    before = await _counts(anydb)
    async with anydb.begin() as s:  # an investigation finishing after the incident was resolved
        assert await transition(s, anydb, inc, P.VERIFIED, BOT, to_status=S.MITIGATED, late_ok=True) is None
        assert await transition(s, anydb, inc, P.RESOLVED, BOT, to_status=S.RESOLVED) is None  # already there
    assert await _counts(anydb) == before
    assert (await _row(anydb, inc))[:2] == ("resolved", "resolved")


async def test_transition_writes_row_audit_and_event_together(anydb: Database) -> None:
    inc = await _incident(anydb, phase="verifying")
    async with anydb.begin() as s:
        move = await transition(s, anydb, inc, P.VERIFIED, ANA, to_status=S.MITIGATED, result="fix held",
                                params={"execution_id": "exe_1"})
    assert move is not None and (move.from_phase, move.to_status) == (P.VERIFYING, S.MITIGATED)
    assert (await _row(anydb, inc))[:2] == ("mitigated", "verified")
    async with anydb.session() as s:
        (a,) = (await s.exec(select(AuditEvent).where(AuditEvent.incident_id == inc))).all()
        (e,) = (await s.exec(select(LifecycleEvent))).all()
    assert (a.action, a.actor_id, a.result) == ("incident.mitigated", "U1", "fix held")
    assert a.params == {"from_status": "open", "from_phase": "verifying", "to_status": "mitigated",
                        "to_phase": "verified", "execution_id": "exe_1"}
    assert (e.incident_id, e.kind, e.delivered_at) == (inc, "incident.changed", None)
    assert e.params["to_phase"] == "verified"
    # resolving stamps resolved_at, reopening clears it
    async with anydb.begin() as s:
        await transition(s, anydb, inc, P.RESOLVED, BOT, to_status=S.RESOLVED)
    assert (await _row(anydb, inc))[2] is not None
    async with anydb.begin() as s:
        await transition(s, anydb, inc, P.NEW, BOT, to_status=S.OPEN)
    assert await _row(anydb, inc) == ("open", "new", None)
    assert await _counts(anydb) == (3, 3)
    assert (await verify_chain(anydb)).ok


async def test_a_failure_mid_transition_keeps_none_of_the_three(anydb: Database,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    inc = await _incident(anydb, phase="investigating")
    before = await _counts(anydb)

    async def broken_emit(*args: Any, **kwargs: Any) -> None:  # the row and the audit entry are written by now
        raise RuntimeError("outbox insert failed")

    monkeypatch.setattr(lifecycle, "emit", broken_emit)
    with pytest.raises(RuntimeError):
        async with anydb.begin() as s:
            await transition(s, anydb, inc, P.CAUSE_FOUND, BOT)
    monkeypatch.undo()
    assert await _counts(anydb) == before and (await _row(anydb, inc))[:2] == ("open", "investigating")

    class Abort(Exception):
        pass

    with pytest.raises(Abort):  # the caller's own work fails after the transition: it goes too
        async with anydb.begin() as s:
            assert await transition(s, anydb, inc, P.CAUSE_FOUND, BOT) is not None
            raise Abort
    assert await _counts(anydb) == before and (await _row(anydb, inc))[:2] == ("open", "investigating")


async def test_concurrent_transitions_move_once(anydb: Database) -> None:
    """Two writers racing the same move: one writes it, the other finds it done (no second audit row)."""
    inc = await _incident(anydb, phase="investigating")

    async def move() -> object:
        async with anydb.begin() as s:
            return await transition(s, anydb, inc, P.CAUSE_FOUND, BOT)

    results = await asyncio.gather(move(), move(), move())
    assert sum(r is not None for r in results) == 1
    assert await _counts(anydb) == (1, 1)


# ---------------------------------------------------------------- the outbox and the hub


class _Recording:
    """A chat adapter on a real ChatHub: records what reaches the platform."""

    platform = "slack"

    def __init__(self) -> None:
        self.log: list[tuple[str, str, str]] = []

    async def announce(self, card: IncidentCard, origin: ThreadOrigin | None) -> None:
        self.log.append(("announce", card.incident_id, origin.thread_id if origin else ""))

    async def update_card(self, card: IncidentCard) -> None:
        self.log.append(("card", card.incident_id, card.phase))

    async def post(self, incident_id: str, message: Message) -> None:
        self.log.append(("post", incident_id, message.key))

    async def replace(self, incident_id: str, key: str, message: Message) -> None:
        self.log.append(("replace", incident_id, key))


def _outbox(db: Database, adapter: _Recording, hub: ChatHub | None = None, **kw: Any) -> Outbox:
    hub = hub or ChatHub(db, [adapter])
    box = Outbox(db, **kw)
    box.subscribe(HubRenderer(lambda: hub))
    return box


async def _events(db: Database, inc: str) -> None:
    origin = ThreadOrigin("slack", "C1", "171.01")
    async with db.begin() as s:
        await emit(s, inc, EventKind.INCIDENT_OPENED, opened_params(origin))
        await transition(s, db, inc, P.INVESTIGATING, BOT)
        await emit(s, inc, EventKind.NOTE, {"text": "Alert abc is flapping"})


async def test_each_event_is_rendered_once_even_if_drained_twice(anydb: Database) -> None:
    inc = await _incident(anydb)
    await _events(anydb, inc)
    rec = _Recording()
    box = _outbox(anydb, rec)
    assert await box.publish() == 3
    assert await box.publish() == 0  # drained again: nothing is rendered twice
    (note,) = [e for e in rec.log if e[0] == "post"]
    # the announcement already shows the phase the transition set, so the card is not edited for it again
    assert rec.log == [("announce", inc, "171.01"), note]
    async with anydb.session() as s:
        rows = (await s.exec(select(LifecycleEvent).order_by(LifecycleEvent.id))).all()  # type: ignore[arg-type]
    assert all(r.delivered_at is not None and r.attempts == 1 for r in rows)
    assert note[2] == f"event:{rows[-1].id}"  # the note is posted under its event's key


async def test_two_publishers_at_once_render_each_event_once(anydb: Database) -> None:
    incs = [await _incident(anydb, f"INC-LC{i:04d}") for i in range(6)]
    for inc in incs:
        await _events(anydb, inc)
    rec = _Recording()
    hub = ChatHub(anydb, [rec])
    a, b = _outbox(anydb, rec, hub, owner="replica-a", batch=4), _outbox(anydb, rec, hub, owner="replica-b", batch=4)
    delivered = await asyncio.gather(a.publish(), b.publish(), a.publish())
    assert sum(delivered) == 18
    assert len(rec.log) == len(set(rec.log)) == 12
    for inc in incs:  # each incident announced once, its note posted once, in order
        assert [k for k, i, _ in rec.log if i == inc] == ["announce", "post"]


async def test_a_publisher_that_died_holding_a_claim_is_taken_over(anydb: Database) -> None:
    inc = await _incident(anydb)
    await _events(anydb, inc)
    now = [1000.0]
    dead = Outbox(anydb, owner="dead", lease_s=60, clock=lambda: now[0])
    _, claimed = await dead._claim()  # claims, then the process is killed before rendering anything
    assert len(claimed) == 3
    rec = _Recording()
    heir = _outbox(anydb, rec, owner="heir", clock=lambda: now[0])
    assert await heir.publish() == 0  # the claim holds while its lease runs
    now[0] += 61
    assert await heir.publish() == 3
    assert [k for k, _, _ in rec.log] == ["announce", "post"]


async def test_a_crash_after_rendering_renders_again_under_the_same_key(anydb: Database) -> None:
    """At least once: rendered, then killed before the mark. The next publisher delivers the event again,
    with the same idempotency key (adapters edit a message already posted under a key, never repost)."""
    inc = await _incident(anydb)
    async with anydb.begin() as s:
        await emit(s, inc, EventKind.NOTE, {"text": "Done: restart checkout."})
    now = [1000.0]
    rec = _Recording()
    first = _outbox(anydb, rec, owner="first", clock=lambda: now[0])

    async def killed(event: OutboxEvent) -> None:
        raise asyncio.CancelledError  # the process stops right after the hub rendered it

    first.subscribe(killed)
    with pytest.raises(asyncio.CancelledError):
        await first.publish()
    now[0] += 61
    again = _outbox(anydb, rec, owner="second", clock=lambda: now[0])
    assert await again.publish() == 1
    keys = [key for kind, _, key in rec.log if kind == "post"]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith("event:")
    assert await again.publish() == 0


async def test_a_failing_render_is_retried_later_not_lost(anydb: Database) -> None:
    inc = await _incident(anydb)
    await _events(anydb, inc)
    now = [1000.0]
    rec = _Recording()
    box = _outbox(anydb, rec, clock=lambda: now[0], retry_s=30)
    broken = {"on": True}

    async def flaky(event: OutboxEvent) -> None:
        if broken["on"] and event.kind == EventKind.NOTE:
            raise RuntimeError("slack is down")

    box.subscribe(flaky)
    assert await box.publish() == 2  # the note failed; the others went out
    assert await box.publish() == 0  # not hammered: it waits retry_s
    broken["on"] = False
    now[0] += 31
    assert await box.publish() == 1
    assert [k for k, _, _ in rec.log].count("post") == 2  # rendered by the hub each attempt, keyed alike


async def test_flush_after_a_domain_step_never_raises_into_it(anydb: Database, caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread is a side channel: a step that committed is not failed by the outbox's database trouble;
    its events wait for the next publish."""
    inc = await _incident(anydb)
    await _events(anydb, inc)
    rec = _Recording()
    box = _outbox(anydb, rec)

    async def down() -> tuple[str, list[OutboxEvent]]:
        raise ConnectionError("database went away")

    monkeypatch.setattr(box, "_claim", down)
    await box.flush()
    assert "stay in the outbox" in caplog.text and rec.log == []
    monkeypatch.undo()
    assert await box.publish() == 3


async def test_prune_keeps_pending_events_and_recent_history(anydb: Database) -> None:
    inc = await _incident(anydb)
    await _events(anydb, inc)
    now = [2_000_000_000.0]
    box = _outbox(anydb, _Recording(), clock=lambda: now[0])
    assert await box.publish() == 3
    async with anydb.begin() as s:
        await emit(s, inc, EventKind.NOTE, {"text": "not yet delivered"})
    assert await box.prune(keep_s=3600) == 0  # delivered a moment ago
    now[0] += 3601
    assert await box.prune(keep_s=3600) == 3
    async with anydb.session() as s:
        (left,) = (await s.exec(select(LifecycleEvent))).all()
    assert left.delivered_at is None and left.params["text"] == "not yet delivered"


async def test_a_storm_of_updates_renders_the_card_once(anydb: Database) -> None:
    inc = await _incident(anydb)
    async with anydb.begin() as s:
        for _ in range(5):
            await emit(s, inc, EventKind.INCIDENT_UPDATED)
    rec = _Recording()
    assert await _outbox(anydb, rec).publish() == 5
    assert rec.log == [("card", inc, "new")]


# ---------------------------------------------------------------- triage moves incidents through the lifecycle


async def test_triage_opens_resolves_and_reopens_through_the_lifecycle(anydb: Database) -> None:
    """Alerts open, resolve and reopen an incident: each move is a checked phase, an audit row with its from and
    to, and an outbox event; the hub announces the incident in the thread of the chat post it came from."""
    ctx = make_ctx(anydb)
    assert ctx.triage is not None
    rec = _Recording()
    ctx.chat = ChatHub(anydb, [rec])
    origin = ThreadOrigin("slack", "C-ALERTS", "1700.5")
    clock = [1_714_557_600.0]
    ctx.triage.clock = lambda: clock[0]  # type: ignore[attr-defined]

    async def send(status: str) -> list[str]:
        alert = make_alert(source="alertmanager", status=status, starts_at=clock[0],
                           labels={"alertname": "HighLatency", "service": "checkout", "namespace": "shop"})
        out = await ctx.triage.ingest([alert], origin=origin)
        await ctx.triage.drained()
        return out.incident_ids

    (inc,) = await send("firing")
    assert await _row(anydb, inc) == ("open", "new", None)
    clock[0] += 60
    await send("resolved")
    assert (await _row(anydb, inc))[:2] == ("resolved", "resolved")
    clock[0] += 60
    await send("firing")  # within the cool-off: the same incident reopens
    assert await _row(anydb, inc) == ("open", "new", None)
    async with anydb.session() as s:
        events = (await s.exec(select(LifecycleEvent).where(LifecycleEvent.incident_id == inc)
                               .order_by(LifecycleEvent.id))).all()  # type: ignore[arg-type]
        moves = (await s.exec(select(AuditEvent).where(AuditEvent.incident_id == inc)
                              .where(AuditEvent.action.in_(["incident.resolved", "incident.reopened"]))  # type: ignore[attr-defined]
                              .order_by(AuditEvent.seq))).all()  # type: ignore[arg-type]
    assert [e.kind for e in events] == ["incident.opened", "incident.changed", "incident.changed"]
    assert events[0].params["origin"]["thread_id"] == "1700.5"
    assert [(e.params["from_phase"], e.params["to_phase"]) for e in events[1:]] == [("new", "resolved"),
                                                                                   ("resolved", "new")]
    assert all(e.delivered_at is not None for e in events)
    assert [(m.action, m.params["to_status"]) for m in moves] == [("incident.resolved", "resolved"),
                                                                  ("incident.reopened", "open")]
    assert rec.log[0] == ("announce", inc, "1700.5")
    assert [c for c in rec.log if c[0] == "card"] == [("card", inc, "resolved"), ("card", inc, "new")]
    assert (await verify_chain(anydb)).ok


async def test_migration_gives_resolved_rows_the_resolved_phase(tmp_path: Any) -> None:
    """Before the lifecycle, a step finishing after the incident resolved could leave another phase on it; 0009
    puts such rows where the lifecycle expects them, so a later reopen is a legal move."""
    from bot.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    await asyncio.to_thread(upgrade, url, "0006")
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            for inc_id, status, phase in [("INC-OLD001", "resolved", "verified"), ("INC-OLD002", "open", "cause_found"),
                                          ("INC-OLD003", "resolved", "resolved")]:
                await conn.exec_driver_sql(
                    "INSERT INTO incident (id, title, status, phase, severity, services, group_key, owner, source, "
                    "alert_count, opened_at, updated_at, summary, stats) VALUES (?, 't', ?, ?, 'warning', '[]', '', "
                    "'', '', 0, 1.0, 1.0, '', '{}')", (inc_id, status, phase))
        await asyncio.to_thread(upgrade, url)
        assert [(await _row(db, i))[:2] for i in ("INC-OLD001", "INC-OLD002", "INC-OLD003")] == [
            ("resolved", "resolved"), ("open", "cause_found"), ("resolved", "resolved")]
        async with db.begin() as s:
            assert await transition(s, db, "INC-OLD001", P.NEW, BOT, to_status=S.OPEN) is not None
    finally:
        await db.dispose()
