"""Neutral composition: investigation report → steps, chart, ranked causes with evidence; proposals → actions."""

from __future__ import annotations

import copy
import time

import pytest

from bot.chat import compose
from bot.errors import NotFound
from bot.messages.chart import chart_for_report, render_png, spec_from_report
from bot.messages.model import Cause, Chart, EvidenceItem, ProposalBlock, Step, Text
from bot.store.models import Approval, Execution, Proposal
from tests.slack_fixtures import REPORT, T0, make_incident, make_investigation, make_proposal

PNG = b"\x89PNG\r\n\x1a\n"


async def test_investigation_messages_steps_chart_causes(db):
    inc = await make_incident(db)
    inv = await make_investigation(db, inc.id)
    msgs = await compose.investigation_messages(db, inv.id)
    keys = [m.key for m in msgs]
    assert keys == [f"investigation:{inv.id}:steps", f"investigation:{inv.id}:chart", f"investigation:{inv.id}:causes"]

    steps = [b for b in msgs[0].blocks if isinstance(b, Step)]
    assert [s.index for s in steps] == [1, 2, 3]
    assert "deploys in the window" in steps[1].text and "v2.3.1" in steps[1].text
    assert steps[-1].kind == "concluded"

    chart = msgs[1].attachments[0]
    assert isinstance(msgs[1].blocks[0], Chart) and chart.png.startswith(PNG)

    causes_msg = msgs[2]
    kinds = [type(b).__name__ for b in causes_msg.blocks]
    # heading, cause 1 and its three evidence items, cause 2 and its one, the missing sources
    assert kinds == ["Text", "Cause", "EvidenceItem", "EvidenceItem", "EvidenceItem", "Cause", "EvidenceItem", "Text"]
    c1 = causes_msg.blocks[1]
    assert isinstance(c1, Cause) and c1.rank == 1 and c1.service == "checkout" and c1.confidence == pytest.approx(0.82)
    ev = [b for b in causes_msg.blocks if isinstance(b, EvidenceItem)]
    assert ev[0].query.startswith("sum(rate(") and ev[0].before == 0.01 and ev[0].after == 0.4
    assert ev[0].link.startswith("http://prometheus.local")
    assert "NullPointerException" in ev[1].excerpt  # the log excerpt
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in ev[2].excerpt and "compare/v2.3.0...v2.3.1" in ev[2].excerpt
    assert "tempo: timed out" in causes_msg.blocks[-1].text  # type: ignore[union-attr]
    assert "checkout" in causes_msg.fallback and "82%" in causes_msg.fallback


async def test_report_rebuilt_from_evidence_and_finding_rows(db):
    inc = await make_incident(db)
    inv = await make_investigation(db, inc.id, rows=True)
    msgs = await compose.investigation_messages(db, inv.id)
    causes = [b for b in msgs[-1].blocks if isinstance(b, Cause)]
    assert [c.service for c in causes] == ["checkout", "payments"]
    ev = [b for b in msgs[-1].blocks if isinstance(b, EvidenceItem)]
    assert any("NullPointerException" in e.excerpt for e in ev)


async def test_abstained_report_says_not_enough_evidence(db):
    inc = await make_incident(db)
    report = copy.deepcopy(REPORT)
    report["abstained"] = True
    report["reason"] = "no signal moved beyond its noise"
    inv = await make_investigation(db, inc.id, report)
    msgs = await compose.investigation_messages(db, inv.id)
    first = msgs[-1].blocks[0]
    assert isinstance(first, Text) and first.style == "warning"
    assert "Not enough evidence" in first.text and "noise" in first.text
    assert "not enough evidence" in msgs[-1].fallback


async def test_failed_investigation_tells_what_to_do(db):
    inc = await make_incident(db)
    inv = await make_investigation(db, inc.id, {}, status="failed")
    msgs = await compose.investigation_messages(db, inv.id)
    assert len(msgs) == 1 and f"investigate {inc.id}" in msgs[0].fallback


async def test_unknown_investigation_is_not_found(db):
    with pytest.raises(NotFound):
        await compose.investigation_messages(db, "inv_nope")


async def test_proposal_messages_buttons_carry_only_the_id_and_confirm_when_risky(db):
    inc = await make_incident(db)
    risky = await make_proposal(db, inc.id, risk="high")
    safe = await make_proposal(db, inc.id, risk="low", title="Clear cache")
    msgs = await compose.proposal_messages(db, [risky.id, safe.id, "missing-id"], ["scale-up: outside namespace scope"])
    assert [m.key for m in msgs[:2]] == [f"proposal:{risky.id}", f"proposal:{safe.id}"]
    b0 = msgs[0].blocks[0]
    assert isinstance(b0, ProposalBlock)
    assert [a.action_id for a in b0.actions] == ["onwatch_approve", "onwatch_reject"]
    assert all(a.value == risky.id for a in b0.actions)
    assert b0.actions[0].confirm and "high" in b0.actions[0].confirm
    assert ("command", "kubectl rollout restart deploy/checkout -n shop") in b0.preview
    b1 = msgs[1].blocks[0]
    assert isinstance(b1, ProposalBlock) and not b1.actions[0].confirm
    assert "Not offered" in msgs[2].fallback and "outside namespace" in msgs[2].fallback
    assert len(msgs) == 3  # the unknown id is skipped


async def test_proposal_status_message_replaces_buttons_with_decision(db):
    inc = await make_incident(db)
    p = await make_proposal(db, inc.id)
    incident_id, pending = await compose.proposal_status_message(db, p.id)
    assert incident_id == inc.id and pending.blocks[0].actions  # type: ignore[union-attr]
    decided_at = time.time()
    async with db.begin() as s:
        row = await s.get(Proposal, p.id)
        assert row is not None
        row.status, row.decided_at, row.decided_by = "succeeded", decided_at, "slack:UALICE"
        s.add(Approval(proposal_id=p.id, actor="slack:UALICE", actor_name="alice", decision="approve", at=decided_at))
        s.add(Execution(proposal_id=p.id, incident_id=inc.id, status="succeeded", verification="recovered"))
    _, msg = await compose.proposal_status_message(db, p.id)
    block = msg.blocks[0]
    assert isinstance(block, ProposalBlock)
    assert msg.key == f"proposal:{p.id}" and block.actions == ()
    assert block.decided.startswith("Approved by alice at ") and "UTC" in block.decided
    assert "recovered" in block.decided


async def test_rejected_and_expired_texts(db):
    inc = await make_incident(db)
    p1 = await make_proposal(db, inc.id)
    p2 = await make_proposal(db, inc.id)
    async with db.begin() as s:
        r1 = await s.get(Proposal, p1.id)
        r2 = await s.get(Proposal, p2.id)
        assert r1 and r2
        r1.status, r1.decided_at = "rejected", time.time()
        r2.status = "expired"
        s.add(Approval(proposal_id=p1.id, actor="slack:UBOB", actor_name="bob", decision="reject"))
    _, m1 = await compose.proposal_status_message(db, p1.id)
    _, m2 = await compose.proposal_status_message(db, p2.id)
    assert m1.blocks[0].decided.startswith("Rejected by bob")  # type: ignore[union-attr]
    assert m2.blocks[0].decided.startswith("Expired")  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await compose.proposal_status_message(db, "nope-nope-nope")


async def test_status_message(db):
    inc = await make_incident(db)
    await make_investigation(db, inc.id)
    await make_proposal(db, inc.id)
    msg = await compose.status_message(db, inc.id)
    assert msg is not None
    assert any(isinstance(b, Cause) and b.service == "checkout" for b in msg.blocks)
    assert any(isinstance(b, Text) and "pending" in b.text for b in msg.blocks)
    assert await compose.status_message(db, "INC-000000") is None


# ----------------------------------------------------------------- chart


def test_chart_prefers_engine_series_with_onset_and_change_markers():
    report = copy.deepcopy(REPORT)
    report["chart"] = {"title": "checkout 5xx", "unit": "req/s", "onset": T0 + 600,
                       "series": [{"name": "checkout 5xx", "points": [[T0 + i * 60, 0.01 if i < 10 else 0.4]
                                                                       for i in range(20)]},
                                  {"name": "bad", "points": [[T0, "x"]]}]}
    spec = spec_from_report(report)
    assert spec is not None and len(spec.series) == 1 and spec.onset == T0 + 600
    assert spec.series[0].v[-1] == 0.4
    assert [m.label for m in spec.markers] == ["deploy v2.3.1"]  # the change evidence, at T0+540
    png = render_png(spec)
    assert png.startswith(PNG) and len(png) > 5000


def test_chart_from_evidence_series_then_before_after_bars():
    report = copy.deepcopy(REPORT)
    report["evidence"][0]["series"] = [[T0 + i * 30, float(i)] for i in range(40)]
    spec = spec_from_report(report)
    assert spec is not None and spec.series and spec.onset == T0 + 600
    bars = spec_from_report(REPORT)
    assert bars is not None and not bars.series
    assert bars.bars[0][1:] == (0.01, 0.4)
    assert render_png(bars).startswith(PNG)


async def test_no_chart_without_numbers():
    assert await chart_for_report({"evidence": [{"id": "e1", "summary": "x"}], "causes": []}) is None
    chart = await chart_for_report(REPORT, title="INC-1")
    assert chart is not None and chart.png.startswith(PNG)


async def test_similar_past_incidents_are_shown_as_context(db):
    from bot.chat.compose import investigation_messages
    from bot.messages.model import Text
    from tests.slack_fixtures import REPORT, make_incident, make_investigation

    inc = await make_incident(db)
    report = {**REPORT, "similar": [{"incident_id": "INC-OLD1", "title": "checkout slow", "cause_service": "payments-api",
                                     "cause_kind": "deploy", "fix": "Roll back payments-api"}]}
    inv = await make_investigation(db, inc.id, report)
    texts = [b.text for m in await investigation_messages(db, inv.id) for b in m.blocks if isinstance(b, Text)]
    assert any("INC-OLD1" in t and "payments-api deploy" in t and "Roll back payments-api" in t for t in texts)
