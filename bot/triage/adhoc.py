"""Ad-hoc incidents: "investigate checkout is slow" opens an incident for the services the text names.

Known services come from the configuration (topology, user-facing list, owners, runbook deployments) and
from the services of the latest incidents (every alert an incident holds adds its service to the incident's).
A text that names none opens nothing (the caller says so).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlmodel import col

from bot.audit import Actor, audit
from bot.ports import ThreadOrigin
from bot.store.models import Incident
from bot.triage.grouping import Identity
from bot.triage.severity import incident_severity

if TYPE_CHECKING:
    from bot.triage.service import TriageService

_MAX_SEEN = 2000  # incidents, newest first


async def known_services(svc: TriageService) -> set[str]:
    st = svc.ctx.settings
    names: set[str] = set(st.triage.user_facing_services) | set(st.triage.owners) | set(st.runbooks.deployments)
    for caller, callees in st.triage.topology.items():
        names.add(caller)
        names.update(callees)
    async with svc.db.session() as s:
        rows = (await s.exec(select(Incident.services).order_by(col(Incident.opened_at).desc())  # type: ignore[call-overload]
                             .limit(_MAX_SEEN))).all()
    for (services,) in rows:
        names.update(services or [])
    return {n for n in names if n}


def services_named(text: str, known: set[str]) -> list[str]:
    """Services named in ``text`` as whole words (``checkout`` but not ``checkouts``), longest names first."""
    found: list[str] = []
    lowered = text.lower()
    for name in sorted(known, key=lambda n: (-len(n), n)):
        if re.search(rf"(?<![\w-]){re.escape(name.lower())}(?![\w-])", lowered):
            found.append(name)
    return found


async def open_adhoc(svc: TriageService, text: str, actor: Actor, origin: ThreadOrigin | None) -> str | None:
    services = services_named(text, await known_services(svc))
    if not services:
        return None
    t = svc.ctx.settings.triage
    now = svc.clock()
    summary = " ".join(text.split())[:200]
    inc = Incident(
        title=f"Investigation requested: {summary}"[:500] if summary else f"Investigation of {', '.join(services)}",
        severity=incident_severity(["warning"], services, t.user_facing_services),
        services=services, group_key=Identity("" if not services else services[0], "", "", "").key(),
        owner=t.owners.get(services[0], ""), source="adhoc", alert_count=0, opened_at=now, updated_at=now,
        summary=text[:4000],
    )
    async with svc.db.begin() as s:
        s.add(inc)
        await s.flush()
        await audit(svc.db, actor, "incident.opened", incident_id=inc.id,
                    params={"title": inc.title, "services": services, "adhoc": True},
                    result="opened on request", session=s)
    await svc.start_incident(inc.id, origin, actor)
    return inc.id
