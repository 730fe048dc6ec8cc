"""Neutral chat messages → Adaptive Cards 1.5 (plain dicts; no SDK types, so they are easy to test).

Decisions worth knowing:
- Approve/Reject are ``Action.Execute`` (verbs ``onwatch_approve``/``onwatch_reject``, ``data`` holding only
  ``proposal_id``) each with an ``Action.Submit`` ``fallback`` carrying the verb, for clients without
  Universal Actions. A risky approval becomes an ``Action.ShowCard`` asking the confirmation question first.
- A card holding a pending proposal carries ``refresh`` (verb ``onwatch_refresh``) with the approvers'
  Teams user MRIs (``8:orgid:<aad-object-id>``) in ``userIds``: their clients fetch a live, per-user view.
  The refresh answer (``render_message(..., viewer=...)``) keeps the buttons for approvers and shows
  everyone else a read-only view naming who may decide. The server checks every decision anyway.
- Charts are ``Image`` elements with a ``data:image/png;base64`` URL (Teams renders them inline).
- Every string of the neutral model may hold outside text (alert names, labels, log lines), and Teams reads
  ``TextBlock.text``, ``Fact.title``/``value``, ``fallbackText`` and message text as Markdown (and message
  text as some HTML). ``escape`` is applied to all of them: ``[x](y)`` cannot render as a link, ``<at>`` or
  ``<a>`` as markup, ``**``/``_`` as emphasis, a leading ``1.`` or ``-`` as a list. The only links in a card
  are ``Action.OpenUrl`` buttons onwatch makes for http(s) evidence links.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import urlsplit

from bot.messages.format import clip, fmt_num, utc_time
from bot.messages.model import (
    Action,
    Block,
    Cause,
    Chart,
    EvidenceItem,
    Facts,
    FeedbackBlock,
    IncidentCard,
    Message,
    ProposalBlock,
    Step,
    Text,
    ack_action,
)
from bot.ports import DecisionVerb

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
VERB_APPROVE = "onwatch_approve"
VERB_REJECT = "onwatch_reject"
VERB_REFRESH = "onwatch_refresh"
VERB_ACK = "onwatch_ack"  # data: {"incident_id": "INC-…"}; the same domain path as the `ack` command
VERB_FEEDBACK = "onwatch_feedback"  # data: {"feedback": "<incident>|<choice>"}, checked on the server
DECISION_VERBS: dict[str, DecisionVerb] = {VERB_APPROVE: "approve", VERB_REJECT: "reject"}
MAX_REFRESH_USERS = 60  # Teams refreshes automatically for at most 60 listed users
MAX_TEXT = 4000

Card = dict[str, Any]

_SEVERITY_STYLE = {"critical": "attention", "high": "attention", "warning": "warning", "info": "accent"}
_SEVERITY_COLOR = {"critical": "Attention", "high": "Attention", "warning": "Warning", "info": "Accent"}
_STEP_ICON = {"looked": "🔎", "hypothesised": "💡", "tested": "🧪", "concluded": "✅", "missing": "⚠️"}
_ACTION_STYLE = {"primary": "positive", "danger": "destructive", "default": "default"}


# CommonMark's backslash-escapable punctuation that means something to Teams' Markdown or HTML.
_MARKUP = re.compile(r"([\\`*_{}\[\]()<>#!|~&])")
_LINE_START = re.compile(r"(?m)^(\s*)([-+=]|\d+(?=[.)]))")


def escape(text: str) -> str:
    """Outside text made inert for Teams Markdown: markup characters backslash-escaped (they still show)."""
    text = _MARKUP.sub(r"\\\1", text)
    return _LINE_START.sub(lambda m: m.group(1) + ("\\" + m.group(2) if not m.group(2).isdigit()
                                                   else m.group(2) + "\\"), text)


def text_block(text: str, **props: Any) -> Card:
    """A TextBlock whose text is shown literally (escaped), whatever it holds."""
    return {"type": "TextBlock", "text": escape(clip(text, MAX_TEXT)), "wrap": True, **props}


def fact_set(items: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> Card:
    return {"type": "FactSet", "facts": [{"title": escape(str(k)), "value": escape(clip(str(v) or "–", 1000))}
                                         for k, v in items]}


def envelope(body: list[Card], *, fallback_text: str = "", refresh: Card | None = None) -> Card:
    """A complete card: schema, version 1.5, full width in Teams."""
    card: Card = {
        "$schema": SCHEMA,
        "type": "AdaptiveCard",
        "version": VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if fallback_text:
        card["fallbackText"] = escape(clip(fallback_text, 1000))
    if refresh is not None:
        card["refresh"] = refresh
    return card


def attachment(card: Card) -> dict[str, Any]:
    return {"contentType": CARD_CONTENT_TYPE, "content": card}


def teams_mri(principal: str) -> str | None:
    """``teams:<aad-object-id>`` → the Teams user MRI used by ``refresh.userIds``; None for other platforms."""
    platform, _, ident = principal.partition(":")
    if platform != "teams" or not ident:
        return None
    return ident if ident.startswith(("8:", "29:")) else f"8:orgid:{ident}"


# ----------------------------------------------------------------- the incident card


def incident_card(card: IncidentCard) -> Card:
    """The root message of an incident: title, severity, status, phase, services, owner."""
    header: Card = {
        "type": "Container",
        "style": _SEVERITY_STYLE.get(card.severity, "emphasis"),
        "bleed": True,
        "items": [
            text_block(f"{card.incident_id} · {card.title}", size="Large", weight="Bolder", style="heading"),
            text_block(f"{card.severity.upper()} · {card.phase_label}", weight="Bolder",
                       color=_SEVERITY_COLOR.get(card.severity, "Default"), spacing="None"),
        ],
    }
    facts = [
        ("Severity", card.severity),
        ("Status", card.status),
        ("Phase", card.phase_label),
        ("Services", ", ".join(card.services) or "–"),
        ("Owner", card.owner or "–"),
    ]
    if card.opened_at:
        facts.append(("Opened", utc_time(card.opened_at)))
    if card.acknowledged_by:
        facts.append(("Acknowledged by", ", ".join(card.acknowledged_by)))
    body: list[Card] = [header, fact_set(facts)]
    if card.summary:
        body.append(text_block(card.summary, spacing="Medium"))
    fallback = f"{card.incident_id} [{card.severity}] {card.title} — {card.phase_label}"
    out = envelope(body, fallback_text=fallback)
    actions: list[Card] = []
    if card.acknowledgeable:
        ack = ack_action(card.incident_id)
        actions.append({"type": "Action.Execute", "title": ack.label, "verb": VERB_ACK,
                        "data": {"incident_id": card.incident_id}, "style": _ACTION_STYLE[ack.style],
                        "fallback": {"type": "Action.Submit", "title": ack.label,
                                     "data": {"verb": VERB_ACK, "incident_id": card.incident_id}}})
    page = open_url("Open the incident page", card.url)
    if page is not None:
        actions.append(page)
    if actions:
        out["actions"] = actions
    return out


def open_url(title: str, url: str) -> Card | None:
    """An ``Action.OpenUrl`` for an http(s) URL onwatch made; None for anything else (never a link from outside)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c in url for c in " \n\r\t<>\"'"):
        return None
    return {"type": "Action.OpenUrl", "title": title, "url": url}


# ----------------------------------------------------------------- blocks


def _text(b: Text) -> Card:
    if b.style == "heading":
        return text_block(b.text, size="Medium", weight="Bolder", style="heading")
    if b.style == "muted":
        return text_block(b.text, isSubtle=True, size="Small")
    if b.style == "warning":
        return text_block(b.text, color="Attention", weight="Bolder")
    if b.style == "code":
        return text_block(b.text, fontType="Monospace")
    return text_block(b.text)


def _step(b: Step) -> Card:
    icon = _STEP_ICON.get(b.kind, "•")
    return {
        "type": "ColumnSet",
        "spacing": "Small",
        "columns": [
            {"type": "Column", "width": "auto", "items": [text_block(f"{b.index}. {icon}", isSubtle=True)]},
            {"type": "Column", "width": "stretch", "items": [text_block(b.text)]},
        ],
    }


def _evidence(b: EvidenceItem) -> Card:
    head = f"[{b.key}] {b.source}" + (f" · {b.service}" if b.service else "")
    items: list[Card] = [text_block(head, weight="Bolder", size="Small"), text_block(b.summary, spacing="None")]
    if b.before is not None or b.after is not None:
        items.append(text_block(f"before {fmt_num(b.before)} → after {fmt_num(b.after)}", isSubtle=True, spacing="None"))
    if b.query:
        items.append(text_block(b.query, fontType="Monospace", size="Small", isSubtle=True, spacing="Small"))
    if b.excerpt:
        items.append(text_block(b.excerpt, fontType="Monospace", size="Small", spacing="Small"))
    container: Card = {"type": "Container", "style": "emphasis", "spacing": "Small", "items": items}
    if b.link.startswith(("https://", "http://")):
        items.append({"type": "ActionSet", "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": b.link}]})
    return container


def _cause(b: Cause) -> Card:
    pct = f"{b.confidence:.0%}"
    color = "Good" if b.confidence >= 0.7 else "Warning" if b.confidence >= 0.4 else "Default"
    items: list[Card] = [
        {
            "type": "ColumnSet",
            "columns": [
                {"type": "Column", "width": "stretch",
                 "items": [text_block(f"#{b.rank} {b.service} — {b.kind}", weight="Bolder")]},
                {"type": "Column", "width": "auto",
                 "items": [text_block(f"confidence {pct}", color=color, weight="Bolder")]},
            ],
        }
    ]
    if b.summary:
        items.append(text_block(b.summary, spacing="None"))
    if b.evidence_keys:
        items.append(text_block("evidence: " + ", ".join(b.evidence_keys), isSubtle=True, size="Small", spacing="None"))
    return {"type": "Container", "separator": True, "spacing": "Medium", "items": items}


def chart_image(b: Chart) -> Card:
    url = "data:image/png;base64," + base64.b64encode(b.png).decode("ascii")
    return {"type": "Image", "url": url, "altText": b.title, "size": "Stretch"}


def _execute(a: Action, title: str | None = None) -> Card:
    """Action.Execute carrying only the opaque id, with an Action.Submit fallback for older clients."""
    style = _ACTION_STYLE.get(a.style, "default")
    label = title or a.label
    return {
        "type": "Action.Execute",
        "title": label,
        "verb": a.action_id,
        "data": {"proposal_id": a.value},
        "style": style,
        "fallback": {
            "type": "Action.Submit",
            "title": label,
            "style": style,
            "data": {"verb": a.action_id, "proposal_id": a.value},
        },
    }


def _button(a: Action) -> Card:
    if not a.confirm:
        return _execute(a)
    return {
        "type": "Action.ShowCard",
        "title": f"{a.label}…",
        "style": _ACTION_STYLE.get(a.style, "default"),
        "card": {
            "type": "AdaptiveCard",
            "body": [text_block(a.confirm, color="Attention")],
            "actions": [_execute(a, f"Yes, {a.label.lower()}")],
        },
    }


def _approver_names(approvers: tuple[str, ...]) -> str:
    return ", ".join(approvers) if approvers else "the runbook's approvers"


def _proposal(b: ProposalBlock, viewer: str | None, notice: str) -> Card:
    items: list[Card] = []
    if notice:
        items.append(text_block(notice, color="Attention", weight="Bolder"))
    items += [
        text_block(b.title, size="Medium", weight="Bolder"),
        text_block(b.description, spacing="None"),
    ]
    facts = [("Risk", b.risk), *b.preview]
    items.append(fact_set(facts))
    if b.decided:
        items.append(text_block(b.decided, weight="Bolder", color="Good" if b.decided.startswith("Approved") else "Default"))
    elif b.actions:
        may_decide = viewer is None or not b.approvers or viewer in b.approvers
        if may_decide:
            items.append({"type": "ActionSet", "actions": [_button(a) for a in b.actions]})
        else:
            items.append(text_block(f"Waiting for a decision by {_approver_names(b.approvers)}.", isSubtle=True))
    return {"type": "Container", "separator": True, "spacing": "Medium", "items": items}


def _feedback(b: FeedbackBlock) -> Card:
    items: list[Card] = [text_block(line, spacing="None") for line in b.lines]
    if b.actions:
        items.append({"type": "ActionSet", "actions": [
            {"type": "Action.Execute", "title": a.label, "verb": VERB_FEEDBACK, "data": {"feedback": a.value},
             "style": _ACTION_STYLE.get(a.style, "default"),
             "fallback": {"type": "Action.Submit", "title": a.label, "data": {"verb": VERB_FEEDBACK, "feedback": a.value}}}
            for a in b.actions]})
    if b.hint:
        items.append(text_block(b.hint, isSubtle=True, size="Small"))
    return {"type": "Container", "separator": True, "spacing": "Medium", "items": items}


def render_block(b: Block, viewer: str | None = None, notice: str = "") -> Card:
    if isinstance(b, Text):
        return _text(b)
    if isinstance(b, Facts):
        return fact_set(b.items)
    if isinstance(b, Step):
        return _step(b)
    if isinstance(b, EvidenceItem):
        return _evidence(b)
    if isinstance(b, Cause):
        return _cause(b)
    if isinstance(b, Chart):
        return chart_image(b)
    if isinstance(b, ProposalBlock):
        return _proposal(b, viewer, notice)
    if isinstance(b, FeedbackBlock):
        return _feedback(b)
    raise TypeError(f"no Adaptive Card rendering for {type(b).__name__}")


def refresh_for(message: Message) -> Card | None:
    """``refresh`` for a card with a pending proposal: approvers' clients fetch a live per-user view."""
    for b in message.blocks:
        if isinstance(b, ProposalBlock) and b.actions and not b.decided:
            mris = [m for m in (teams_mri(p) for p in b.approvers) if m]
            return {
                "action": {"type": "Action.Execute", "verb": VERB_REFRESH, "data": {"proposal_id": b.proposal_id}},
                "userIds": mris[:MAX_REFRESH_USERS],
            }
    return None


def render_message(message: Message, viewer: str | None = None, notice: str = "") -> Card:
    """One neutral message → one card. ``viewer`` (``teams:<aad-id>``) gives that user's view of proposals;
    ``notice`` is a line shown above a proposal (e.g. the reason a click was refused)."""
    body = [render_block(b, viewer, notice) for b in message.blocks]
    in_body = {id(b) for b in message.blocks}
    for extra in message.attachments:
        if id(extra) not in in_body and not any(isinstance(b, Chart) and b.png == extra.png for b in message.blocks):
            body.append(chart_image(extra))
    if notice and not any(isinstance(b, ProposalBlock) for b in message.blocks):
        body.insert(0, text_block(notice, color="Attention", weight="Bolder"))
    card = envelope(body, fallback_text=message.fallback, refresh=refresh_for(message))
    page = open_url(f"Open the {message.page_title}", message.page_url)
    if page is not None:
        card["actions"] = [page]
    return card


def is_plain(message: Message) -> bool:
    """A message of plain/muted text only is sent as Teams text (markdown), not as a card."""
    return bool(message.blocks) and not message.attachments and not message.page_url and all(
        isinstance(b, Text) and b.style in ("plain", "muted") for b in message.blocks
    )


def plain_text(message: Message) -> str:
    """The Markdown text of a text-only message, escaped (see ``escape``)."""
    return escape("\n\n".join(b.text for b in message.blocks if isinstance(b, Text)) or message.fallback)


def error_card(title: str, detail: str) -> Card:
    """Shown in place of a card when a click is refused or fails (e.g. an unauthorised approver)."""
    return envelope(
        [
            {"type": "Container", "style": "attention", "bleed": True,
             "items": [text_block(title, weight="Bolder", size="Medium")]},
            text_block(detail),
        ],
        fallback_text=f"{title}: {detail}",
    )


def invoke_card_response(card: Card) -> dict[str, Any]:
    """The body of an ``adaptiveCard/action`` invoke response that replaces the card."""
    return {"statusCode": 200, "type": CARD_CONTENT_TYPE, "value": card}
