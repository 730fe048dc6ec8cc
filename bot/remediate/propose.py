"""Propose: offer the catalog runbooks that match an investigation's ranked causes — rendered, in scope, with
a dry-run preview and their preconditions met — and auto-approve the few the ``auto`` policy allows.

Every offer and every match not offered (and why) is an audit row; the proposals, their audit rows, the
incident's move to ``awaiting_approval`` and the ``proposals.offered`` event commit together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.audit import BOT, audit
from bot.incidents.lifecycle import IncidentPhase
from bot.incidents.outbox import EventKind, emit
from bot.remediate.auto import decide_auto
from bot.remediate.catalog import Runbook
from bot.remediate.match import Cause, matches, render_action, render_text, resolve_values
from bot.remediate.params import ParamError
from bot.remediate.policy import check_preconditions, check_scope
from bot.remediate.shared import Remediation, set_phase
from bot.remediate.state import LIVE, ProposalStatus, decided_values, transition
from bot.store.models import Execution, Finding, Incident, Investigation, Proposal
from integrations.executors import DeploymentFinder, ExecutorError, ExecutorRefused

MAX_PROPOSALS = 5
PREVIEW_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Plan:
    """A runbook made concrete for one cause: its values, rendered action, text and preview."""

    runbook: Runbook
    cause: Cause
    values: dict[str, Any]
    action: dict[str, Any]
    title: str
    description: str
    preview: dict[str, Any]


class NotOffered(Exception):
    """A matching runbook that cannot be offered for this cause (the reason is audited and shown)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def causes_of(report: Mapping[str, Any], findings: list[Finding]) -> list[Cause]:
    """The investigation's ranked causes (its report's order), each tied to its stored finding when there is one."""
    by_key = {(f.service, f.kind): f for f in findings}
    out: list[Cause] = []
    raw = report.get("causes") if isinstance(report.get("causes"), list) else None
    if raw:
        for i, c in enumerate(raw):
            if not isinstance(c, dict) or not c.get("service") or not c.get("kind"):
                continue
            f = by_key.get((str(c["service"]), str(c["kind"])))
            extras = {k: c[k] for k in ("node", "pod") if isinstance(c.get(k), str)}
            out.append(Cause(
                service=str(c["service"]), kind=str(c["kind"]), confidence=float(c.get("confidence") or 0.0),
                rank=i, evidence=tuple(str(e) for e in c.get("evidence") or ()),
                finding_id=f.id if f else None, extras=extras,
            ))
        return out
    for f in sorted(findings, key=lambda f: f.rank):
        out.append(Cause(service=f.service, kind=f.kind, confidence=f.confidence, rank=f.rank,
                         evidence=tuple(f.evidence_keys), finding_id=f.id))
    return out


async def _recent(r: Remediation, rb: Runbook, service: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for p in rb.preconditions:
        if p.check == "no_recent_execution" and p.minutes:
            since = time.time() - p.minutes * 60
            async with r.db.session() as s:
                n = (await s.exec(
                    select(func.count()).select_from(Execution)
                    .join(Proposal, col(Proposal.id) == col(Execution.proposal_id))
                    .where(Proposal.runbook_id == rb.id, Proposal.service == service,
                           col(Execution.started_at) >= since)
                )).one()
            out[p.minutes] = int(n)
    return out


async def plan(r: Remediation, rb: Runbook, cause: Cause, incident_id: str,
               evidence: Mapping[str, Mapping[str, Any]]) -> Plan:
    """Render ``rb`` for ``cause``, check its scope, dry-run it and check its preconditions; or ``NotOffered``."""
    finder: DeploymentFinder | None = None
    try:
        ex = r.executors.get("kubernetes")
        finder = ex if isinstance(ex, DeploymentFinder) else None
    except ExecutorRefused:
        finder = None
    try:
        values = await resolve_values(rb, cause, incident_id, r.settings, evidence=evidence, finder=finder)
        action = render_action(rb, values, cause.service)
        title, description = render_text(rb, values)
    except (ParamError, ExecutorError) as exc:
        raise NotOffered(str(exc)) from None
    problems = check_scope(rb, action, r.settings)
    if problems:
        raise NotOffered("out of scope: " + "; ".join(problems))
    try:
        executor = r.executors.get(str(action["executor"]))
        preview = await asyncio.wait_for(executor.preview(action), timeout=PREVIEW_TIMEOUT_S)
    except ExecutorError as exc:
        raise NotOffered(f"cannot prepare it: {exc}") from None
    except TimeoutError:
        raise NotOffered(f"the dry run did not answer within {PREVIEW_TIMEOUT_S:g} s") from None
    failed = check_preconditions(rb, confidence=cause.confidence, facts=preview,
                                 recent_executions=await _recent(r, rb, cause.service))
    if failed:
        raise NotOffered("precondition failed: " + "; ".join(failed))
    return Plan(rb, cause, values, action, title, description, preview)


async def propose(r: Remediation, incident_id: str, investigation_id: str) -> list[Proposal]:
    """Offer the catalog runbooks that match the investigation's ranked causes, in scope, with a preview."""
    async with r.db.session() as s:
        inc = await s.get(Incident, incident_id)
        inv = await s.get(Investigation, investigation_id)
        findings = list((await s.exec(
            select(Finding).where(Finding.investigation_id == investigation_id)
        )).all())
        live = {(p.runbook_id, p.service) for p in (await s.exec(
            select(Proposal).where(Proposal.incident_id == incident_id, col(Proposal.status).in_(sorted(s.value for s in LIVE)))
        )).all()}
    if inc is None or inv is None or inv.abstained:
        return []
    report = inv.report or {}
    evidence = {str(e["id"]): e for e in report.get("evidence") or [] if isinstance(e, dict) and "id" in e}
    plans: list[Plan] = []
    refused: list[str] = []
    refused_rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for cause in causes_of(report, findings):
        for rb in r.catalog:
            key = (rb.id, cause.service)
            if key in seen or key in live or not matches(rb, cause):
                continue
            seen.add(key)
            if len(plans) >= MAX_PROPOSALS:
                break
            try:
                plans.append(await plan(r, rb, cause, incident_id, evidence))
            except NotOffered as no:
                refused.append(f"{rb.id} for {cause.service} ({cause.kind}): {no.reason}")
                refused_rows.append({"runbook_id": rb.id, "service": cause.service, "kind": cause.kind,
                                     "reason": no.reason})
    autos = {id(p): await decide_auto(r.db, r.settings, p.runbook, p.cause) for p in plans}
    created: list[Proposal] = []
    ttl = r.settings.runbooks.proposal_ttl_s
    async with r.db.begin() as s:
        for row in refused_rows:
            await audit(r.db, BOT, "proposal.not_offered", incident_id=incident_id,
                        params={**row, "investigation_id": investigation_id}, result=row["reason"], session=s)
        for pl in plans:
            p = await _create(r, s, pl, incident_id, investigation_id, inv.requested_by or BOT.key, ttl)
            auto = autos[id(pl)]
            if auto.allowed:
                ok = await transition(s, r.db, p.id, incident_id, ProposalStatus.PENDING, ProposalStatus.APPROVED, BOT,
                                      params={"auto": True, "why": auto.reason}, result=auto.reason,
                                      values={"auto": True, **decided_values(["onwatch:auto"])})
                if ok:
                    p.status, p.auto = ProposalStatus.APPROVED.value, True
                    await r.ctx.jobs.enqueue("execution", {"proposal_id": p.id},
                                             dedup_key=f"execute:{p.id}", max_attempts=1, session=s)
            elif pl.runbook.auto is not None:
                await audit(r.db, BOT, "proposal.auto_declined", incident_id=incident_id,
                            params={"proposal_id": p.id}, result=auto.reason, session=s)
            created.append(p)
        if any(p.status == ProposalStatus.PENDING for p in created):
            await set_phase(s, r, incident_id, IncidentPhase.AWAITING_APPROVAL)
        if created or refused:
            await emit(s, incident_id, EventKind.PROPOSALS_OFFERED,
                       {"proposal_ids": [p.id for p in created], "refused": refused})
    await r.publish()
    if any(p.status == ProposalStatus.APPROVED for p in created):
        r.ctx.jobs.wakeup.set()
    return created


async def _create(r: Remediation, s: AsyncSession, pl: Plan, incident_id: str, investigation_id: str, requested_by: str,
                  ttl: float) -> Proposal:
    rb, cause = pl.runbook, pl.cause
    p = Proposal(
        incident_id=incident_id, finding_id=cause.finding_id, runbook_id=rb.id, title=pl.title[:500],
        service=cause.service, risk=rb.risk, requested_by=requested_by,
        approvals_needed=rb.approvals_needed, expires_at=time.time() + ttl,
        params={"values": pl.values, "action": pl.action, "description": pl.description,
                "cause": {"service": cause.service, "kind": cause.kind, "confidence": cause.confidence,
                          "evidence": list(cause.evidence)},
                "investigation_id": investigation_id},
        preview=pl.preview,
    )
    s.add(p)
    await s.flush()
    await audit(r.db, BOT, "proposal.created", incident_id=incident_id,
                params={"proposal_id": p.id, "runbook_id": rb.id, "service": cause.service,
                        "cause_kind": cause.kind, "confidence": cause.confidence, "risk": rb.risk,
                        "action": pl.action, "preview": pl.preview},
                result=pl.title, session=s)
    return p
