"""Asking for an investigation: its row, its audit entry and its durable job, nothing more.

Triage asks for one whenever it opens an incident, and chat commands ask for one on demand; neither needs
the engine, the model client or the memory that run it (``bot/investigate/service.py``).
"""

from __future__ import annotations

from typing import Any

from bot.audit import Actor, AuditEntry, audit
from bot.context import AppContext
from bot.errors import NotFound
from bot.store.models import Incident, Investigation, Job, new_id


class InvestigationNotFound(NotFound):
    """The investigation or its incident does not exist."""


async def request_investigation(ctx: AppContext, incident_id: str, requested_by: Actor) -> str:
    """Queue an investigation of ``incident_id``: one row, one audit row, one durable job."""
    async with ctx.db.begin() as s:
        incident = await s.get(Incident, incident_id)
        if incident is None:
            raise InvestigationNotFound(f"no incident {incident_id}")
        inv = Investigation(incident_id=incident_id, status="queued", requested_by=requested_by.key)
        s.add(inv)
        await s.flush()
        await audit(ctx.db, requested_by, "investigation.requested", incident_id=incident_id,
                    params={"investigation_id": inv.id}, session=s)
        await ctx.jobs.enqueue("investigation", {"investigation_id": inv.id},
                               dedup_key=f"investigation:{inv.id}", session=s)
        inv_id = inv.id
    ctx.jobs.wakeup.set()
    return inv_id


def investigation_rows(incident_ids: list[str], requested_by: Actor) -> tuple[
        list[dict[str, Any]], list[AuditEntry], list[dict[str, Any]]]:
    """The investigation rows, their ``investigation.requested`` audit entries and their durable job rows.

    One model instance each gives the column defaults; the rows are copies of it (building a SQLModel
    instance per row costs about a millisecond in a storm that opens dozens of incidents). Fresh
    investigation ids make fresh job dedup keys, so no look-up for an existing job is needed.
    """
    inv_row = Investigation(incident_id="", status="queued", requested_by=requested_by.key).model_dump()
    invs = [{**inv_row, "id": new_id("inv"), "incident_id": i} for i in incident_ids]
    entries = [AuditEntry(requested_by, "investigation.requested", incident_id=inv["incident_id"],
                          params={"investigation_id": inv["id"]}) for inv in invs]
    job_row = Job(kind="investigation", payload={}).model_dump(exclude={"id"})
    jobs = [{**job_row, "payload": {"investigation_id": inv["id"]}, "dedup_key": f"investigation:{inv['id']}"}
            for inv in invs]
    return invs, entries, jobs
