"""Issue 17 item 5: outside text can neither mention, link nor format in any field of any message.

Every string of the neutral model is filled with hostile text (Slack mentions and links, Markdown links,
HTML, list markers) and every message kind is rendered for Slack and Teams; then every field each platform
parses is checked: Slack mrkdwn texts and the ``text`` fallback hold no ``<`` but onwatch's own links, and
Teams TextBlocks, facts, ``fallbackText``, message text and the activity summary hold no unescaped markup.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.slack import render as slack
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

HOSTILE = [
    "<!channel> Deploy <@U024BE7LH>",
    "<!here|here> <!everyone> <#C0123|general> <@W1> <!subteam^S1|@sre>",
    "<http://evil.example|Reset your password>",
    "[Reset your password](https://evil.example/a)",
    "![x](https://evil.example/p.png) <a href='https://evil.example'>x</a> <at>Ann</at>",
    "**bold** _it_ ~~s~~ `code` # head\n1. one\n- two\n+ three",
    "&lt;!channel&gt; &amp; \\[x\\](y)",
    "```\n<!channel>\n```",
]
hostile = st.one_of(st.sampled_from(HOSTILE), st.text(alphabet="<>!@#[]()*_`&|\\-+.1 \nxhttps:/", max_size=60))
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16

OWN_LINK = re.compile(r"<https?://[^<>|\s]+\|open>")


def message_kinds(s: list[str]) -> list[Message]:
    """One message of each kind the chat adapters send, every string taken from ``s``."""
    a, b, c, d, e, f, g, h = s
    action = Action("onwatch_approve", a, "p-0123456789", "primary", confirm=b)
    return [
        Message(blocks=(Text(a),), fallback=b),
        *[Message(blocks=(Text(a, style),), fallback=c) for style in ("heading", "muted", "warning", "code")],
        Message(blocks=(Facts(((a, b), (c, d))),), fallback=e),
        Message(blocks=(Step(1, "looked", a), Step(2, "concluded", b)), fallback=f"Reasoning for {c}"),
        Message(blocks=(EvidenceItem(a, b, c, query=d, link=f"https://prom.example/{e}", before=1.0, after=2.0,
                                     excerpt=f, service=g),), fallback=h),
        Message(blocks=(EvidenceItem(a, b, c, link=d, excerpt=e * 200),), fallback=f),
        Message(blocks=(Cause(1, a, b, 0.8, (c, d), e),), fallback=f),
        Message(blocks=(ProposalBlock("p-0123456789", a, b, c, ((d, e),), (action,), ("teams:x",)),), fallback=f),
        Message(blocks=(ProposalBlock("p-0123456789", a, b, c, ((d, e),), (), (), decided=g),), fallback=h),
        Message(blocks=(Chart(a, PNG), Text(b, "muted")), fallback=c, attachments=(Chart(d, PNG),)),
        Message(blocks=(Text(f"Alert {a} is flapping; onwatch suppresses it until it settles."),),
                fallback=f"Alert {a} is flapping"),
    ]


def card_of(s: list[str]) -> IncidentCard:
    a, b, c, d, e, f, g, h = s
    return IncidentCard("INC-1A2B3C", a, b, c, d, (e, f), owner=g, opened_at=1.7e9, summary=h)


# ------------------------------------------------------------------ Slack


def slack_parsed(rendered: slack.Rendered) -> list[str]:
    """Every string Slack parses as mrkdwn: the fallback and each mrkdwn text object."""
    out = [rendered.text]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                out.append(str(node["text"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(rendered.blocks)
    return out


def assert_slack_inert(rendered: slack.Rendered) -> None:
    for text in slack_parsed(rendered):
        bare = OWN_LINK.sub("", text)
        assert "<" not in bare and ">" not in bare, text


@settings(max_examples=150, deadline=None)
@given(st.lists(hostile, min_size=8, max_size=8))
def test_slack_every_field_is_inert(s: list[str]) -> None:
    for msg in message_kinds(s):
        assert_slack_inert(slack.render_message(msg))
    assert_slack_inert(slack.render_card(card_of(s)))
    assert_slack_inert(slack.render_text(s[0]))


def test_slack_fallback_of_a_hostile_alert_name_is_escaped() -> None:
    """The probe's finding: the ``text`` fallback of chat.postMessage / chat.update carried the name raw."""
    card = IncidentCard("INC-1", "<!channel> Deploy <@U024BE7LH>", "critical", "open", "new", ("checkout",))
    assert slack.render_card(card).text == "INC-1 [critical] &lt;!channel&gt; Deploy &lt;@U024BE7LH&gt; — New"
    step = Message(blocks=(Step(1, "looked", "x"),), fallback="Reasoning for <!channel>")
    assert slack.render_message(step).text == "Reasoning for &lt;!channel&gt;"


def test_slack_own_links_survive() -> None:
    r = slack.render_message(Message(blocks=(EvidenceItem("e1", "prometheus", "up", link="https://prom/g"),),
                                     fallback="x"))
    assert any("<https://prom/g|open>" in t for t in slack_parsed(r))


# ------------------------------------------------------------------ Teams

TEAMS_MARKUP = set("[]()<>*_`&#!|~\\{}")


def unescaped_markup(text: str) -> list[str]:
    """Markup characters not preceded by a backslash escape, and unescaped leading list markers."""
    bad: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            i += 2
            continue
        if ch in TEAMS_MARKUP:
            bad.append(ch)
        i += 1
    for line in text.split("\n"):
        stripped = line.lstrip()
        if re.match(r"^([-+=]|\d+[.)])", stripped):
            bad.append(stripped[:3])
    return bad


def teams_parsed(card: dict[str, Any]) -> list[str]:
    out: list[str] = [str(card.get("fallbackText", ""))]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "TextBlock":
                out.append(str(node["text"]))
            if node.get("type") == "FactSet":
                for fact in node["facts"]:
                    out.extend([str(fact["title"]), str(fact["value"])])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(card)
    return out


def assert_teams_inert(texts: list[str]) -> None:
    for t in texts:
        assert not unescaped_markup(t), (t, unescaped_markup(t))


@settings(max_examples=150, deadline=None)
@given(st.lists(hostile, min_size=8, max_size=8))
def test_teams_every_field_is_inert(s: list[str]) -> None:
    for msg in message_kinds(s):
        assert_teams_inert(teams_parsed(cards.render_message(msg)))
        assert_teams_inert(teams_parsed(cards.render_message(msg, viewer="teams:other", notice=s[1])))
        activity = message_activity(msg)
        assert_teams_inert([activity.text or "", activity.summary or ""])
    assert_teams_inert(teams_parsed(cards.incident_card(card_of(s))))
    assert_teams_inert(teams_parsed(cards.error_card(s[0], s[1])))


def test_teams_markdown_link_does_not_render() -> None:
    """The probe's finding: ``[Reset your password](https://evil.example/a)`` rendered as a link."""
    msg = Message(blocks=(Text("[Reset your password](https://evil.example/a)", "warning"),),
                  fallback="[Reset your password](https://evil.example/a)")
    card = cards.render_message(msg)
    assert card["body"][0]["text"] == r"\[Reset your password\]\(https://evil.example/a\)"
    assert card["fallbackText"] == r"\[Reset your password\]\(https://evil.example/a\)"


def test_escape_keeps_what_people_read() -> None:
    for text in HOSTILE:
        assert re.sub(r"\\(.)", r"\1", cards.escape(text), flags=re.S) == text
