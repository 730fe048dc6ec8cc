"""Where a triage transaction reads and writes: SQLAlchemy Core statements on one connection, any dialect.

The triage pass (``txn.py``) is synchronous and runs inside one database transaction opened on the
application's engine (``AsyncConnection.run_sync``), the same on SQLite and PostgreSQL. Table and column
names come from the models, never from input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from bot.audit import AuditEntry, append_entries
from bot.store.models import (
    Alert,
    AuditEvent,
    Incident,
    IncidentAlert,
    Investigation,
    Job,
    LifecycleEvent,
    NoiseCounter,
    Silence,
)

TRIAGE_LOCK_KEY = 0x6F6E7472  # "ontr"
_CHUNK = 500  # fingerprints / incident ids per IN (...) list

TABLES: dict[str, Table] = {m.__tablename__: m.__table__  # type: ignore[attr-defined,misc,union-attr]
                            for m in (Alert, Incident, IncidentAlert, Investigation, Job, AuditEvent, NoiseCounter,
                                      LifecycleEvent)}

STATE_COLS = ("id", "fingerprint", "status", "content_hash", "incident_id", "flips", "suppressed", "duplicates",
              "first_seen", "service", "severity")
INCIDENT_COLS = ("id", "title", "status", "severity", "services", "group_key", "alert_count", "updated_at",
                 "resolved_at", "stats", "phase")


def _where_recent(c: Any, now: float, window_s: float, cooloff_s: float) -> Any:
    return ((c.status != "resolved") & (c.updated_at >= now - window_s)) | (
        (c.status == "resolved") & (c.resolved_at >= now - cooloff_s))


class TriageStore:
    """The triage pass's reads and writes on one SQLAlchemy connection, inside its transaction."""

    def __init__(self, conn: Connection, is_postgres: bool):
        self.conn = conn
        self.is_postgres = is_postgres

    def lock(self) -> None:
        """Serialise triage across replicas on PostgreSQL; SQLite's transaction began IMMEDIATE (write lock held)."""
        if self.is_postgres:
            self.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": TRIAGE_LOCK_KEY})

    def load_states(self, fps: Sequence[str]) -> list[tuple[Any, ...]]:
        c = TABLES["alert"].c
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(fps), _CHUNK):
            q = select(*(c[k] for k in STATE_COLS)).where(c.fingerprint.in_(fps[i:i + _CHUNK]))
            out.extend(tuple(r) for r in self.conn.execute(q))
        return out

    def active_silences(self, now: float) -> list[tuple[dict[str, str], float, float, str]]:
        q = select(Silence.matchers, Silence.starts_at, Silence.ends_at, Silence.comment).where(  # type: ignore[call-overload]
            Silence.starts_at <= now, Silence.ends_at > now)  # type: ignore[operator]
        return [tuple(r) for r in self.conn.execute(q)]  # type: ignore[misc]

    def candidate_incidents(self, now: float, window_s: float, cooloff_s: float,
                            referenced: set[str]) -> list[tuple[Any, ...]]:
        c = TABLES["incident"].c
        where = _where_recent(c, now, window_s, cooloff_s)
        if referenced:
            where = where | c.id.in_(sorted(referenced))
        return [tuple(r) for r in self.conn.execute(select(*(c[k] for k in INCIDENT_COLS)).where(where))]

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(TABLES[table]), rows)

    def insert_alerts(self, cols: Sequence[str], rows: list[tuple[Any, ...]]) -> list[int]:
        if not rows:
            return []
        stmt = insert(TABLES["alert"]).returning(TABLES["alert"].c.id, sort_by_parameter_order=True)
        return [r.id for r in self.conn.execute(stmt, [dict(zip(cols, r, strict=True)) for r in rows])]

    def update_alerts(self, cols: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.update("alert", "id", [{**dict(zip(cols, r[:-1], strict=True)), "b_id": r[-1]} for r in rows])

    def update(self, table: str, key_col: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        t = TABLES[table]
        cols = [k for k in rows[0] if k != "b_id"]
        self.conn.execute(update(t).where(t.c[key_col] == bindparam("b_id")).values({k: bindparam(k) for k in cols}),
                          rows)

    def link(self, rows: list[tuple[str, int, float]]) -> None:
        if rows:
            ins: Any = pg_insert(TABLES["incident_alert"]) if self.is_postgres else sqlite_insert(TABLES["incident_alert"])
            self.conn.execute(ins.on_conflict_do_nothing(),
                              [{"incident_id": i, "alert_id": a, "attached_at": t} for i, a, t in rows])

    def alert_aggregates(self, incident_ids: Sequence[str]) -> list[tuple[str, str, str, str, bool, int]]:
        c = TABLES["alert"].c
        supp = (c.suppressed != "").label("supp")
        q = (select(c.incident_id, c.service, c.severity, c.status, supp, func.count())
             .where(c.incident_id.in_(list(incident_ids)))
             .group_by(c.incident_id, c.service, c.severity, c.status, supp))
        return [(i, sv, sev, st, bool(sp), int(n)) for i, sv, sev, st, sp, n in self.conn.execute(q)]

    def add_noise(self, day: str, counts: Mapping[str, int]) -> None:
        if not counts:
            return
        table = TABLES["noise_counter"]
        stmt: Any = pg_insert(table) if self.is_postgres else sqlite_insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=["day", "name"],
                                          set_={"value": table.c.value + stmt.excluded.value})
        self.conn.execute(stmt, [{"day": day, "name": n, "value": v} for n, v in sorted(counts.items())])

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        append_entries(self.conn, entries, self.is_postgres)
