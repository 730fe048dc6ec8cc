"""Reads the facts the reports need from onwatch's own records (incidents, alerts, acknowledgements,
executions, investigations, memory, recorded changes) and computes the report for a window."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from sqlmodel import col, select

from bot.config import ReportSettings
from bot.reports.figures import Deployment, IncidentFacts, Report, compute
from bot.reports.times import shift_bounds, zone
from bot.store.db import Database
from bot.store.models import (
    Acknowledgement,
    Alert,
    ChangeRecord,
    Evidence,
    Execution,
    Incident,
    IncidentAlert,
    Investigation,
    Memory,
    NoiseCounter,
)

IMPACT_KEYS = ("impact_start", "impact_started_at")  # alert annotation or label: when users were first hurt


def _impact(alert: Alert) -> float | None:
    for key in IMPACT_KEYS:
        raw = alert.annotations.get(key) or alert.labels.get(key)
        if not raw:
            continue
        try:
            return float(raw)
        except ValueError:
            pass
        try:
            parsed = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            continue
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()
    return None


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


async def load_facts(db: Database, start: float, end: float) -> tuple[list[IncidentFacts], list[Deployment]]:
    async with db.session() as s:
        incs = list((await s.exec(select(Incident).where(col(Incident.opened_at) >= start,
                                                         col(Incident.opened_at) < end))).all())
        ids = [i.id for i in incs]
        alerts: dict[str, list[Alert]] = {}
        if ids:
            for a in (await s.exec(select(Alert).where(col(Alert.incident_id).in_(ids)))).all():
                alerts.setdefault(a.incident_id or "", []).append(a)
            linked = (await s.exec(select(IncidentAlert.incident_id, Alert)
                                   .join(Alert, col(Alert.id) == col(IncidentAlert.alert_id))
                                   .where(col(IncidentAlert.incident_id).in_(ids)))).all()
            for inc_id, a in linked:
                alerts.setdefault(inc_id, []).append(a)
        acks: dict[str, float] = {}
        for a_row in (await s.exec(select(Acknowledgement).where(col(Acknowledgement.incident_id).in_(ids)))).all():
            acks[a_row.incident_id] = min(a_row.at, acks.get(a_row.incident_id, a_row.at))
        fixed: dict[str, float] = {}
        for e in (await s.exec(select(Execution).where(col(Execution.incident_id).in_(ids),
                                                       Execution.verification == "recovered"))).all():
            if e.verified_at is not None:
                fixed[e.incident_id] = min(e.verified_at, fixed.get(e.incident_id, e.verified_at))
        remembered = {m_id: (svc, kind) for m_id, svc, kind in (await s.exec(
            select(Memory.incident_id, Memory.cause_service, Memory.cause_kind)
            .where(col(Memory.incident_id).in_(ids)))).all()}
        invs: dict[str, Investigation] = {}
        for inv in (await s.exec(select(Investigation).where(col(Investigation.incident_id).in_(ids),
                                                             Investigation.status == "done"))).all():
            cur = invs.get(inv.incident_id)
            if cur is None or (inv.finished_at or 0) >= (cur.finished_at or 0):
                invs[inv.incident_id] = inv
        # deployments: those reported to onwatch (change webhook) and those its investigations saw
        deploys: dict[tuple[str, int], Deployment] = {}
        for c in (await s.exec(select(ChangeRecord).where(col(ChangeRecord.time) >= start,
                                                          col(ChangeRecord.time) < end,
                                                          ChangeRecord.kind == "deploy"))).all():
            deploys[(c.service, round(c.time))] = Deployment(c.service, c.time, c.version, "change webhook")
        seen = (await s.exec(select(Evidence).where(Evidence.kind == "change"))).all()
    for ev in seen:
        data: Mapping[str, Any] = ev.data if isinstance(ev.data, Mapping) else {}
        at = _num(data.get("onset"))
        if at is None or data.get("signal") != "deploy" or not (start <= at < end):
            continue
        deploys.setdefault((ev.service, round(at)), Deployment(ev.service, at, "", ev.source))
    facts = []
    for i in incs:
        mine = alerts.get(i.id, [])
        impacts = [t for t in (_impact(a) for a in mine) if t is not None]
        cause_service, cause_kind, change_at = "", "", None
        mem = remembered.get(i.id)
        done = invs.get(i.id)
        if mem is not None and mem[0]:
            cause_service, cause_kind = mem
        elif done is not None and not done.abstained:
            causes = (done.report or {}).get("causes") or []
            top = causes[0] if causes and isinstance(causes[0], Mapping) else {}
            cause_service, cause_kind = str(top.get("service") or ""), str(top.get("kind") or "")
        if done is not None and cause_service:
            report = done.report or {}
            by_id = {str(e.get("id")): e for e in report.get("evidence") or [] if isinstance(e, Mapping)}
            causes = [c for c in report.get("causes") or [] if isinstance(c, Mapping)]
            mine_cause = next((c for c in causes if c.get("service") == cause_service
                               and c.get("kind") == cause_kind), None)
            for key in (mine_cause or {}).get("evidence") or []:
                item: Mapping[str, Any] = by_id.get(str(key), {})
                if item.get("kind") == "change" and item.get("service") == cause_service:
                    change_at = _num(item.get("onset"))
                    break
        facts.append(IncidentFacts(
            id=i.id, severity=i.severity, services=tuple(i.services), opened_at=i.opened_at,
            first_alert_at=min((a.starts_at for a in mine), default=None),
            impact_start=min(impacts) if impacts else None, acked_at=acks.get(i.id),
            fix_verified_at=fixed.get(i.id), resolved_at=i.resolved_at if i.status == "resolved" else None,
            cause_service=cause_service, cause_kind=cause_kind, cause_change_at=change_at))
    return facts, list(deploys.values())


async def _noise(db: Database, start: float, end: float) -> dict[str, int]:
    first = dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%d")
    last = dt.datetime.fromtimestamp(end, dt.UTC).strftime("%Y-%m-%d")
    out = {"received": 0, "duplicates": 0, "suppressed": 0}
    async with db.session() as s:
        for r in (await s.exec(select(NoiseCounter).where(col(NoiseCounter.day) >= first,
                                                          col(NoiseCounter.day) <= last))).all():
            if r.name in out:
                out[r.name] += r.value
    return out


async def build_report(db: Database, settings: ReportSettings, days: int = 7, now: float | None = None) -> Report:
    """The report for the ``days`` before ``now`` (default: this moment)."""
    end = time.time() if now is None else now
    start = end - days * 86400
    incidents, deployments = await load_facts(db, start, end)
    shifts = shift_bounds(start, end, settings.shift_starts, zone(settings.timezone))
    shifts = [(max(a, start), min(b, end)) for a, b in shifts]
    return compute(incidents, deployments, start, end, shifts, await _noise(db, start, end))
