"""One triage pass over a group of batches, inside one transaction: the whole of triage's database work.

Fingerprint, dedup against stored alerts, suppression, grouping, incident bookkeeping (count, services,
severity, title, status), audit rows (chained in one insert), noise counters, and for every incident it
opens an investigation row plus its durable job. The pass is synchronous and talks to a ``TriageStore``
(``store.py``), so it runs whole in SQLAlchemy's sync bridge: a batch costs a fixed dozen statements
whatever its size, and no event-loop round trip between them.

Incident count, services and severity come from running aggregates (``Incident.stats``) moved alert by
alert, so a batch never re-reads the alerts of the incidents it touches.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.audit import BOT, Actor, AuditEntry
from bot.incidents.lifecycle import IncidentPhase, IncidentStatus, audit_entry, plan
from bot.incidents.outbox import EventKind, event_row
from bot.store.models import Incident
from bot.triage.grouping import Candidate, CandidateIndex, neighbours, parse_key
from bot.triage.noise import NoiseTally, day_of
from bot.triage.prepared import Prepared
from bot.triage.severity import incident_severity, is_page
from bot.triage.store import TriageStore
from bot.triage.suppress import Suppressor

_COUNT_SUFFIX = re.compile(r" \(\+\d+ alerts?\)$")
_NEW_INCIDENT_ID: Callable[[], str] = Incident.model_fields["id"].default_factory  # type: ignore[assignment]

_NEW_COLS = ("fingerprint", "source", "name", "status", "severity", "service", "labels", "annotations", "starts_at",
             "ends_at", "generator_url", "content_hash", "first_seen", "last_seen", "duplicates", "flips", "suppressed",
             "incident_id")
_CHANGED_COLS = ("name", "status", "severity", "service", "labels", "annotations", "starts_at", "ends_at",
                 "generator_url", "content_hash", "last_seen", "duplicates", "flips", "suppressed", "incident_id")
_DUP_COLS = ("duplicates", "last_seen")

# Builds the investigation rows, audit entries and job rows for opened incidents (investigate/service.py).
InvestigationRows = Callable[[list[str], Actor], tuple[list[dict[str, Any]], list[AuditEntry], list[dict[str, Any]]]]


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


@dataclass
class Batch:
    """One caller's alerts in a group, and the outcome the pass fills in for that caller."""

    alerts: Sequence[Prepared]
    actor: Actor
    out: IngestOutcome
    touched: dict[str, None] = field(default_factory=dict)
    opened_params: dict[str, Any] = field(default_factory=dict)  # of the incident.opened events it causes


@dataclass
class PassResult:
    updated: list[str]  # incidents (not opened by this pass) whose status, severity, count or services changed
    flap_notes: list[tuple[str, str]]  # (fingerprint, incident id) of alerts that started flapping


# What one alert adds to its incident's ``stats``: (incident id, service, severity, live = firing and unsuppressed).
_Share = tuple[str | None, str, str, bool]


@dataclass(slots=True)
class _State:
    """A stored alert as the pass sees and changes it."""

    id: int | None
    status: str
    content_hash: str
    incident_id: str | None
    flips: list[float]
    suppressed: str
    duplicates: int
    first_seen: float
    alert: Prepared | None = None
    kind: str = ""  # "" untouched | new | changed | dup
    orig: _Share | None = None  # what the stored row added to its incident's stats when loaded


@dataclass
class _Inc:
    """The incident columns triage reads and writes."""

    id: str
    title: str
    status: str
    severity: str
    services: list[str]
    group_key: str
    alert_count: int
    updated_at: float
    resolved_at: float | None
    stats: dict[str, Any]
    phase: str = str(IncidentPhase.NEW)


def share_stats(stats: dict[str, Any], share: _Share, sign: int) -> None:
    """Add (``sign`` > 0) or remove (< 0) ``abs(sign)`` alerts' share of an incident's running aggregates."""
    _, service, severity, live = share
    parts = [("all", severity), ("svc", service)] if service else [("all", severity)]
    if live:
        parts.append(("live", severity))
    for part, key in parts:
        counts = stats.setdefault(part, {})
        n = counts.get(key, 0) + sign
        if n > 0:
            counts[key] = n
        else:
            counts.pop(key, None)


def stats_from_rows(rows: list[tuple[str, str, str, bool, int]]) -> dict[str, Any]:
    """``Incident.stats`` from ``(service, severity, status, suppressed, count)`` groups of its alerts."""
    stats: dict[str, Any] = {"all": {}, "live": {}, "svc": {}}
    for service, severity, status, suppressed, n in rows:
        share_stats(stats, (None, service, severity, status == "firing" and not suppressed), n)
    return stats


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
    """Triage ``group`` at time ``now`` against ``store``; ``run`` returns what the caller announces after commit."""

    def __init__(self, store: TriageStore, settings: Any, group: Sequence[Batch], now: float,
                 investigation_rows: InvestigationRows | None):
        self.store = store
        self.t = settings
        self.group = group
        self.now = now
        self.investigation_rows = investigation_rows
        self.states: dict[str, _State] = {}
        self.incidents: dict[str, _Inc] = {}
        self.tally = NoiseTally(now)
        self.trail: list[AuditEntry] = []
        self.flap_notes: list[tuple[str, str]] = []
        self.opened: dict[str, Actor] = {}
        self.opened_params: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # lifecycle outbox rows, written with the rest of the pass
        self.reopened: dict[str, Actor] = {}
        self.resolved_touch: dict[str, list[Batch]] = {}  # incident -> the batches that resolved an alert of it

    def run(self) -> PassResult:
        store, t, now = self.store, self.t, self.now
        store.lock()
        prepared = [(b, a) for b in self.group for a in b.alerts]
        self._load_states(sorted({a.fingerprint for _, a in prepared}))
        suppressor = Suppressor.build(t, store.active_silences(now))
        referenced = {st.incident_id for st in self.states.values() if st.incident_id}
        for row in store.candidate_incidents(now, t.group_window_s, t.cooloff_s, referenced):
            self.incidents[row[0]] = _Inc(*row)
        unstated = {i for i, inc in self.incidents.items() if not inc.stats.get("all")}  # see _recount
        cands = CandidateIndex(neighbours(t.topology))
        for i in self.incidents.values():
            cands.add(Candidate(i.id, parse_key(i.group_key), set(i.services), i.status, i.updated_at, i.resolved_at))
        self.tally.add("received", len(prepared))
        new_incidents: dict[str, dict[str, Any]] = {}
        departed: list[tuple[str, str]] = []  # (incident_id, fingerprint) of alerts re-attached elsewhere
        touched: dict[str, None] = {}
        flap_actor: dict[str, Actor] = {}
        states, incidents, tally = self.states, self.incidents, self.tally
        # The loop runs once per alert of a storm: rule checks are skipped when no rule exists, and the
        # methods it calls are looked up once.
        rules = bool(suppressor.windows or suppressor.noisy)
        rule_reason, is_flapping = suppressor.reason, suppressor.is_flapping
        cand_of, best, absorb = cands.get, cands.best, cands.absorb
        window_s, cooloff_s = t.group_window_s, t.cooloff_s
        duplicates = suppressed = 0

        for b, a in prepared:
            fp, ch = a.fingerprint, a.content_hash
            out = b.out
            st = states.get(fp)
            if st is not None and st.content_hash == ch and (
                not st.suppressed or (rules and rule_reason(a, now)) or (st.flips and is_flapping(st.flips, now))
            ):
                st.duplicates += 1
                st.kind = st.kind or "dup"
                out.duplicates += 1
                duplicates += 1
                continue
            if st is None:
                st = _State(None, a.status, ch, None, [], "", 0, now, kind="new")
                states[fp] = st
                out.stored += 1
            else:
                if st.status != a.status:
                    st.flips = [*suppressor.recent_flips(st.flips, now), now]
                st.kind = "new" if st.kind == "new" else "changed"
                if st.kind == "changed":
                    out.updated += 1
            st.status, st.content_hash, st.alert = a.status, ch, a

            reason = rule_reason(a, now) if rules else ""
            if not reason and st.flips and is_flapping(st.flips, now):
                reason = f"flapping: {len(suppressor.recent_flips(st.flips, now))} state changes in {t.flap_window_s}s"
                if not st.suppressed.startswith("flapping"):
                    out.flapping.append(fp)
                    self.flap_notes.append((fp, st.incident_id or ""))
                    flap_actor[fp] = b.actor
            st.suppressed = reason[:300]
            if reason:
                out.suppressed += 1
                suppressed += 1

            if a.status == "resolved":
                if st.incident_id:
                    self.resolved_touch.setdefault(st.incident_id, []).append(b)
                    touched[st.incident_id] = b.touched[st.incident_id] = None
                continue
            if reason:
                continue
            cand = cand_of(st.incident_id)
            if cand is None or (cand.status == "resolved" and (cand.resolved_at or 0) < now - cooloff_s):
                cand = best(a, now, window_s, cooloff_s)  # a prepared alert carries its identity
            if cand is None:
                ident = a.identity
                inc_id = _NEW_INCIDENT_ID()
                while inc_id in incidents:
                    inc_id = _NEW_INCIDENT_ID()
                title, services = incident_title(a.name, a.service), [a.service] if a.service else []
                new_incidents[inc_id] = {
                    "id": inc_id, "title": title, "status": str(IncidentStatus.OPEN), "phase": str(IncidentPhase.NEW),
                    "severity": a.severity,
                    "services": services, "group_key": ident.key(), "owner": t.owners.get(a.service, ""),
                    "source": a.source, "alert_count": 0, "opened_at": now, "updated_at": now, "resolved_at": None,
                    "summary": "", "stats": {},
                }
                incidents[inc_id] = _Inc(inc_id, title, "open", a.severity, list(services), ident.key(), 0, now, None,
                                         {})
                cand = Candidate(inc_id, ident, set(), "open", now)
                cands.add(cand)
                out.opened.append(inc_id)
                self.opened[inc_id] = b.actor
                self.opened_params[inc_id] = b.opened_params
            if cand.status == "resolved":
                cand.status = str(IncidentStatus.OPEN)
                out.reopened.append(cand.incident_id)
                self.reopened[cand.incident_id] = b.actor
            absorb(cand, a, now)
            if st.incident_id != cand.incident_id:
                if st.incident_id:  # it leaves an incident it stays part of: the link keeps it there
                    departed.append((st.incident_id, fp))
                st.incident_id = cand.incident_id
            touched[cand.incident_id] = b.touched[cand.incident_id] = None

        if duplicates:
            tally.add("duplicates", duplicates)
        if suppressed:
            tally.add("suppressed", suppressed)
        store.insert("incident", list(new_incidents.values()))
        restats = self._apply_shares()
        self._write_alerts()
        if departed:
            links: list[tuple[str, int, float]] = []
            for inc_id, fp in dict.fromkeys(departed):
                row_id = states[fp].id
                assert row_id is not None  # _write_alerts gave every new alert its id
                links.append((inc_id, row_id, now))
            store.link(links)
        self._recount([i for i in {**touched, **restats} if i in unstated])
        updated = self._refresh_incidents([i for i in touched if i in incidents],
                                          [i for i in restats if i not in touched and i in incidents])
        for b in self.group:
            b.out.incident_ids = list(b.touched)
        if self.tally.counts:
            store.add_noise(day_of(now), self.tally.counts)
        for fp, inc_id in self.flap_notes:
            self.trail.append(AuditEntry(flap_actor[fp], "alert.flapping", incident_id=inc_id or None,
                                         params={"fingerprint": fp}, result="suppressed while flapping"))
            if inc_id:
                self.events.append(event_row(inc_id, EventKind.NOTE, {
                    "text": f"Alert {fp} is flapping; onwatch suppresses it until it settles."}, now))
        if self.opened and self.investigation_rows is not None:
            invs, entries, jobs = self.investigation_rows(list(self.opened), BOT)
            store.insert("investigation", invs)
            self.trail.extend(entries)
            store.insert("job", jobs)
        store.append_audit(self.trail)
        store.insert("lifecycle_event", self.events)
        return PassResult(updated, self.flap_notes)

    def _load_states(self, fps: list[str]) -> None:
        for (row_id, fp, status, content_hash, incident_id, flips, suppressed, duplicates, first_seen, service,
             severity) in self.store.load_states(fps):
            self.states[fp] = _State(
                row_id, status, content_hash, incident_id, list(flips), suppressed, duplicates, first_seen,
                orig=(incident_id, service, severity, status == "firing" and not suppressed))

    def _write_alerts(self) -> None:
        """New alerts inserted, changed ones rewritten, duplicates counted: three bulk statements."""
        now = self.now
        new_ids: list[_State] = []
        new_rows: list[tuple[Any, ...]] = []
        changed_rows: list[tuple[Any, ...]] = []
        dup_rows: list[tuple[Any, ...]] = []
        for fp, st in self.states.items():
            kind, a = st.kind, st.alert
            if kind == "dup" or a is None:
                if kind == "dup":
                    dup_rows.append((st.duplicates, now, st.id))
                continue
            labels, annotations, flips = a.labels, a.annotations, st.flips
            if kind == "new":
                new_ids.append(st)
                new_rows.append((fp, a.source, a.name, a.status, a.severity, a.service, labels, annotations,
                                 a.starts_at, a.ends_at, a.generator_url, st.content_hash, now, now, st.duplicates,
                                 flips, st.suppressed, st.incident_id))
            elif kind == "changed":
                changed_rows.append((a.name, a.status, a.severity, a.service, labels, annotations, a.starts_at,
                                     a.ends_at, a.generator_url, st.content_hash, now, st.duplicates, flips,
                                     st.suppressed, st.incident_id, st.id))
        for st, row_id in zip(new_ids, self.store.insert_alerts(_NEW_COLS, new_rows), strict=True):
            st.id = row_id
        self.store.update_alerts(_CHANGED_COLS, changed_rows)
        self.store.update_alerts(_DUP_COLS, dup_rows)

    def _apply_shares(self) -> dict[str, None]:
        """Move each new or changed alert's share of the incident aggregates from what was stored to what it is now.

        Returns the incidents whose ``stats`` changed. Every incident an alert pointed at when loaded is in
        ``incidents`` (``candidate_incidents`` loads the referenced ones), and so is every incident it now joins.
        A storm's alerts repeat a few shares, so the moves are summed per share and applied once each.
        """
        changed: dict[str, None] = {}
        incidents = self.incidents
        moves: Counter[_Share] = Counter()
        for st in self.states.values():
            a = st.alert
            if a is None or st.kind not in ("new", "changed"):
                continue
            share: _Share = (st.incident_id, a.service, a.severity, st.status == "firing" and not st.suppressed)
            if share == st.orig:
                continue
            if st.orig is not None:
                moves[st.orig] -= 1
            moves[share] += 1
            st.orig = share
        for share, n in moves.items():
            inc_id = share[0]
            if inc_id and inc_id in incidents:
                changed[inc_id] = None
                if n:
                    share_stats(incidents[inc_id].stats, share, n)
        return changed

    def _recount(self, ids: list[str]) -> None:
        """Rebuild ``stats`` from the alerts for incidents that have none yet (rows older than the column, or
        alerts written by other means); called after this pass's alerts are written, so it is exact."""
        if not ids:
            return
        agg: dict[str, list[tuple[str, str, str, bool, int]]] = {i: [] for i in ids}
        for inc_id, service, severity, status, suppressed, n in self.store.alert_aggregates(ids):
            agg[inc_id].append((service, severity, status, suppressed, n))
        for inc_id, rows in agg.items():
            self.incidents[inc_id].stats = stats_from_rows(rows)

    def _refresh_incidents(self, ids: list[str], restated: Sequence[str]) -> list[str]:
        """Recompute count, services, severity, title and status of the incidents this pass touched, from their
        running ``stats`` (no read of their alerts). ``restated`` incidents only lost an alert to another
        incident: their ``stats`` are written, nothing else changes."""
        if not ids and not restated:
            return []
        t, now, opened, reopened = self.t, self.now, self.opened, self.reopened
        updated: list[str] = []
        rows_out: list[dict[str, Any]] = []
        phases: list[dict[str, Any]] = []
        for inc_id in ids:
            inc = self.incidents[inc_id]
            stats = inc.stats
            all_sev: dict[str, int] = stats.get("all", {})
            live_sev: dict[str, int] = stats.get("live", {})
            count = sum(all_sev.values())
            live = bool(live_sev)
            firing_sev = list(live_sev) or list(all_sev)
            services = sorted(stats.get("svc", {}))
            if inc.services and inc.services[0] in services:
                services.remove(inc.services[0])
                services.insert(0, inc.services[0])
            was_paging = is_page(inc.severity) and inc_id not in opened
            sev = incident_severity(firing_sev, services, t.user_facing_services)
            before = (inc.status, inc.severity, inc.alert_count, tuple(inc.services))
            inc.alert_count = count
            inc.services = services or list(inc.services)
            inc.severity = sev
            inc.title = with_count(inc.title, count)
            inc.updated_at = now
            if inc_id in reopened and inc.status == IncidentStatus.RESOLVED:
                self._move(inc, IncidentPhase.NEW, IncidentStatus.OPEN, phases, reopened[inc_id], count,
                           "a related alert fired within the cool-off")
                inc.resolved_at = None
            resolvers = self.resolved_touch.get(inc_id)
            if t.resolve_with_alerts and resolvers and inc.status != IncidentStatus.RESOLVED and not live:
                self._move(inc, IncidentPhase.RESOLVED, IncidentStatus.RESOLVED, phases, resolvers[0].actor, count,
                           "all of its alerts resolved")
                inc.resolved_at = now
                for b in resolvers:
                    if inc_id not in b.out.resolved:
                        b.out.resolved.append(inc_id)
            if inc_id in opened:
                self.events.append(event_row(inc_id, EventKind.INCIDENT_OPENED, self.opened_params[inc_id], now))
                self.tally.add("incidents")
                self.trail.append(AuditEntry(opened[inc_id], "incident.opened", incident_id=inc_id,
                                             params={"title": inc.title, "severity": sev, "services": list(inc.services),
                                                     "alerts": count, "group_key": inc.group_key},
                                             result=f"opened from {count} alert(s)"))
            if is_page(sev) and not was_paging and inc.status != "resolved":
                self.tally.page(t.shift_hours)
            rows_out.append({"b_id": inc_id, "title": inc.title, "status": inc.status, "severity": inc.severity,
                             "services": inc.services, "alert_count": inc.alert_count, "updated_at": now,
                             "resolved_at": inc.resolved_at, "stats": stats})
            if inc_id not in opened and before != (inc.status, inc.severity, inc.alert_count, tuple(inc.services)):
                updated.append(inc_id)
                if before[0] == inc.status:  # a reopen or resolve has its incident.changed event already
                    self.events.append(event_row(inc_id, EventKind.INCIDENT_UPDATED, None, now))
        for inc_id in restated:
            inc = self.incidents[inc_id]
            rows_out.append({"b_id": inc_id, "title": inc.title, "status": inc.status, "severity": inc.severity,
                             "services": inc.services, "alert_count": inc.alert_count, "updated_at": inc.updated_at,
                             "resolved_at": inc.resolved_at, "stats": inc.stats})
        self.store.update("incident", "id", rows_out)
        self.store.update("incident", "id", phases)
        return updated

    def _move(self, inc: _Inc, phase: IncidentPhase, status: IncidentStatus, phases: list[dict[str, Any]],
              actor: Actor, count: int, why: str) -> None:
        """Reopen or resolve ``inc`` through the lifecycle's table: the phase row, its audit entry and its
        ``incident.changed`` event join the pass's bulk writes (the pass holds the triage lock)."""
        move = plan(inc.id, inc.status, inc.phase, phase, status)
        inc.status, inc.phase = str(move.to_status), str(move.to_phase)
        phases.append({"b_id": inc.id, "phase": inc.phase})
        self.trail.append(audit_entry(move, actor, result=why, params={"alerts": count}))
        self.events.append(event_row(inc.id, EventKind.INCIDENT_CHANGED, move.params(), self.now))

