"""Adaptive Card 1.5 rendering of the neutral chat model (pure functions, no SDK, no network)."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.teams import cards
from bot.chat.teams.adapter import message_activity
from bot.messages.model import (
    Action,
    Cause,
    Chart,
    EvidenceItem,
    Facts,
    IncidentCard,
    Message,
    ProposalBlock,
    Step,
    Text,
)
from tests.teams_fixtures import shown

AAD = "11111111-2222-3333-4444-555555555555"
ELEMENTS = {"TextBlock", "FactSet", "Container", "ColumnSet", "Column", "Image", "ActionSet"}
ACTIONS = {"Action.Execute", "Action.Submit", "Action.ShowCard", "Action.OpenUrl"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def walk(node: Any) -> list[dict[str, Any]]:
    """Every dict with a ``type`` anywhere in a card."""
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "type" in node:
            out.append(node)
        for v in node.values():
            out += walk(v)
    elif isinstance(node, list):
        for v in node:
            out += walk(v)
    return out


def assert_valid(card: dict[str, Any]) -> None:
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert card["$schema"] == cards.SCHEMA
    json.dumps(card)  # serialisable as-is
    for el in walk(card["body"]):
        assert el["type"] in ELEMENTS | ACTIONS | {"AdaptiveCard"}, el["type"]
        if el["type"] == "TextBlock":
            assert isinstance(el["text"], str) and el["wrap"] is True


def proposal(pid: str = "tok_abc", *, confirm: str = "", decided: str = "",
             approvers: tuple[str, ...] = (f"teams:{AAD}", "slack:U1")) -> ProposalBlock:
    actions = () if decided else (
        Action("onwatch_approve", "Approve", pid, "primary", confirm),
        Action("onwatch_reject", "Reject", pid, "danger"),
    )
    return ProposalBlock(proposal_id=pid, title="Restart checkout", description="Runbook `restart` for checkout",
                         risk="low", preview=(("target", "shop/checkout"),), actions=actions,
                         approvers=approvers, decided=decided)


def test_incident_card_shows_title_severity_status_services_owner() -> None:
    card = cards.incident_card(IncidentCard("INC-1A2B3C", "checkout 5xx", "critical", "open", "investigating",
                                            ("checkout", "payments"), owner="team-shop", opened_at=1_700_000_000))
    assert_valid(card)
    facts = {f["title"]: f["value"] for el in walk(card) if el["type"] == "FactSet" for f in el["facts"]}
    assert facts["Severity"] == "critical" and facts["Status"] == "open" and facts["Phase"] == "Investigating"
    assert facts["Services"] == "checkout, payments" and facts["Owner"] == "team-shop"
    assert "2023-11-14" in facts["Opened"]
    assert "INC-1A2B3C · checkout 5xx" in json.dumps(card, ensure_ascii=False)
    assert card["body"][0]["style"] == "attention"


def test_proposal_buttons_are_action_execute_with_submit_fallback_and_opaque_data() -> None:
    card = cards.render_message(Message(blocks=(proposal(),), fallback="Proposed", key="proposal:tok_abc"))
    assert_valid(card)
    executes = [el for el in walk(card["body"]) if el["type"] == "Action.Execute"]
    assert {e["verb"] for e in executes} == {"onwatch_approve", "onwatch_reject"}
    for e in executes:
        assert e["data"] == {"proposal_id": "tok_abc"}  # nothing but the opaque id
        assert e["fallback"]["type"] == "Action.Submit"
        assert e["fallback"]["data"] == {"verb": e["verb"], "proposal_id": "tok_abc"}
    assert {e["style"] for e in executes} == {"positive", "destructive"}


def test_refresh_lists_only_teams_approvers_as_user_mris() -> None:
    card = cards.render_message(Message(blocks=(proposal(),), fallback="Proposed"))
    assert card["refresh"]["action"] == {"type": "Action.Execute", "verb": "onwatch_refresh",
                                         "data": {"proposal_id": "tok_abc"}}
    assert card["refresh"]["userIds"] == [f"8:orgid:{AAD}"]


def test_refresh_is_capped_at_sixty_users() -> None:
    many = tuple(f"teams:{i:08d}-0000-0000-0000-000000000000" for i in range(80))
    card = cards.render_message(Message(blocks=(proposal(approvers=many),), fallback="x"))
    assert len(card["refresh"]["userIds"]) == cards.MAX_REFRESH_USERS


def test_viewer_who_is_not_an_approver_sees_no_buttons() -> None:
    msg = Message(blocks=(proposal(),), fallback="Proposed")
    approver = cards.render_message(msg, viewer=f"teams:{AAD}")
    stranger = cards.render_message(msg, viewer="teams:someone-else")
    assert any(el["type"] == "Action.Execute" and el.get("verb") == "onwatch_approve" for el in walk(approver["body"]))
    assert not any(el["type"] == "Action.Execute" for el in walk(stranger["body"]))
    assert "Waiting for a decision" in json.dumps(stranger)


def test_risky_approve_asks_first_through_a_show_card() -> None:
    card = cards.render_message(Message(blocks=(proposal(confirm="Run it on checkout? Risk: high."),), fallback="x"))
    show = [el for el in walk(card) if el["type"] == "Action.ShowCard"]
    assert len(show) == 1 and show[0]["title"] == "Approve…"
    inner = show[0]["card"]
    assert inner["body"][0]["text"] == "Run it on checkout? Risk: high."
    assert inner["actions"][0]["type"] == "Action.Execute" and inner["actions"][0]["verb"] == "onwatch_approve"
    assert inner["actions"][0]["fallback"]["type"] == "Action.Submit"


def test_decided_proposal_has_no_buttons_and_no_refresh() -> None:
    card = cards.render_message(Message(blocks=(proposal(decided="Approved by Alice at 2024-05-01 10:03 UTC"),),
                                        fallback="x"))
    assert_valid(card)
    assert "refresh" not in card
    assert not any(el["type"].startswith("Action.") for el in walk(card["body"]))
    assert "Approved by Alice at 2024-05-01 10:03 UTC" in json.dumps(card)


def test_reasoning_evidence_causes_and_chart() -> None:
    msg = Message(blocks=(
        Text("How I investigated", "heading"),
        Step(1, "looked", "error rate of checkout"),
        Cause(1, "checkout", "deploy regression", 0.82, ("e1", "e3"), "errors after v2.3.1"),
        EvidenceItem("e1", "prometheus", "5xx up 40x", query="sum(rate(x[5m]))", link="http://prom/graph",
                     before=0.01, after=0.4, excerpt="ERROR NullPointerException", service="checkout"),
        Facts((("Window", "10:00–10:30"),)),
        Chart("checkout errors", PNG),
    ), fallback="likely cause checkout", attachments=())
    card = cards.render_message(msg)
    assert_valid(card)
    text = shown(json.dumps(card, ensure_ascii=False).replace("\\\\", "\\"))
    assert "#1 checkout — deploy regression" in text and "confidence 82%" in text
    assert "evidence: e1, e3" in text and "before 0.01 → after 0.4" in text
    assert "ERROR NullPointerException" in text and "sum(rate(x[5m]))" in text
    images = [el for el in walk(card) if el["type"] == "Image"]
    assert len(images) == 1 and images[0]["altText"] == "checkout errors"
    assert base64.b64decode(images[0]["url"].split(",", 1)[1]) == PNG
    assert [el["url"] for el in walk(card) if el["type"] == "Action.OpenUrl"] == ["http://prom/graph"]


def test_chart_given_as_block_and_attachment_is_shown_once() -> None:
    chart = Chart("c", PNG)
    card = cards.render_message(Message(blocks=(chart,), fallback="c", attachments=(chart,)))
    assert len([el for el in walk(card) if el["type"] == "Image"]) == 1


def test_non_http_links_are_not_buttons() -> None:
    card = cards.render_message(Message(blocks=(EvidenceItem("e1", "x", "s", link="javascript:alert(1)"),),
                                        fallback="x"))
    assert not any(el["type"] == "Action.OpenUrl" for el in walk(card))


def test_plain_text_goes_as_markdown_text_and_rich_as_card() -> None:
    plain = message_activity(Message(blocks=(Text("Execution state unknown"),), fallback="x"))
    assert plain.text == "Execution state unknown" and not plain.attachments
    rich = message_activity(Message(blocks=(Text("Bad", "warning"),), fallback="warn"))
    assert rich.attachments[0].content_type == cards.CARD_CONTENT_TYPE and rich.summary == "warn"


def test_error_card_and_invoke_response_shape() -> None:
    card = cards.error_card("You cannot decide this action", "not an approver")
    assert_valid(card)
    body = cards.invoke_card_response(card)
    assert body == {"statusCode": 200, "type": "application/vnd.microsoft.card.adaptive", "value": card}


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=5000), st.sampled_from(["plain", "heading", "muted", "warning", "code"]),
       st.floats(min_value=0, max_value=1))
def test_any_text_renders_a_valid_bounded_card(text: str, style: str, conf: float) -> None:
    msg = Message(blocks=(Text(text, style), Cause(1, text[:50], "k", conf, ()), proposal()),  # type: ignore[arg-type]
                  fallback=text)
    card = cards.render_message(msg)
    assert_valid(card)
    for el in walk(card):
        if el["type"] == "TextBlock":
            assert len(el["text"]) <= cards.MAX_TEXT
    assert len(card.get("fallbackText", "")) <= 1000
