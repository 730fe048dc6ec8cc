"""One triage pass: a batch of alerts triaged in one transaction, the whole of triage's database work.

The steps, each a few SQLAlchemy Core statements on the transaction's connection, the same on SQLite and
PostgreSQL: take the triage lock; read the stored alerts of the batch's fingerprints, the active silences and
the incidents an alert could join; dedup, suppress and group each alert; write the incidents it opens and the
alerts; work out each touched incident's count, services and severity from its alerts (one ``GROUP BY``),
reopening or resolving it through the lifecycle's ``plan``; then the audit entries, noise counters,
investigations and lifecycle outbox events. All of it commits, or none of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.audit import BOT, Actor, AuditEntry, append_entries
from bot.config import TriageSettings
from bot.incidents.lifecycle import IncidentPhase, IncidentStatus, audit_entry, plan
from bot.incidents.outbox import EventKind, event_row
from bot.investigate.requests import investigation_rows
from bot.store.models import Alert, Incident, IncidentAlert, Investigation, Job, LifecycleEvent, Silence
from bot.triage.alert import AlertIn
from bot.triage.fingerprint import content_hash, fingerprint
from bot.triage.grouping import Candidate, CandidateIndex, Identity, identity_of, neighbours, parse_key
from bot.triage.noise import NoiseTally, add_counts
from bot.triage.severity import incident_severity, is_page
from bot.triage.suppress import Suppressor

TRIAGE_LOCK_KEY = 0x6F6E7472  # "ontr"
_CHUNK = 500  # fingerprints per IN (...) list
_COUNT_SUFFIX = re.compile(r" \(\+\d+ alerts?\)$")
_NEW_INCIDENT_ID: Callable[[], str] = Incident.model_fields["id"].default_factory  # type: ignore[assignment]


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


ALERT, INCIDENT = _table(Alert), _table(Incident)


@dataclass
class IngestOutcome:
    received: int = 0
    stored: int = 0
    updated: int = 0
    duplicates: int = 0
    suppressed: int = 0
    incident_ids: list[str] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    flapping: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("received", "stored", "updated", "duplicates", "suppressed",
                                              "incident_ids", "opened", "reopened", "resolved")}


class _Kind(StrEnum):
    """What this batch does to a stored alert's row."""

    UNTOUCHED = ""
    NEW = "new"
    CHANGED = "changed"
    DUPLICATE = "dup"  # only its duplicate count and last-seen time change


@dataclass(slots=True)
class _Stored:
    """An alert row as the pass reads and changes it (``id`` is None for one this batch inserts)."""

    id: int | None
    status: str
    content_hash: str
    incident_id: str | None
    flips: list[float]
    suppressed: str
    duplicates: int
    alert: AlertIn | None = None  # what this batch sent for it, when it is new or changed
    kind: _Kind = _Kind.UNTOUCHED


@dataclass(slots=True)
class _Figures:
    """An incident's figures, from its alerts: how many, their services, their severities (all, and of those
    firing and unsuppressed)."""

    count: int = 0
    services: set[str] = field(default_factory=set)
    severities: set[str] = field(default_factory=set)
    live: set[str] = field(default_factory=set)


def incident_title(name: str, service: str) -> str:
    """Cut to ``Incident.title``'s 500 characters here, so no database refuses a long alert name (or truncates it)."""
    return (f"{name} on {service}" if service else name)[:500]


def with_count(base: str, count: int) -> str:
    base = _COUNT_SUFFIX.sub("", base)
    more = count - 1
    if more <= 0:
        return base[:500]
    suffix = f" (+{more} alert{'s' if more > 1 else ''})"
    return base[: 500 - len(suffix)] + suffix


class TriagePass:
    """Triage one batch from ``actor`` at time ``now`` on ``conn``, inside the caller's transaction.

    ``events`` holds the outbox rows the pass wrote: the caller publishes them after the commit."""

    def __init__(self, conn: AsyncConnection, is_postgres: bool, settings: TriageSettings, now: float,
                 actor: Actor, opened_params: dict[str, Any]):
        self.conn = conn
        self.is_postgres = is_postgres
        self.t = settings
        self.now = now
        self.actor = actor
        self.opened_params = opened_params
        self.out = IngestOutcome()
        self.stored: dict[str, _Stored] = {}  # by fingerprint
        self.incidents: dict[str, dict[str, Any]] = {}  # the incident rows read (and opened), by id
        self.touched: dict[str, None] = {}
        self.resolving: set[str] = set()  # incidents of which an alert resolved
        self.tally = NoiseTally(now)
        self.trail: list[AuditEntry] = []
        self.events: list[dict[str, Any]] = []
        self.flapping: list[tuple[str, str | None]] = []  # (fingerprint, incident) of alerts that began to flap

    async def run(self, alerts: Sequence[AlertIn]) -> IngestOutcome:
        self.out.received = len(alerts)
        if self.is_postgres:  # SQLite's transaction began IMMEDIATE: it holds the write lock already
            await self.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": TRIAGE_LOCK_KEY})
        keyed = [(fingerprint(a), a) for a in alerts]
        await self._read_alerts(sorted({fp for fp, _ in keyed}))
        suppressor = Suppressor.build(self.t, await self._active_silences())
        await self._read_incidents()
        departed = self._triage(keyed, suppressor)
        await self._write_alerts()
        await self._link(departed)
        await self._update_incidents()
        for fp, incident_id in self.flapping:  # after the incidents' own events: the thread exists by then
            self._note_flapping(fp, incident_id)
        self.out.incident_ids = list(self.touched)
        await self._write_records()
        return self.out

    def _triage(self, keyed: list[tuple[str, AlertIn]], suppressor: Suppressor) -> dict[tuple[str, str], None]:
        """Dedup, suppress and place each alert; returns the (incident, fingerprint) of alerts that moved on."""
        index = CandidateIndex(neighbours(self.t.topology))
        for inc in self.incidents.values():
            index.add(Candidate(inc["id"], parse_key(inc["group_key"]), set(inc["services"]), inc["status"],
                                inc["updated_at"], inc["resolved_at"]))
        departed: dict[tuple[str, str], None] = {}
        for fp, a in keyed:
            st = self._dedup(fp, a, suppressor)
            if st is None:
                continue
            if a.status == "resolved":
                if st.incident_id:
                    self.resolving.add(st.incident_id)
                    self.touched[st.incident_id] = None
                continue
            if st.suppressed:
                continue
            cand = self._place(a, st, index)
            if st.incident_id != cand.incident_id:
                if st.incident_id:  # it leaves an incident it stays part of: a link keeps it there
                    departed[(st.incident_id, fp)] = None
                st.incident_id = cand.incident_id
            self.touched[cand.incident_id] = None
        return departed

    async def _write_records(self) -> None:
        """Noise counters, the investigations of the incidents opened, the audit trail and the outbox events."""
        out = self.out
        self.tally.add("received", out.received)
        self.tally.add("duplicates", out.duplicates)
        self.tally.add("suppressed", out.suppressed)
        await add_counts(self.conn, self.is_postgres, self.now, self.tally.counts)
        if out.opened:
            invs, entries, jobs = investigation_rows(out.opened, BOT)
            await self._insert(Investigation, invs)
            self.trail.extend(entries)
            await self._insert(Job, jobs)
        trail = self.trail
        await self.conn.run_sync(lambda sync: append_entries(sync, trail, self.is_postgres))
        await self._insert(LifecycleEvent, self.events)

    async def _read_alerts(self, fps: list[str]) -> None:
        c = ALERT.c
        for i in range(0, len(fps), _CHUNK):
            q = select(c.id, c.fingerprint, c.status, c.content_hash, c.incident_id, c.flips, c.suppressed,
                       c.duplicates).where(c.fingerprint.in_(fps[i:i + _CHUNK]))
            for row in await self.conn.execute(q):
                self.stored[row.fingerprint] = _Stored(row.id, row.status, row.content_hash, row.incident_id,
                                                       list(row.flips), row.suppressed, row.duplicates)

    async def _active_silences(self) -> list[tuple[dict[str, str], float, float, str]]:
        c = _table(Silence).c
        q = select(c.matchers, c.starts_at, c.ends_at, c.comment).where(c.starts_at <= self.now,
                                                                           c.ends_at > self.now)
        return [(m, s, e, comment) for m, s, e, comment in await self.conn.execute(q)]

    async def _read_incidents(self) -> None:
        """The incidents an alert could join (active within the window, or resolved within the cool-off) and
        those the batch's stored alerts point at (an alert resolving resolves its own incident)."""
        c, now = INCIDENT.c, self.now
        where = ((c.status != "resolved") & (c.updated_at >= now - self.t.group_window_s)) | (
            (c.status == "resolved") & (c.resolved_at >= now - self.t.cooloff_s))
        referenced = sorted({st.incident_id for st in self.stored.values() if st.incident_id})
        if referenced:
            where = where | c.id.in_(referenced)
        q = select(c.id, c.title, c.status, c.phase, c.severity, c.services, c.group_key, c.alert_count,
                   c.updated_at, c.resolved_at).where(where)
        for row in await self.conn.execute(q):
            self.incidents[row.id] = row._asdict()

    def _dedup(self, fp: str, a: AlertIn, suppressor: Suppressor) -> _Stored | None:
        """Record ``a`` against its stored row: None when it is a duplicate (same content, and suppressed now
        if it was then), else the row, changed, with its suppression reason worked out."""
        now, out = self.now, self.out
        ch = content_hash(a)
        st = self.stored.get(fp)
        if st is not None and st.content_hash == ch and (
            not st.suppressed or suppressor.reason(a, now) or suppressor.is_flapping(st.flips, now)
        ):
            st.duplicates += 1
            st.kind = st.kind or _Kind.DUPLICATE
            out.duplicates += 1
            return None
        if st is None:
            st = self.stored[fp] = _Stored(None, a.status, ch, None, [], "", 0, kind=_Kind.NEW)
            out.stored += 1
        else:
            if st.status != a.status:
                st.flips = [*suppressor.recent_flips(st.flips, now), now]
            if st.kind != _Kind.NEW:
                st.kind = _Kind.CHANGED
                out.updated += 1
        st.status, st.content_hash, st.alert = a.status, ch, a
        reason = suppressor.reason(a, now)
        if not reason and suppressor.is_flapping(st.flips, now):
            flips = len(suppressor.recent_flips(st.flips, now))
            reason = f"flapping: {flips} state changes in {self.t.flap_window_s}s"
            if not st.suppressed.startswith("flapping"):
                out.flapping.append(fp)
                self.flapping.append((fp, st.incident_id))
        st.suppressed = reason[:300]
        if reason:
            out.suppressed += 1
        return st

    def _note_flapping(self, fp: str, incident_id: str | None) -> None:
        self.trail.append(AuditEntry(self.actor, "alert.flapping", incident_id=incident_id,
                                     params={"fingerprint": fp}, result="suppressed while flapping"))
        if incident_id:
            text_ = f"Alert {fp} is flapping; onwatch suppresses it until it settles."
            self.events.append(event_row(incident_id, EventKind.NOTE, {"text": text_}, self.now))

    def _place(self, a: AlertIn, st: _Stored, index: CandidateIndex) -> Candidate:
        """The incident a firing alert joins: its own while that can take it, else the best match, else a new
        one (opened here). A resolved incident it joins reopens."""
        now, window_s, cooloff_s = self.now, self.t.group_window_s, self.t.cooloff_s
        ident = identity_of(a.name, a.service, a.labels)
        cand = index.get(st.incident_id)
        if cand is None or (cand.status == "resolved" and (cand.resolved_at or 0) < now - cooloff_s):
            cand = index.best(ident, now, window_s, cooloff_s)
        if cand is None:
            cand = self._open(a, ident)
            index.add(cand)
        if cand.status == "resolved":
            cand.status = str(IncidentStatus.OPEN)
            self.out.reopened.append(cand.incident_id)
        index.absorb(cand, ident, now)
        return cand

    def _open(self, a: AlertIn, ident: Identity) -> Candidate:
        inc_id = _NEW_INCIDENT_ID()
        while inc_id in self.incidents:
            inc_id = _NEW_INCIDENT_ID()
        now = self.now
        self.incidents[inc_id] = {
            "id": inc_id, "title": incident_title(a.name, a.service), "status": str(IncidentStatus.OPEN),
            "phase": str(IncidentPhase.NEW), "severity": a.severity, "services": [a.service] if a.service else [],
            "group_key": ident.key(), "owner": self.t.owners.get(a.service, ""), "source": a.source,
            "alert_count": 0, "opened_at": now, "updated_at": now, "resolved_at": None, "summary": "",
        }
        self.out.opened.append(inc_id)
        return Candidate(inc_id, ident, set(), "open", now)

    async def _write_alerts(self) -> None:
        """Insert the incidents opened and the new alerts, rewrite the changed ones, count the duplicates."""
        await self._insert(Incident, [self.incidents[i] for i in self.out.opened])
        now = self.now
        new_rows: list[dict[str, Any]] = []
        changed_rows: list[dict[str, Any]] = []
        dup_rows: list[dict[str, Any]] = []
        for fp, st in self.stored.items():
            a = st.alert
            if st.kind == _Kind.DUPLICATE:
                dup_rows.append({"b_id": st.id, "duplicates": st.duplicates, "last_seen": now})
            elif a is not None:
                row = {"name": a.name, "status": a.status, "severity": a.severity, "service": a.service,
                       "labels": a.labels, "annotations": a.annotations, "starts_at": a.starts_at,
                       "ends_at": a.ends_at, "generator_url": a.generator_url, "content_hash": st.content_hash,
                       "last_seen": now, "duplicates": st.duplicates, "flips": st.flips,
                       "suppressed": st.suppressed, "incident_id": st.incident_id}
                if st.kind == _Kind.NEW:
                    new_rows.append({**row, "fingerprint": fp, "source": a.source, "first_seen": now})
                else:
                    changed_rows.append({**row, "b_id": st.id})
        await self._insert(Alert, new_rows)
        await self._update(ALERT, changed_rows)
        await self._update(ALERT, dup_rows)

    async def _link(self, departed: dict[tuple[str, str], None]) -> None:
        """Keep alerts that moved to another incident part of the one they left (``IncidentAlert``)."""
        if not departed:
            return
        table = _table(IncidentAlert)
        alert_id = select(ALERT.c.id).where(ALERT.c.fingerprint == bindparam("fp")).scalar_subquery()
        stmt = (pg_insert(table) if self.is_postgres else sqlite_insert(table)).values(
            incident_id=bindparam("inc"), alert_id=alert_id, attached_at=self.now).on_conflict_do_nothing()
        await self.conn.execute(stmt, [{"inc": inc_id, "fp": fp} for inc_id, fp in departed])

    async def _figures(self, ids: list[str]) -> dict[str, _Figures]:
        c = ALERT.c
        live = ((c.status == "firing") & (c.suppressed == "")).label("live")
        q = (select(c.incident_id, c.service, c.severity, live, func.count()).where(c.incident_id.in_(ids))
             .group_by(c.incident_id, c.service, c.severity, live))
        figures = {i: _Figures() for i in ids}
        for inc_id, service, severity, is_live, n in await self.conn.execute(q):
            f = figures[inc_id]
            f.count += n
            f.severities.add(severity)
            if service:
                f.services.add(service)
            if is_live:
                f.live.add(severity)
        return figures

    async def _update_incidents(self) -> None:
        """Set each touched incident's count, services, severity and title from its alerts; reopen it when a
        related alert fired within the cool-off, resolve it when its alerts all resolved."""
        t, now, out = self.t, self.now, self.out
        ids = [i for i in self.touched if i in self.incidents]
        rows: list[dict[str, Any]] = []
        moved: list[dict[str, Any]] = []  # the phase is written only where the pass moved it
        for inc_id, f in (await self._figures(ids)).items():
            inc = self.incidents[inc_id]
            opened = inc_id in out.opened
            before = (inc["status"], inc["severity"], inc["alert_count"], list(inc["services"]))
            services = sorted(f.services)
            if inc["services"] and inc["services"][0] in services:  # the first service stays first
                services.remove(inc["services"][0])
                services.insert(0, inc["services"][0])
            severity = incident_severity(f.live or f.severities, services, t.user_facing_services)
            was_paging = is_page(inc["severity"]) and not opened
            inc.update(alert_count=f.count, services=services or inc["services"], severity=severity,
                       title=with_count(inc["title"], f.count), updated_at=now)
            if inc_id in out.reopened and inc["status"] == IncidentStatus.RESOLVED:
                self._move(inc, IncidentPhase.NEW, IncidentStatus.OPEN, "a related alert fired within the cool-off")
                inc["resolved_at"] = None
                moved.append({"b_id": inc_id, "phase": inc["phase"]})
            if (t.resolve_with_alerts and inc_id in self.resolving and inc["status"] != IncidentStatus.RESOLVED
                    and not f.live):
                self._move(inc, IncidentPhase.RESOLVED, IncidentStatus.RESOLVED, "all of its alerts resolved")
                inc["resolved_at"] = now
                moved.append({"b_id": inc_id, "phase": inc["phase"]})
                out.resolved.append(inc_id)
            if opened:
                self._opened(inc)
            if is_page(severity) and not was_paging and inc["status"] != IncidentStatus.RESOLVED:
                self.tally.page(t.shift_hours)
            after = (inc["status"], inc["severity"], inc["alert_count"], list(inc["services"]))
            if not opened and after != before and after[0] == before[0]:  # a move has its own event
                self.events.append(event_row(inc_id, EventKind.INCIDENT_UPDATED, None, now))
            rows.append({"b_id": inc_id, **{k: inc[k] for k in ("title", "status", "severity", "services",
                                                                 "alert_count", "updated_at", "resolved_at")}})
        await self._update(INCIDENT, rows)
        await self._update(INCIDENT, moved)

    def _opened(self, inc: dict[str, Any]) -> None:
        inc_id, count = inc["id"], inc["alert_count"]
        self.events.append(event_row(inc_id, EventKind.INCIDENT_OPENED, self.opened_params, self.now))
        self.tally.add("incidents")
        self.trail.append(AuditEntry(self.actor, "incident.opened", incident_id=inc_id,
                                     params={"title": inc["title"], "severity": inc["severity"],
                                             "services": list(inc["services"]), "alerts": count,
                                             "group_key": inc["group_key"]},
                                     result=f"opened from {count} alert(s)"))

    def _move(self, inc: dict[str, Any], phase: IncidentPhase, status: IncidentStatus, why: str) -> None:
        """Reopen or resolve ``inc`` through the lifecycle's table; its audit entry and ``incident.changed``
        event are written with the pass's others (the pass holds the triage lock)."""
        move = plan(inc["id"], inc["status"], inc["phase"], phase, status)
        inc["status"], inc["phase"] = str(move.to_status), str(move.to_phase)
        self.trail.append(audit_entry(move, self.actor, result=why, params={"alerts": inc["alert_count"]}))
        self.events.append(event_row(inc["id"], EventKind.INCIDENT_CHANGED, move.params(), self.now))

    async def _insert(self, model: Any, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.conn.execute(insert(_table(model)), rows)

    async def _update(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Update rows by primary key (``b_id``), all with the same columns, in one executemany."""
        if rows:
            values: dict[str, Any] = {k: bindparam(k) for k in rows[0] if k != "b_id"}
            await self.conn.execute(update(table).where(table.c.id == bindparam("b_id")).values(values), rows)
