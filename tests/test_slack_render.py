"""Block Kit rendering stays within Slack's limits, escapes what it quotes, and moves overflow to files."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.slack.render import render_card, render_message
from bot.messages.model import (
    Action,
    Cause,
    Chart,
    EvidenceItem,
    IncidentCard,
    Message,
    ProposalBlock,
    Step,
    Text,
)


def _limits_ok(blocks: list[dict]) -> None:
    assert len(blocks) <= 50
    for b in blocks:
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= 150
        if b["type"] == "section":
            if "text" in b:
                assert len(b["text"]["text"]) <= 3000
            for f in b.get("fields", []):
                assert len(f["text"]) <= 2000
            assert len(b.get("fields", [])) <= 10
        if b["type"] == "actions":
            for el in b["elements"]:
                assert len(el["text"]["text"]) <= 75
                if "confirm" in el:
                    c = el["confirm"]
                    assert len(c["title"]["text"]) <= 100 and len(c["text"]["text"]) <= 300
                    assert len(c["confirm"]["text"]) <= 30 and len(c["deny"]["text"]) <= 30


def test_card_has_title_severity_status_services_owner():
    card = IncidentCard("INC-1A2B3C", "x" * 400, "critical", "open", "awaiting_approval", ("checkout", "payments"),
                        owner="team-shop")
    r = render_card(card)
    _limits_ok(r.blocks)
    flat = str(r.blocks)
    assert "Awaiting approval" in flat and "checkout, payments" in flat and "team-shop" in flat
    assert ":red_circle:" in flat and r.text.startswith("INC-1A2B3C [critical]")


def test_quoted_text_cannot_ping_or_link():
    ev = EvidenceItem("e2", "loki", "boom <!channel>", excerpt="ERROR <!here> <http://evil|click> & more")
    r = render_message(Message(blocks=(ev,), fallback="x"))
    text = r.blocks[0]["text"]["text"]
    assert "<!channel>" not in text and "<!here>" not in text and "<http://evil" not in text
    assert "&lt;!here&gt;" in text and "&amp; more" in text


def test_evidence_link_only_for_http_urls():
    ev = EvidenceItem("e1", "prometheus", "up", query="rate(x[5m])", link="javascript:alert(1)", before=1, after=2)
    text = render_message(Message(blocks=(ev,), fallback="x")).blocks[0]["text"]["text"]
    assert "<javascript" not in text and "before *1* → after *2*" in text
    ok = EvidenceItem("e1", "prometheus", "up", query="rate(x[5m])", link="http://prom/graph?g0=1")
    assert "<http://prom/graph?g0=1|open>" in render_message(Message(blocks=(ok,), fallback="x")).blocks[0]["text"]["text"]


def test_long_excerpt_is_cut_and_attached_in_full():
    long = "\n".join(f"line {i} ERROR something failed" for i in range(400))
    r = render_message(Message(blocks=(EvidenceItem("e9", "loki", "errors", excerpt=long),), fallback="x"))
    _limits_ok(r.blocks)
    assert "full text in evidence-e9.txt" in r.blocks[0]["text"]["text"]
    assert r.files[0].filename == "evidence-e9.txt" and r.files[0].content == long.encode()


def test_too_many_blocks_overflow_into_a_file():
    blocks = tuple(Cause(i, f"svc{i}", "cpu", 0.5, ("e1",)) for i in range(120))
    r = render_message(Message(blocks=blocks, fallback="many"))
    _limits_ok(r.blocks)
    assert len(r.blocks) == 50 and "more blocks" in r.blocks[-1]["elements"][0]["text"]
    assert "svc119" in r.files[-1].content.decode()


def test_steps_share_sections():
    steps = tuple(Step(i, "looked", f"looked at signal {i} " + "x" * 200) for i in range(1, 200))
    r = render_message(Message(blocks=(Text("How", "heading"), *steps), fallback="x"))
    _limits_ok(r.blocks)
    assert len(r.blocks) < 30 and not r.files


def test_proposal_buttons_and_decided_state():
    actions = (Action("onwatch_approve", "Approve" * 20, "pid-123456", "primary", "Run it? " + "y" * 500),
               Action("onwatch_reject", "Reject", "pid-123456", "danger"))
    pending = ProposalBlock("pid-123456", "Restart checkout", "desc", "high", (("command", "kubectl ..."),), actions)
    r = render_message(Message(blocks=(pending,), fallback="x"))
    _limits_ok(r.blocks)
    buttons = r.blocks[-1]["elements"]
    assert [b["action_id"] for b in buttons] == ["onwatch_approve", "onwatch_reject"]
    assert [b["value"] for b in buttons] == ["pid-123456", "pid-123456"]
    assert "confirm" in buttons[0] and "confirm" not in buttons[1]
    decided = ProposalBlock("pid-123456", "Restart checkout", "desc", "high", (), (), decided="Approved by alice at 12:03 UTC")
    r2 = render_message(Message(blocks=(decided,), fallback="x"))
    assert all(b["type"] != "actions" for b in r2.blocks)
    assert "Approved by alice" in r2.blocks[-1]["elements"][0]["text"]


def test_chart_becomes_a_file():
    chart = Chart("key signal", b"\x89PNG...", "c.png")
    r = render_message(Message(blocks=(chart,), fallback="chart", attachments=(chart,)))
    assert r.blocks == [] and len(r.files) == 1 and r.files[0].filename == "c.png"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(
    st.builds(Text, st.text(max_size=5000), st.sampled_from(["plain", "heading", "muted", "warning", "code"])),
    st.builds(Step, st.integers(0, 999), st.sampled_from(["looked", "tested"]), st.text(max_size=4000)),
    st.builds(EvidenceItem, st.text(max_size=80), st.text(max_size=80), st.text(max_size=4000),
              query=st.text(max_size=3000), excerpt=st.text(max_size=6000)),
    st.builds(Cause, st.integers(1, 9), st.text(max_size=300), st.text(max_size=300), st.floats(0, 1),
              st.lists(st.text(max_size=20), max_size=30).map(tuple), st.text(max_size=4000)),
), max_size=80))
def test_any_message_renders_within_limits(blocks):
    r = render_message(Message(blocks=tuple(blocks), fallback="f" * 5000))
    _limits_ok(r.blocks)
    assert len(r.text) <= 3000
