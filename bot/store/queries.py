"""Reads several packages need the same way, so they agree on what, say, "an incident's alerts" means."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.errors import NotFound
from bot.store.models import Alert, Incident, IncidentAlert, Investigation


async def incident_alerts(s: AsyncSession, incident_id: str) -> list[Alert]:
    """The alerts an incident holds: those pointing at it now and those linked to it earlier (an alert
    re-attached to a reopened incident stays part of the first one), oldest first."""
    linked = select(IncidentAlert.alert_id).where(IncidentAlert.incident_id == incident_id)
    return list((await s.exec(
        select(Alert).where((col(Alert.incident_id) == incident_id) | col(Alert.id).in_(linked))
        .order_by(col(Alert.starts_at), col(Alert.id))
    )).all())


async def investigation_and_incident(s: AsyncSession, investigation_id: str) -> tuple[Investigation, Incident]:
    """An investigation and the incident it belongs to; ``NotFound`` names whichever is missing."""
    inv = await s.get(Investigation, investigation_id)
    if inv is None:
        raise NotFound(f"investigation {investigation_id} does not exist")
    inc = await s.get(Incident, inv.incident_id)
    if inc is None:
        raise NotFound(f"incident {inv.incident_id} does not exist")
    return inv, inc
