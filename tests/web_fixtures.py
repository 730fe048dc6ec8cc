"""A populated database for the web view and report tests: an incident carried from alert to verified fix
(with hostile text in its alert), an abstained one, a resolved one, acknowledgements and the audit rows."""

from __future__ import annotations

import time

from bot.audit import BOT, Actor, audit
from bot.store.db import Database
from bot.store.models import (
    Acknowledgement,
    Alert,
    Approval,
    ChangeRecord,
    Evidence,
    Execution,
    Finding,
    Incident,
    Investigation,
    Proposal,
)

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
TOKEN = "viewer-token-for-tests-0123456789"
ANA = Actor("slack", "U0ANA", "Ana")


def _series(start: float, jump_at: float) -> dict[str, object]:
    pts = [[start + i * 15, 0.1 if start + i * 15 < jump_at else 2.5] for i in range(80)]
    return {"title": "latency_p99 of checkout", "unit": "s", "onset": jump_at,
            "series": [{"name": "checkout latency_p99", "points": pts}], "markers": [{"at": jump_at - 60, "label": "deploy v2"}]}


async def populate(db: Database, now: float | None = None) -> dict[str, str]:
    """Rows for three incidents; returns their ids by role (``full``, ``abstained``, ``resolved``)."""
    now = time.time() - 3600 if now is None else now
    t0 = now - 1800
    async with db.begin() as s:
        full = Incident(id="INC-AAA111", title=f"Checkout latency {HOSTILE}", status="mitigated", phase="verified",
                        severity="critical", services=["checkout"], source="alertmanager", alert_count=1,
                        opened_at=t0 + 60, updated_at=t0 + 600)
        abst = Incident(id="INC-BBB222", title="Cart errors", status="open", phase="inconclusive", severity="warning",
                        services=["cart"], source="alertmanager", alert_count=1, opened_at=t0 + 300, updated_at=t0 + 400)
        done = Incident(id="INC-CCC333", title="Frontend 5xx", status="resolved", phase="resolved", severity="high",
                        services=["frontend"], source="generic", alert_count=1, opened_at=t0 + 900, updated_at=t0 + 1500,
                        resolved_at=t0 + 1500)
        s.add_all([full, abst, done])
        await s.flush()
        s.add_all([
            Alert(fingerprint="fp-full", source="alertmanager", name="CheckoutLatencyHigh", status="firing",
                  severity="critical", service="checkout", labels={"alertname": "CheckoutLatencyHigh"},
                  annotations={"summary": f"p99 above 2 s {HOSTILE}"}, starts_at=t0, incident_id=full.id),
            Alert(fingerprint="fp-abst", source="alertmanager", name="CartErrors", status="firing", severity="warning",
                  service="cart", starts_at=t0 + 240, incident_id=abst.id),
            Alert(fingerprint="fp-done", source="generic", name="Frontend5xx", status="resolved", severity="high",
                  service="frontend", starts_at=t0 + 880, ends_at=t0 + 1500, incident_id=done.id),
            ChangeRecord(service="checkout", version="v2", time=t0 - 60, description="checkout v2"),
        ])
        report = {
            "abstained": False, "reason": "",
            "steps": [{"n": 1, "looked_at": "Metrics: 4 signals", "concluded": "latency_p99 of checkout left its band"},
                      {"n": 2, "looked_at": "Changes", "concluded": f"checkout v2 deployed 60 s before {HOSTILE}"}],
            "causes": [{"service": "checkout", "kind": "deploy", "confidence": 0.72, "evidence": ["e1", "e2"],
                        "summary": "deploy of checkout v2 precedes the onset"}],
            "evidence": [
                {"id": "e1", "source": "prometheus", "kind": "metric", "service": "checkout", "signal": "latency_p99",
                 "query": "histogram_quantile(0.99, …)", "summary": "latency_p99 of checkout moved from 0.1 to 2.5",
                 "before": 0.1, "after": 2.5, "link": "https://grafana.example/d/abc"},
                {"id": "e2", "source": "changes", "kind": "change", "service": "checkout", "signal": "deploy",
                 "query": "", "summary": "deploy of checkout v2", "onset": t0 - 60, "link": "javascript:alert(1)"},
            ],
            "missing": ["loki: timed out after 10 s"],
            "chart": _series(t0 - 600, t0),
            "reading": {"text": "The deploy of checkout v2 [e2] made checkout slow [e1].", "cited": ["e1", "e2"]},
        }
        inv = Investigation(id="inv_full", incident_id=full.id, status="done", started_at=t0 + 61,
                            finished_at=t0 + 70, report=report)
        abst_inv = Investigation(id="inv_abst", incident_id=abst.id, status="done", started_at=t0 + 301,
                                 finished_at=t0 + 310, abstained=True,
                                 report={"abstained": True, "reason": "the leading causes are not clearly separated",
                                         "steps": [], "causes": [{"service": "cart", "kind": "error_pattern",
                                                                   "confidence": 0.2, "evidence": []}],
                                         "evidence": [], "missing": []})
        s.add_all([inv, abst_inv])
        await s.flush()
        s.add_all([Evidence(investigation_id=inv.id, key="e1", source="prometheus", summary="latency"),
                   Finding(investigation_id=inv.id, rank=1, service="checkout", kind="deploy", confidence=0.72)])
        prop = Proposal(id="prop-full", incident_id=full.id, runbook_id="rollback-deploy", title="Roll back checkout",
                        service="checkout", risk="medium", status="succeeded", created_at=t0 + 71, expires_at=t0 + 3671,
                        decided_at=t0 + 200, decided_by="slack:U0ANA")
        s.add(prop)
        await s.flush()
        s.add_all([
            Approval(proposal_id=prop.id, actor="slack:U0ANA", actor_name="Ana", decision="approve", at=t0 + 200),
            Execution(id="exe_full", proposal_id=prop.id, incident_id=full.id, status="succeeded", started_at=t0 + 201,
                      finished_at=t0 + 205, after={"status": 200, "response": HOSTILE}, verification="recovered",
                      verified_at=t0 + 260),
            Acknowledgement(incident_id=full.id, actor="slack:U0ANA", actor_name="Ana", at=t0 + 120),
            Acknowledgement(incident_id=done.id, actor="teams:aad-1", actor_name="Bo", at=t0 + 960),
        ])
    await audit(db, BOT, "incident.opened", incident_id=full.id, params={"alerts": 1}, result="opened from 1 alert(s)")
    await audit(db, BOT, "investigation.step", incident_id=full.id,
                params={"investigation_id": "inv_full", "looked_at": "Metrics: 4 signals", "n": 1},
                result="latency_p99 of checkout left its band")
    await audit(db, ANA, "incident.acknowledged", incident_id=full.id, result="acknowledged")
    await audit(db, ANA, "proposal.approved", incident_id=full.id, params={"proposal_id": prop.id})
    await audit(db, BOT, "verification.recovered", incident_id=full.id, result=f"latency recovered {HOSTILE}")
    await audit(db, BOT, "incident.opened", incident_id=abst.id, result="opened from 1 alert(s)")
    return {"full": full.id, "abstained": abst.id, "resolved": done.id}
