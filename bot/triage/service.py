"""The triage pipeline: alerts in, incidents out.

One transaction per group of batches: fingerprint, dedup against stored alerts, suppression, grouping,
incident bookkeeping (count, services, severity, title, status), audit rows (chained in one insert),
noise counters, and for every incident it opens an investigation row plus its durable job. Bulk
statements keep a group at a fixed dozen round trips whatever its size; on SQLite the alert rows go straight
to the driver (``bulk.py``). Incident count, services and severity come from running aggregates
(``Incident.stats``) moved alert by alert, so a batch never re-reads the alerts of the incidents it touches. Batches that arrive while a
transaction runs are committed together by the next one (group commit), in arrival order, and each
caller is answered with its own outcome only after that commit. On PostgreSQL a transaction-scoped
advisory lock serialises triage across replicas (SQLite's BEGIN IMMEDIATE already does), so two
deliveries of one storm can never open two incidents for the same group.

After the commit, opened incidents are announced through the chat hub (skipped when no adapter is
configured); flapping alerts are reported once in their incident's thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.audit import BOT, Actor, AuditEntry, audit_many
from bot.chat.hub import ThreadOrigin
from bot.errors import DatabaseError
from bot.store.models import Alert, Incident, IncidentAlert, Silence
from bot.triage import bulk
from bot.triage.alert import AlertIn
from bot.triage.fingerprint import content_parts, fingerprint
from bot.triage.grouping import Candidate, CandidateIndex, Identity, neighbours, parse_key
from bot.triage.noise import NoiseTally
from bot.triage.severity import incident_severity, is_page
from bot.triage.suppress import Suppressor

log = logging.getLogger(__name__)

TRIAGE_LOCK_KEY = 0x6F6E7472  # "ontr"
_CHUNK = 500
_GROUP_ALERTS = 5000  # the most alerts one group commit takes (one webhook batch may be larger: it goes alone)
_COUNT_SUFFIX = re.compile(r" \(\+\d+ alerts?\)$")

ALERT = Alert.__table__  # type: ignore[attr-defined]
_FLIPS = frozenset({"flips"})  # the JSON column bulk.py serialises (labels and annotations come pre-serialised)
INCIDENT = Incident.__table__  # type: ignore[attr-defined]
INCIDENT_ALERT = IncidentAlert.__table__  # type: ignore[attr-defined]


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
class _State:
    """A stored alert as the batch sees and changes it."""

    id: int | None
    status: str
    content_hash: str
    incident_id: str | None
    flips: list[float]
    suppressed: str
    duplicates: int
    first_seen: float
    alert: AlertIn | None = None
    kind: str = ""  # "" untouched | new | changed | dup
    orig: _Share | None = None  # what the stored row added to its incident's stats when loaded
    texts: tuple[str, str, str] = ("", "", "")  # content hash, labels JSON, annotations JSON of ``alert``


# What one alert adds to its incident's ``stats``: (incident id, service, severity, live = firing and unsuppressed).
_Share = tuple[str | None, str, str, bool]


@dataclass
class _Inc:
    """The incident columns triage reads and writes (loaded with Core: cheaper than ORM objects)."""

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


_INC_COLS = ("id", "title", "status", "severity", "services", "group_key", "alert_count", "updated_at", "resolved_at",
             "stats")
_NEW_INCIDENT_ID: Callable[[], str] = Incident.model_fields["id"].default_factory  # type: ignore[assignment]


def _share_stats(stats: dict[str, Any], share: _Share, sign: int) -> None:
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


def _stats_from_rows(rows: list[tuple[str, str, str, bool, int]]) -> dict[str, Any]:
    stats: dict[str, Any] = {"all": {}, "live": {}, "svc": {}}
    for service, severity, status, suppressed, n in rows:
        _share_stats(stats, (None, service, severity, status == "firing" and not suppressed), n)
    return stats


@dataclass
class _Pending:
    """One caller's batch waiting for (or inside) a group commit, and the outcome it will be answered with."""

    alerts: Sequence[AlertIn]
    origin: ThreadOrigin | None
    actor: Actor
    out: IngestOutcome
    done: asyncio.Future[None]
    touched: dict[str, None] = field(default_factory=dict)


def incident_title(name: str, service: str) -> str:
    return f"{name} on {service}" if service else name


def with_count(base: str, count: int) -> str:
    base = _COUNT_SUFFIX.sub("", base)
    more = count - 1
    if more <= 0:
        return base[:500]
    suffix = f" (+{more} alert{'s' if more > 1 else ''})"
    return base[: 500 - len(suffix)] + suffix


class TriageService:
    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.db = ctx.db
        self.settings = ctx.settings.triage
        self.clock: Callable[[], float] = time.time  # injectable for window and cool-off tests
        # Group commit: batches that arrive while a transaction runs wait here (instead of spinning on the
        # database's write lock, whose SQLite busy handler sleeps up to 100 ms per retry); the next leader
        # triages all of them in one transaction and answers each caller once that transaction commits.
        # Replicas still serialise in the database.
        self._queue: list[_Pending] = []
        self._leader: asyncio.Future[None] | None = None
        # Resolved at start-up, not inside the first storm's transaction: importing the engine (numpy,
        # matplotlib) takes a third of a second, which would otherwise hold the write lock the first time.
        self._request_in: Callable[..., Awaitable[list[str]]] | None
        try:
            from bot.investigate.service import request_investigations_in
        except ImportError:
            self._request_in = None
        else:
            self._request_in = request_investigations_in

    # ------------------------------------------------------------------ public

    async def ingest(self, alerts: Sequence[AlertIn], *, origin: ThreadOrigin | None = None,
                     actor: Actor | None = None) -> IngestOutcome:
        """Store, dedup, suppress and group one batch; open/reopen/resolve incidents; then announce.

        Returns once the batch is committed. Batches that arrive while another transaction runs are
        committed together in the next one (in arrival order, so dedup and grouping see them exactly as if
        they had come one after the other); each caller still gets its own outcome.
        """
        out = IngestOutcome(received=len(alerts))
        if not alerts:
            return out
        loop = asyncio.get_running_loop()
        me = _Pending(alerts, origin, actor or BOT, out, loop.create_future())
        self._queue.append(me)
        while not me.done.done():
            if self._leader is not None:
                await asyncio.wait([me.done, self._leader], return_when=asyncio.FIRST_COMPLETED)
                continue
            self._leader = loop.create_future()
            after: list[Callable[[], Awaitable[None]]] = []
            try:
                group: list[_Pending] = []
                size = 0
                while self._queue and (not group or size + len(self._queue[0].alerts) <= _GROUP_ALERTS):
                    group.append(self._queue.pop(0))
                    size += len(group[-1].alerts)
                await self._commit_group(group, after)
            finally:
                self._leader.set_result(None)
                self._leader = None
            # Chat runs after the next group may start: posting to Slack never holds up the storage path.
            for announce in after:
                await announce()
        me.done.result()
        return me.out

    async def _commit_group(self, group: list[_Pending], after: list[Callable[[], Awaitable[None]]]) -> None:
        """Triage ``group`` in one transaction; if that fails and several batches shared it, retry each alone
        so that one bad batch cannot fail the others."""
        try:
            try:
                await self._run_group(group, after)
            except Exception:
                if len(group) == 1:
                    raise
                log.warning("a group commit of %d batches failed; retrying them one by one", len(group))
                for p in group:
                    p.out = IngestOutcome(received=len(p.alerts))
                    p.touched.clear()
                    try:
                        await self._run_group([p], after)
                    except Exception as exc:  # noqa: BLE001 - handed to that batch's caller, who answers 503
                        p.done.set_exception(exc)
        except BaseException as exc:
            for p in group:
                if not p.done.done():
                    p.done.set_exception(exc if isinstance(exc, Exception) else DatabaseError("triage was cancelled"))
            if not isinstance(exc, Exception):
                raise

    async def _run_group(self, group: list[_Pending], after: list[Callable[[], Awaitable[None]]]) -> None:
        now = self.clock()
        flap_notes: list[tuple[str, str]] = []
        async with self.db.begin() as s:
            if self.db.is_postgres:
                await s.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=TRIAGE_LOCK_KEY))  # type: ignore[call-overload]
            updated_incidents = await self._ingest_tx(s, group, now, flap_notes)
        if any(p.out.opened for p in group):
            self.ctx.jobs.wakeup.set()
        for source, n in Counter(a.source for p in group for a in p.alerts).items():
            self.ctx.metrics.alerts.labels(source).inc(n)
        for p in group:
            p.done.set_result(None)
        after.append(functools.partial(self._after_commit, group, updated_incidents, flap_notes))

    async def open_adhoc(self, text_: str, actor: Actor, origin: ThreadOrigin | None) -> str | None:
        from bot.triage.adhoc import open_adhoc

        return await open_adhoc(self, text_, actor, origin)

    # ------------------------------------------------------------------ the transaction

    async def _load_states(self, s: AsyncSession, fps: list[str]) -> dict[str, _State]:
        states: dict[str, _State] = {}
        c = ALERT.c
        for i in range(0, len(fps), _CHUNK):
            q = select(c.id, c.fingerprint, c.status, c.content_hash, c.incident_id, c.flips, c.suppressed,
                       c.duplicates, c.first_seen, c.service, c.severity).where(c.fingerprint.in_(fps[i:i + _CHUNK]))
            for row in (await s.exec(q)).all():  # type: ignore[call-overload]
                states[row.fingerprint] = _State(
                    row.id, row.status, row.content_hash, row.incident_id, list(row.flips or []), row.suppressed,
                    row.duplicates, row.first_seen,
                    orig=(row.incident_id, row.service, row.severity, row.status == "firing" and not row.suppressed))
        return states

    async def _load_candidates(self, s: AsyncSession, now: float, referenced: set[str]) -> dict[str, _Inc]:
        t = self.settings
        c = INCIDENT.c
        recent = ((c.status != "resolved") & (c.updated_at >= now - t.group_window_s)) | (
            (c.status == "resolved") & (c.resolved_at >= now - t.cooloff_s))
        where = recent | c.id.in_(sorted(referenced)) if referenced else recent
        rows = (await s.exec(select(*(c[k] for k in _INC_COLS)).where(where))).all()  # type: ignore[call-overload]
        return {r.id: _Inc(*r) for r in rows}

    async def _ingest_tx(self, s: AsyncSession, group: list[_Pending], now: float,
                         flap_notes: list[tuple[str, str]]) -> list[str]:
        t = self.settings
        prepared = [(p, a, fingerprint(a), content_parts(a)) for p in group for a in p.alerts]
        states = await self._load_states(s, sorted({fp for _, _, fp, _ in prepared}))
        silences = (await s.exec(select(Silence.matchers, Silence.starts_at, Silence.ends_at, Silence.comment)  # type: ignore[call-overload]
                                 .where(col(Silence.starts_at) <= now, col(Silence.ends_at) > now))).all()
        suppressor = Suppressor.build(t, [(m, st, en, c) for m, st, en, c in silences])
        referenced = {st.incident_id for st in states.values() if st.incident_id}
        incidents = await self._load_candidates(s, now, referenced)
        unstated = {i for i, inc in incidents.items() if not inc.stats.get("all")}  # see _recount
        cands = CandidateIndex(neighbours(t.topology))
        for i in incidents.values():
            cands.add(Candidate(i.id, parse_key(i.group_key), set(i.services), i.status, i.updated_at, i.resolved_at))
        tally = NoiseTally(now)
        tally.add("received", len(prepared))
        new_incidents: dict[str, dict[str, Any]] = {}
        attach: list[tuple[str, str]] = []  # (incident_id, fingerprint)
        touched: dict[str, None] = {}
        resolved_touch: dict[str, list[_Pending]] = {}  # incident -> the batches that resolved an alert of it
        opened: dict[str, Actor] = {}
        reopened: dict[str, Actor] = {}
        flap_actor: dict[str, Actor] = {}

        for p, a, fp, texts in prepared:
            ch = texts[0]
            out = p.out
            st = states.get(fp)
            if st is not None and st.content_hash == ch and (
                not st.suppressed or suppressor.reason(a, now) or suppressor.is_flapping(st.flips, now)
            ):
                st.duplicates += 1
                st.kind = st.kind or "dup"
                out.duplicates += 1
                tally.add("duplicates")
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
            st.status, st.content_hash, st.alert, st.texts = a.status, ch, a, texts

            reason = suppressor.reason(a, now)
            if not reason and suppressor.is_flapping(st.flips, now):
                reason = f"flapping: {len(suppressor.recent_flips(st.flips, now))} state changes in {t.flap_window_s}s"
                if not st.suppressed.startswith("flapping"):
                    out.flapping.append(fp)
                    flap_notes.append((fp, st.incident_id or ""))
                    flap_actor[fp] = p.actor
            st.suppressed = reason[:300]
            if reason:
                out.suppressed += 1
                tally.add("suppressed")

            if a.status == "resolved":
                if st.incident_id:
                    resolved_touch.setdefault(st.incident_id, []).append(p)
                    touched[st.incident_id] = p.touched[st.incident_id] = None
                continue
            if reason:
                continue
            ident = Identity.of(a)
            cand = cands.get(st.incident_id)
            if cand is None or (cand.status == "resolved" and (cand.resolved_at or 0) < now - t.cooloff_s):
                cand = cands.best(ident, now, t.group_window_s, t.cooloff_s)
            if cand is None:
                inc_id = _NEW_INCIDENT_ID()
                while inc_id in incidents:
                    inc_id = _NEW_INCIDENT_ID()
                title, services = incident_title(a.name, a.service), [a.service] if a.service else []
                new_incidents[inc_id] = {
                    "id": inc_id, "title": title, "status": "open", "phase": "new", "severity": a.severity,
                    "services": services, "group_key": ident.key(), "owner": t.owners.get(a.service, ""),
                    "source": a.source, "alert_count": 0, "opened_at": now, "updated_at": now, "resolved_at": None,
                    "summary": "", "stats": {},
                }
                incidents[inc_id] = _Inc(inc_id, title, "open", a.severity, list(services), ident.key(), 0, now, None,
                                         {})
                cand = Candidate(inc_id, ident, set(), "open", now)
                cands.add(cand)
                out.opened.append(inc_id)
                opened[inc_id] = p.actor
            if cand.status == "resolved":
                cand.status = "open"
                out.reopened.append(cand.incident_id)
                reopened[cand.incident_id] = p.actor
            cands.absorb(cand, ident, now)
            if st.incident_id != cand.incident_id:
                st.incident_id = cand.incident_id
                attach.append((cand.incident_id, fp))
            touched[cand.incident_id] = p.touched[cand.incident_id] = None

        if new_incidents:
            await s.exec(insert(INCIDENT), params=list(new_incidents.values()))  # type: ignore[call-overload]
        restats = self._apply_shares(states, incidents)
        await self._write_alerts(s, states, now)
        if attach:
            links = [{"incident_id": i, "alert_id": states[fp].id, "attached_at": now} for i, fp in dict.fromkeys(attach)]
            if self.db.is_sqlite:
                await bulk.insert_many(s, "incident_alert", links, "ON CONFLICT DO NOTHING")
            else:
                await s.exec(pg_insert(INCIDENT_ALERT).on_conflict_do_nothing(), params=links)  # type: ignore[call-overload]
        trail: list[AuditEntry] = []
        await self._recount(s, [i for i in {**touched, **restats} if i in unstated], incidents)
        updated = await self._refresh_incidents(s, [i for i in touched if i in incidents], incidents, resolved_touch,
                                                now, opened, reopened, tally, trail,
                                                [i for i in restats if i not in touched and i in incidents])
        for p in group:
            p.out.incident_ids = list(p.touched)
        await tally.flush(s, self.db.is_postgres)
        for fp, inc_id in flap_notes:
            trail.append(AuditEntry(flap_actor[fp], "alert.flapping", incident_id=inc_id or None,
                                    params={"fingerprint": fp}, result="suppressed while flapping"))
        await audit_many(self.db, s, trail)
        await self._request_investigations(s, list(opened))
        return updated

    async def _request_investigations(self, s: AsyncSession, incident_ids: list[str]) -> None:
        """One durable investigation per opened incident, committed with the incident (no extra transactions)."""
        if not incident_ids:
            return
        if self._request_in is None:
            log.warning("investigation engine not installed; incidents %s are not investigated", incident_ids)
            return
        await self._request_in(s, self.ctx, incident_ids, BOT)

    async def _write_alerts(self, s: AsyncSession, states: dict[str, _State], now: float) -> None:
        new_rows, changed_rows, dup_rows = [], [], []
        # On SQLite the labels and annotations go in as the canonical JSON the content hash was made from.
        raw = self.db.is_sqlite
        for fp, st in states.items():
            if st.kind == "new" and st.alert is not None:
                a = st.alert
                new_rows.append({
                    "fingerprint": fp, "source": a.source, "name": a.name, "status": a.status,
                    "severity": a.severity, "service": a.service, "labels": st.texts[1] if raw else a.labels,
                    "annotations": st.texts[2] if raw else a.annotations,
                    "starts_at": a.starts_at, "ends_at": a.ends_at, "generator_url": a.generator_url,
                    "content_hash": st.content_hash, "first_seen": now, "last_seen": now,
                    "duplicates": st.duplicates, "flips": st.flips, "suppressed": st.suppressed,
                    "incident_id": st.incident_id,
                })
            elif st.kind == "changed" and st.alert is not None:
                a = st.alert
                changed_rows.append({
                    "b_id": st.id, "name": a.name, "status": a.status, "severity": a.severity, "service": a.service,
                    "labels": st.texts[1] if raw else a.labels, "annotations": st.texts[2] if raw else a.annotations,
                    "starts_at": a.starts_at, "ends_at": a.ends_at,
                    "generator_url": a.generator_url, "content_hash": st.content_hash, "last_seen": now,
                    "duplicates": st.duplicates, "flips": st.flips, "suppressed": st.suppressed,
                    "incident_id": st.incident_id,
                })
            elif st.kind == "dup":
                dup_rows.append({"b_id": st.id, "duplicates": st.duplicates, "last_seen": now})
        if raw:
            for row_id, fp in await bulk.insert_returning(s, "alert", new_rows, _FLIPS, ("id", "fingerprint")):
                states[fp].id = row_id
            await bulk.update_many(s, "alert", "id", "b_id", changed_rows, _FLIPS)
            await bulk.update_many(s, "alert", "id", "b_id", dup_rows, _FLIPS)
            return
        c = ALERT.c
        if new_rows:
            res = await s.exec(insert(ALERT).returning(c.id, c.fingerprint), params=new_rows)  # type: ignore[call-overload]
            for row in res.all():
                states[row.fingerprint].id = row.id
        if changed_rows:
            cols = [k for k in changed_rows[0] if k != "b_id"]
            stmt = update(ALERT).where(c.id == bindparam("b_id")).values({k: bindparam(k) for k in cols})
            await s.exec(stmt, params=changed_rows)  # type: ignore[call-overload]
        if dup_rows:
            stmt = update(ALERT).where(c.id == bindparam("b_id")).values(
                duplicates=bindparam("duplicates"), last_seen=bindparam("last_seen"))
            await s.exec(stmt, params=dup_rows)  # type: ignore[call-overload]

    @staticmethod
    def _apply_shares(states: dict[str, _State], incidents: dict[str, _Inc]) -> dict[str, None]:
        """Move each new or changed alert's share of the incident aggregates from what was stored to what it is now.

        Returns the incidents whose ``stats`` changed. Every incident an alert pointed at when loaded is in
        ``incidents`` (``_load_candidates`` loads the referenced ones), and so is every incident it now joins.
        """
        changed: dict[str, None] = {}
        for st in states.values():
            a = st.alert
            if a is None or st.kind not in ("new", "changed"):
                continue
            share: _Share = (st.incident_id, a.service, a.severity, st.status == "firing" and not st.suppressed)
            if share == st.orig:
                continue
            for old_or_new, sign in ((st.orig, -1), (share, 1)):
                if old_or_new is not None and old_or_new[0] and old_or_new[0] in incidents:
                    _share_stats(incidents[old_or_new[0]].stats, old_or_new, sign)
                    changed[old_or_new[0]] = None
            st.orig = share
        return changed

    async def _recount(self, s: AsyncSession, ids: list[str], incidents: dict[str, _Inc]) -> None:
        """Rebuild ``stats`` from the alerts for incidents that have none yet (rows older than the column, or
        alerts written by other means); called after this batch's alerts are written, so it is exact."""
        if not ids:
            return
        c = ALERT.c
        supp = (c.suppressed != "").label("supp")
        q = (select(c.incident_id, c.service, c.severity, c.status, supp, func.count())
             .where(c.incident_id.in_(ids))
             .group_by(c.incident_id, c.service, c.severity, c.status, supp))
        agg: dict[str, list[tuple[str, str, str, bool, int]]] = {i: [] for i in ids}
        for inc_id, service, severity, status, suppressed, n in (await s.exec(q)).all():  # type: ignore[call-overload]
            agg[inc_id].append((service, severity, status, bool(suppressed), int(n)))
        for inc_id, rows in agg.items():
            incidents[inc_id].stats = _stats_from_rows(rows)

    async def _refresh_incidents(self, s: AsyncSession, ids: list[str], incidents: dict[str, _Inc],
                                 resolved_touch: dict[str, list[_Pending]], now: float, opened: dict[str, Actor],
                                 reopened: dict[str, Actor], tally: NoiseTally, trail: list[AuditEntry],
                                 restated: Sequence[str] = ()) -> list[str]:
        """Recompute count, services, severity, title and status of the incidents this batch touched, from their
        running ``stats`` (no read of their alerts). ``restated`` incidents only lost an alert to another
        incident: their ``stats`` are written, nothing else changes."""
        if not ids and not restated:
            return []
        t = self.settings
        updated: list[str] = []
        rows_out: list[dict[str, Any]] = []
        phases: list[dict[str, Any]] = []
        for inc_id in ids:
            inc = incidents[inc_id]
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
            if inc_id in reopened and inc.status == "resolved":
                inc.status, inc.resolved_at = "open", None
                phases.append({"b_id": inc_id, "phase": "new"})
                trail.append(AuditEntry(reopened[inc_id], "incident.reopened", incident_id=inc_id, params={"alerts": count},
                                        result="a related alert fired within the cool-off"))
            if (t.resolve_with_alerts and inc_id in resolved_touch and inc.status != "resolved" and not live):
                inc.status, inc.resolved_at = "resolved", now
                phases.append({"b_id": inc_id, "phase": "resolved"})
                for p in resolved_touch[inc_id]:
                    if inc_id not in p.out.resolved:
                        p.out.resolved.append(inc_id)
                trail.append(AuditEntry(resolved_touch[inc_id][0].actor, "incident.resolved", incident_id=inc_id, params={"alerts": count},
                                        result="all of its alerts resolved"))
            if inc_id in opened:
                tally.add("incidents")
                trail.append(AuditEntry(opened[inc_id], "incident.opened", incident_id=inc_id,
                                        params={"title": inc.title, "severity": sev, "services": list(inc.services),
                                                "alerts": count, "group_key": inc.group_key},
                                        result=f"opened from {count} alert(s)"))
            if is_page(sev) and not was_paging and inc.status != "resolved":
                tally.page(t.shift_hours)
            rows_out.append({"b_id": inc_id, "title": inc.title, "status": inc.status, "severity": inc.severity,
                             "services": inc.services, "alert_count": inc.alert_count, "updated_at": now,
                             "resolved_at": inc.resolved_at, "stats": stats})
            if inc_id not in opened and before != (inc.status, inc.severity, inc.alert_count, tuple(inc.services)):
                updated.append(inc_id)
        for inc_id in restated:
            inc = incidents[inc_id]
            rows_out.append({"b_id": inc_id, "title": inc.title, "status": inc.status, "severity": inc.severity,
                             "services": inc.services, "alert_count": inc.alert_count, "updated_at": inc.updated_at,
                             "resolved_at": inc.resolved_at, "stats": inc.stats})
        c = INCIDENT.c
        cols = [k for k in rows_out[0] if k != "b_id"]
        await s.exec(update(INCIDENT).where(c.id == bindparam("b_id")).values(  # type: ignore[call-overload]
            {k: bindparam(k) for k in cols}), params=rows_out)
        if phases:
            await s.exec(update(INCIDENT).where(c.id == bindparam("b_id")).values(  # type: ignore[call-overload]
                phase=bindparam("phase")), params=phases)
        return updated

    # ------------------------------------------------------------------ after the commit

    async def _after_commit(self, group: list[_Pending], updated: list[str],
                            flap_notes: list[tuple[str, str]]) -> None:
        """Tell the chat. The investigations were queued in the batch's transaction already.

        With no chat adapter configured the hub would only load each incident to post it nowhere, so that is
        skipped; with adapters, announcements run here, in order, before the ack (see docs/triage.md).
        """
        chat = self.ctx.chat
        adapters = getattr(chat, "adapters", None)
        if adapters is None or adapters:
            for p in group:
                for inc_id in p.out.opened:
                    await chat.incident_opened(inc_id, p.origin)
        if adapters:
            for inc_id in updated:
                await chat.incident_updated(inc_id)
            for fp, inc_id in flap_notes:
                if inc_id:
                    await chat.notify(inc_id, f"Alert {fp} is flapping; onwatch suppresses it until it settles.")

    async def start_incident(self, incident_id: str, origin: ThreadOrigin | None, requested_by: Actor) -> None:
        """Request the investigation (a durable job) and announce the incident."""
        try:
            from bot.investigate.service import request_investigation
        except ImportError:
            log.warning("investigation engine not installed; incident %s is not investigated", incident_id)
        else:
            await request_investigation(self.ctx, incident_id, requested_by)
        await self.ctx.chat.incident_opened(incident_id, origin)
