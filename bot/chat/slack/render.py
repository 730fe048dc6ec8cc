"""Neutral messages → Block Kit, within Slack's limits.

Limits kept: 50 blocks per message, 3000 characters per section text, 150 per header, 10 fields of
2000 characters, 75 per button label, confirm dialogs of 100/300/30, 10 context elements, and a
fallback ``text`` of at most 3000 characters. What does not fit (a long log excerpt, a long list of
evidence) is cut with a note and attached in full as a text file in the thread.

Every string of the neutral model may hold outside text (alert names, labels, log lines, diffs), so ``esc``
is applied to every one of them that Slack parses: each mrkdwn text and the ``text`` fallback of
``chat.postMessage`` / ``chat.update`` / ``chat.postEphemeral``. A log line cannot ping ``<!channel>``,
mention ``<@U…>`` or ``<#C…>``, or forge ``<http://x|y>``. ``plain_text`` objects (headers, buttons) are not
parsed for mentions or links, so they carry the text as it is. Links onwatch itself makes (``link``) are the
only ``<…>`` in a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bot.messages.format import clip as cut
from bot.messages.format import confidence_bar, fmt_num
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

MAX_BLOCKS = 50
SECTION_TEXT = 3000
HEADER_TEXT = 150
FIELD_TEXT = 2000
MAX_FIELDS = 10
BUTTON_TEXT = 75
CONFIRM_TITLE, CONFIRM_TEXT, CONFIRM_BUTTON = 100, 300, 30
FALLBACK_TEXT = 3000
EXCERPT_INLINE = 1200  # longer excerpts go to a file

SEVERITY_ICON = {"critical": ":red_circle:", "high": ":large_orange_circle:", "warning": ":large_yellow_circle:",
                 "info": ":large_blue_circle:"}
STEP_ICON = {"looked": ":mag:", "hypothesised": ":thought_balloon:", "tested": ":test_tube:",
             "concluded": ":white_check_mark:", "missing": ":grey_question:"}


@dataclass(frozen=True, slots=True)
class FileOut:
    filename: str
    content: bytes
    title: str


@dataclass(slots=True)
class Rendered:
    blocks: list[dict[str, Any]]
    text: str
    files: list[FileOut] = field(default_factory=list)


def esc(text: str) -> str:
    """Escape for mrkdwn: ``&``, ``<``, ``>`` (so nothing quoted can mention, link or format as markup)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": cut(text, SECTION_TEXT)}


def plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": cut(text, limit) or " ", "emoji": True}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(text)}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [mrkdwn(text)]}


def link(url: str, label: str) -> str:
    """A mrkdwn link, only for http(s) URLs; anything else is shown as text."""
    if url.startswith(("http://", "https://")) and urlsplit(url).netloc and not any(c in url for c in "<>| \n"):
        return f"<{url}|{esc(label)}>"
    return esc(url)


def conf_bar(c: float) -> str:
    return confidence_bar(c, 10, "▰", "▱")


# ----------------------------------------------------------------- the incident card


def render_card(card: IncidentCard) -> Rendered:
    icon = SEVERITY_ICON.get(card.severity, ":white_circle:")
    title = f"{card.incident_id} · {card.title}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(title, HEADER_TEXT)},
        {"type": "section", "fields": [
            mrkdwn(f"*Severity*\n{icon} {esc(card.severity)}"),
            mrkdwn(f"*Status*\n{esc(card.phase_label)}" + ("" if card.status == "open" else f" ({esc(card.status)})")),
            mrkdwn("*Services*\n" + cut(esc(", ".join(card.services) or "–"), FIELD_TEXT - 20)),
            mrkdwn(f"*Owner*\n{esc(card.owner or '–')}"),
        ]},
    ]
    if card.summary:
        blocks.append(section(cut(esc(card.summary), SECTION_TEXT)))
    if card.acknowledged_by:
        blocks.append(context(cut(":eyes: Acknowledged by " + esc(", ".join(card.acknowledged_by)), SECTION_TEXT)))
    if card.acknowledgeable:
        blocks.append({"type": "actions", "block_id": cut(f"incident:{card.incident_id}", 255, ""),
                       "elements": [_button(ack_action(card.incident_id))]})
    page = f" · {link(card.url, 'incident page')}" if card.url else ""
    blocks.append(context(f"onwatch · incident {esc(card.incident_id)}{page} · follow the thread for the investigation"))
    text = fallback_text(f"{card.incident_id} [{card.severity}] {card.title} — {card.phase_label}")
    return Rendered(blocks=blocks, text=text)


def fallback_text(text: str) -> str:
    """The ``text`` argument of a post or update (shown in notifications, parsed as mrkdwn): escaped, cut."""
    return cut(esc(text), FALLBACK_TEXT)


def render_text(text: str) -> Rendered:
    """A one-line reply (a command's answer, a refusal): one escaped section and the same fallback."""
    return Rendered(blocks=[section(cut(esc(text), SECTION_TEXT))], text=fallback_text(text))


# ----------------------------------------------------------------- message blocks


def _text_block(b: Text) -> dict[str, Any]:
    if b.style == "heading":
        return {"type": "header", "text": plain(b.text, HEADER_TEXT)}
    if b.style == "muted":
        return context(cut(esc(b.text), SECTION_TEXT))
    if b.style == "warning":
        return section(":warning: " + cut(esc(b.text), SECTION_TEXT - 12))
    if b.style == "code":
        return section("```" + cut(esc(b.text), SECTION_TEXT - 8) + "```")
    return section(cut(esc(b.text), SECTION_TEXT))


def _facts(b: Facts) -> dict[str, Any]:
    fields = [mrkdwn(f"*{cut(esc(k), 100)}*\n{cut(esc(v), FIELD_TEXT - 120)}") for k, v in b.items[:MAX_FIELDS]]
    return {"type": "section", "fields": fields or [mrkdwn(" ")]}


def _steps(steps: list[Step]) -> list[dict[str, Any]]:
    """Consecutive steps share a section (one per step would spend the 50-block budget)."""
    out: list[dict[str, Any]] = []
    chunk = ""
    for s in steps:
        line = f"{STEP_ICON.get(s.kind, ':small_blue_diamond:')} *{s.index}.* {cut(esc(s.text), 600)}"
        if chunk and len(chunk) + len(line) + 1 > SECTION_TEXT:
            out.append(section(chunk))
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line
    if chunk:
        out.append(section(chunk))
    return out


def _evidence(b: EvidenceItem, files: list[FileOut]) -> list[dict[str, Any]]:
    head = f"*[{esc(b.key)}]* {esc(b.source)}" + (f" · {esc(b.service)}" if b.service else "")
    lines = [f"{head} — {cut(esc(b.summary), 800)}"]
    if b.before is not None or b.after is not None:
        lines.append(f"before *{fmt_num(b.before)}* → after *{fmt_num(b.after)}*")
    if b.query:
        q = cut(b.query, 500)
        lines.append("`" + esc(q.replace("`", "'")) + "`" + (f"  {link(b.link, 'open')}" if b.link else ""))
    elif b.link:
        lines.append(link(b.link, "open"))
    if b.excerpt:
        excerpt = b.excerpt.replace("```", "'''")
        if len(excerpt) > EXCERPT_INLINE or len("\n".join(lines)) + len(excerpt) > SECTION_TEXT - 100:
            name = f"evidence-{b.key or 'excerpt'}.txt"
            files.append(FileOut(name, b.excerpt.encode(), f"Evidence {b.key}: full excerpt"))
            excerpt = cut(excerpt, min(EXCERPT_INLINE, SECTION_TEXT - len("\n".join(lines)) - 150),
                          f"… (cut; full text in {name} below)")
        lines.append("```" + esc(excerpt) + "```")
    return [section(cut("\n".join(lines), SECTION_TEXT))]


def _cause(b: Cause) -> dict[str, Any]:
    text = (f"*{b.rank}. {esc(b.service)} — {esc(b.kind)}*  {conf_bar(b.confidence)} {b.confidence:.0%}"
            + (f"\n{cut(esc(b.summary), 1500)}" if b.summary else "")
            + (f"\nevidence: {esc(', '.join(b.evidence_keys))}" if b.evidence_keys else "\nno evidence listed"))
    return section(text)


def _button(a: Action) -> dict[str, Any]:
    btn: dict[str, Any] = {"type": "button", "action_id": a.action_id, "text": plain(a.label, BUTTON_TEXT),
                           "value": cut(a.value, 2000, "")}
    if a.style in ("primary", "danger"):
        btn["style"] = a.style
    if a.confirm:
        btn["confirm"] = {
            "title": plain(f"{a.label}?", CONFIRM_TITLE),
            "text": plain(a.confirm, CONFIRM_TEXT),
            "confirm": plain(a.label, CONFIRM_BUTTON),
            "deny": plain("Cancel", CONFIRM_BUTTON),
        }
        if a.style == "danger" or a.action_id == "onwatch_approve":
            btn["confirm"]["style"] = "danger" if a.style == "danger" else "primary"
    return btn


def _proposal(b: ProposalBlock) -> list[dict[str, Any]]:
    out = [section(f"*:hammer_and_wrench: {cut(esc(b.title), 300)}*\n{cut(esc(b.description), 2000)}")]
    if b.preview:
        fields = [mrkdwn(f"*{cut(esc(k), 100)}*\n{cut(esc(v), 500)}") for k, v in b.preview[:MAX_FIELDS]]
        out.append({"type": "section", "fields": fields})
    if b.actions:
        out.append({"type": "actions", "block_id": cut(f"proposal:{b.proposal_id}", 255, ""),
                    "elements": [_button(a) for a in b.actions[:5]]})
    elif b.decided:
        out.append(context(cut(esc(b.decided), SECTION_TEXT)))
    return out


def _feedback(b: FeedbackBlock) -> list[dict[str, Any]]:
    out = [section(cut("\n".join(esc(line) for line in b.lines), SECTION_TEXT))]
    if b.actions:  # action ids must differ within a block: onwatch_feedback_0, _1, ...
        out.append({"type": "actions", "block_id": cut(f"feedback:{b.incident_id}", 255, ""),
                    "elements": [{**_button(a), "action_id": f"{a.action_id}_{i}"} for i, a in enumerate(b.actions[:5])]})
    if b.hint:
        out.append(context(cut(esc(b.hint), SECTION_TEXT)))
    return out


def render_message(message: Message) -> Rendered:
    """Block Kit for ``message``; charts and overflow become files to upload in the same thread."""
    blocks: list[dict[str, Any]] = []
    files: list[FileOut] = []
    steps: list[Step] = []

    def flush_steps() -> None:
        if steps:
            blocks.extend(_steps(steps))
            steps.clear()

    for b in message.blocks:
        if isinstance(b, Step):
            steps.append(b)
            continue
        flush_steps()
        blocks.extend(_block(b, files))
    flush_steps()
    for a in message.attachments:
        if not any(f.filename == a.filename and f.content == a.png for f in files):
            files.append(FileOut(a.filename, a.png, a.title))
    if message.page_url:
        blocks.append(context(link(message.page_url, f"Open the {message.page_title}")))
    if len(blocks) > MAX_BLOCKS:
        overflow = blocks[MAX_BLOCKS - 1:]
        full = "\n\n".join(_block_text(b) for b in overflow)
        files.append(FileOut("onwatch-more.txt", full.encode(), "The rest of this message"))
        blocks = blocks[: MAX_BLOCKS - 1] + [context(f"…{len(overflow)} more blocks in onwatch-more.txt below")]
    return Rendered(blocks=blocks, text=fallback_text(message.fallback), files=files)


def _block(b: Block, files: list[FileOut]) -> list[dict[str, Any]]:
    if isinstance(b, Text):
        return [_text_block(b)]
    if isinstance(b, Facts):
        return [_facts(b)]
    if isinstance(b, EvidenceItem):
        return _evidence(b, files)
    if isinstance(b, Cause):
        return [_cause(b)]
    if isinstance(b, ProposalBlock):
        return _proposal(b)
    if isinstance(b, FeedbackBlock):
        return _feedback(b)
    if isinstance(b, Chart):
        files.append(FileOut(b.filename, b.png, b.title))
        return []
    if isinstance(b, Step):
        return _steps([b])
    return []


def _block_text(block: dict[str, Any]) -> str:
    t = block.get("text")
    if isinstance(t, dict):
        return str(t.get("text", ""))
    parts = [str(e.get("text", "")) for e in block.get("elements", []) + block.get("fields", []) if isinstance(e, dict)]
    return "\n".join(parts)
