"""A chat adapter that renders the incident thread in a terminal, for ``onwatch demo``.

It implements ``bot.chat.hub.ChatAdapter`` like the Slack and Teams adapters, so the demo shows exactly
the neutral messages a channel would receive: the root card, then threaded replies (reasoning steps,
evidence with before → after numbers, ranked causes with confidence bars, proposals with their
[Approve] [Reject] buttons). Card edits print as ``↻ status: …`` lines, message edits as ``↻ …``
lines. Charts are written as PNG files into ``chart_dir`` and their path printed. Colour is used only
when the output is a terminal (and ``NO_COLOR`` is unset). ``TerminalWatchPoster`` shows the watch's
early warnings the same way, as posts in the incident channel.
"""

from __future__ import annotations

import asyncio
import os
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from bot.messages.format import change_ratio, confidence_bar, fmt_num, utc_clock
from bot.messages.model import (
    PHASE_LABELS,
    Block,
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
from bot.ports import ThreadOrigin
from bot.watch.model import PostRef

WIDTH = 100
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class Palette:
    """ANSI styles; all empty when colour is off."""

    on: bool

    def _w(self, code: str, s: str) -> str:
        return f"\x1b[{code}m{s}\x1b[0m" if self.on and s else s

    def bold(self, s: str) -> str:
        return self._w("1", s)

    def dim(self, s: str) -> str:
        return self._w("2", s)

    def red(self, s: str) -> str:
        return self._w("31", s)

    def green(self, s: str) -> str:
        return self._w("32", s)

    def yellow(self, s: str) -> str:
        return self._w("33", s)

    def cyan(self, s: str) -> str:
        return self._w("36", s)

    def magenta(self, s: str) -> str:
        return self._w("35", s)


def use_colour(out: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


SEVERITY_STYLE = {"critical": "red", "high": "red", "warning": "yellow", "info": "cyan"}


@dataclass
class TerminalAdapter:
    """Renders neutral chat messages as an incident thread on ``out``."""

    out: TextIO
    chart_dir: Path
    colour: bool | None = None
    width: int = WIDTH
    platform: str = "terminal"
    cards: dict[str, IncidentCard] = field(default_factory=dict)
    posted: list[tuple[str, Message]] = field(default_factory=list)
    charts: list[Path] = field(default_factory=list)
    _shown: dict[str, list[Block]] = field(default_factory=dict)  # what each keyed message last showed

    def __post_init__(self) -> None:
        self.p = Palette(use_colour(self.out) if self.colour is None else self.colour)

    # ------------------------------------------------------------------ ChatAdapter

    async def announce(self, card: IncidentCard, origin: ThreadOrigin | None) -> None:
        self.cards[card.incident_id] = card
        p = self.p
        sev = getattr(p, SEVERITY_STYLE.get(card.severity, "cyan"))(card.severity.upper())
        self._line("")
        self._line(p.bold("━" * 3 + f" {card.incident_id} ") + "· " + sev + " · " + p.bold(card.title))
        facts = [f"services: {', '.join(card.services) or '–'}"]
        if card.owner:
            facts.append(f"owner: {card.owner}")
        if card.opened_at:
            facts.append(f"opened {utc_clock(card.opened_at)}")
        self._line("    " + p.dim(" · ".join(facts)))
        self._line("    " + f"status: {card.status} · phase: {p.bold(card.phase_label)}")
        if card.summary:
            for ln in textwrap.wrap(card.summary, self.width - 4):
                self._line("    " + ln)
        self.out.flush()

    async def update_card(self, card: IncidentCard) -> None:
        old = self.cards.get(card.incident_id)
        self.cards[card.incident_id] = card
        if old is not None and (old.status, old.phase, old.severity, old.title, old.services) == (
                card.status, card.phase, card.severity, card.title, card.services):
            return
        parts = [f"status: {self.p.bold(card.phase_label)}"]
        if old is None or old.status != card.status:
            parts.append(f"incident {card.status}")
        if old is not None and old.severity != card.severity:
            parts.append(f"severity {old.severity} → {card.severity}")
        if old is not None and old.services != card.services:
            parts.append(f"services: {', '.join(card.services)}")
        self._line(self.p.cyan("↻ ") + " · ".join(parts) + self.p.dim(f"   ({card.incident_id})"))
        self.out.flush()

    async def post(self, incident_id: str, message: Message) -> None:
        self.posted.append((incident_id, message))
        if message.key and message.key in self._shown:
            await self.replace(incident_id, message.key, message)
            return
        self._line(self.p.dim("  │"))
        await self._render(incident_id, message, prefix="  │ ")
        if message.key:
            self._shown[message.key] = list(message.blocks)
        self.out.flush()

    async def replace(self, incident_id: str, key: str, message: Message) -> None:
        self.posted.append((incident_id, message))
        p = self.p
        proposals = [b for b in message.blocks if isinstance(b, ProposalBlock)]
        if proposals and all(b.decided for b in proposals):
            for b in proposals:
                self._line(p.cyan("↻ ") + p.bold(b.title) + ": " + _decided_style(p, b.decided))
        elif key in self._shown:
            # A terminal cannot edit what it printed: show only what the edit adds (a live reasoning
            # message grows by one step at a time; its final summary adds a heading).
            old = self._shown[key]
            added = [b for b in message.blocks if b not in old]
            if added and not all(isinstance(b, Step) for b in added):
                self._line(p.cyan("↻ ") + p.dim(f"updated {key}:"))
            await self._render(incident_id, replace(message, blocks=tuple(added), attachments=()), prefix="  │ ")
            self._shown[key] = list(message.blocks)
        else:
            self._line(p.cyan("↻ ") + p.dim(f"updated {key}:"))
            await self._render(incident_id, message, prefix="  │ ")
            self._shown[key] = list(message.blocks)
        self.out.flush()

    # ------------------------------------------------------------------ rendering

    def _line(self, s: str) -> None:
        self.out.write(s + "\n")

    def _wrap(self, text: str, prefix: str, indent: str = "", style: Callable[[str], str] | None = None) -> None:
        """Wrap plain ``text`` to the width, then style each line (styling first would split escape codes)."""
        avail = max(30, self.width - len(prefix) - len(indent))
        for para in text.splitlines() or [""]:
            lines = textwrap.wrap(para, avail, subsequent_indent="  ") or [""]
            for ln in lines:
                self._line(prefix + indent + (style(ln) if style else ln))

    async def _render(self, incident_id: str, message: Message, prefix: str) -> None:
        # a chart may come both as a block and as an attachment: show (and save) it once
        shown: set[tuple[str, bytes]] = set()
        for block in (*message.blocks, *message.attachments):
            if isinstance(block, Chart):
                if (block.title, block.png) in shown:
                    continue
                shown.add((block.title, block.png))
            await self._block(incident_id, block, prefix)

    async def _block(self, incident_id: str, b: Block, prefix: str) -> None:
        p = self.p
        if isinstance(b, Text):
            if b.style == "heading":
                self._line(prefix + p.bold(b.text))
            elif b.style == "muted":
                self._wrap(b.text, prefix, style=p.dim)
            elif b.style == "warning":
                self._wrap("⚠ " + b.text, prefix, style=p.yellow)
            elif b.style == "code":
                for ln in b.text.splitlines():
                    self._line(prefix + "    " + p.dim(ln))
            else:
                self._wrap(b.text, prefix)
        elif isinstance(b, Facts):
            for k, v in b.items:
                self._line(prefix + p.dim(f"{k}: ") + v)
        elif isinstance(b, Step):
            kind = {"concluded": p.green, "missing": p.yellow, "hypothesised": p.magenta}.get(b.kind, p.cyan)
            head = f"{b.index:>2}. "
            avail = max(30, self.width - len(prefix) - len(head))
            lines = textwrap.wrap(b.text, avail) or [""]
            self._line(prefix + kind(head) + lines[0])
            for ln in lines[1:]:
                self._line(prefix + " " * len(head) + ln)
        elif isinstance(b, EvidenceItem):
            self._evidence(b, prefix)
        elif isinstance(b, Cause):
            colour = p.green if b.confidence >= 0.6 else p.yellow if b.confidence >= 0.3 else p.dim
            self._line(prefix + p.bold(f"#{b.rank} {b.service}") + f" — {b.kind}   "
                       + colour(confidence_bar(b.confidence)) + f" {b.confidence:.0%}")
            if b.summary:
                self._wrap(b.summary, prefix, "    ")
            if b.evidence_keys:
                self._line(prefix + "    " + p.dim("evidence: " + ", ".join(b.evidence_keys)))
        elif isinstance(b, Chart):
            path = await self._save_chart(incident_id, b)
            self._line(prefix + p.magenta("▦ chart: ") + b.title)
            self._line(prefix + "    " + p.dim("saved to ") + str(path))
        elif isinstance(b, ProposalBlock):
            self._proposal(b, prefix)

    def _evidence(self, b: EvidenceItem, prefix: str) -> None:
        p = self.p
        head = f"    [{b.key}] " if b.key else "    • "
        src = f"{b.source}" + (f" · {b.service}" if b.service else "")
        lines = textwrap.wrap(f"{b.summary}  ({src})", max(30, self.width - len(prefix) - len(head))) or [""]
        for i, ln in enumerate(lines):
            self._line(prefix + (p.dim(head) if i == 0 else " " * len(head)) + ln)
        if b.before is not None or b.after is not None:
            ratio = change_ratio(b.before, b.after)
            self._line(prefix + " " * len(head) + p.dim("before ") + fmt_num(b.before) + " → "
                       + p.bold(fmt_num(b.after)) + (p.yellow(f"  {ratio}") if ratio else ""))
        if b.excerpt:
            for ln in b.excerpt.splitlines()[:3]:
                ln = ln if len(ln) <= self.width - len(prefix) - 10 else ln[: self.width - len(prefix) - 11] + "…"
                self._line(prefix + " " * len(head) + p.dim("│ " + ln))
        if b.query:
            q = b.query if len(b.query) <= 90 else b.query[:89] + "…"
            self._line(prefix + " " * len(head) + p.dim("query: " + q))

    def _proposal(self, b: ProposalBlock, prefix: str) -> None:
        p = self.p
        risk = {"high": p.red, "medium": p.yellow}.get(b.risk, p.green)(f"risk {b.risk}")
        self._line(prefix + p.bold("▶ Proposed: " + b.title) + "  " + risk)
        if b.description:
            self._wrap(b.description, prefix, "    ", style=p.dim)
        for k, v in b.preview:
            self._wrap(f"{k}: {v}", prefix, "    ")
        if b.approvers:
            self._line(prefix + "    " + p.dim("can approve: " + ", ".join(b.approvers)))
        if b.actions:
            buttons = []
            for a in b.actions:
                style = {"primary": p.green, "danger": p.red}.get(a.style, lambda s: s)
                buttons.append(style(f"[{a.label}]"))
            self._line(prefix + "    " + " ".join(buttons))
            confirms = [a.confirm for a in b.actions if a.confirm]
            if confirms:
                self._line(prefix + "    " + p.dim("asks first: " + confirms[0]))
        if b.decided:
            self._line(prefix + "    " + _decided_style(p, b.decided))

    async def _save_chart(self, incident_id: str, chart: Chart) -> Path:
        self.chart_dir.mkdir(parents=True, exist_ok=True)
        stem = _SAFE_NAME.sub("-", Path(chart.filename or "chart.png").stem).strip("-") or "chart"
        path = self.chart_dir / f"{_SAFE_NAME.sub('-', incident_id)}-{stem}-{len(self.charts) + 1}.png"
        await asyncio.to_thread(path.write_bytes, chart.png)
        self.charts.append(path)
        return path


@dataclass
class TerminalWatchPoster:
    """The watch's poster for the terminal (``bot.watch.posting.WatchPoster``): an early warning is a new post in
    the incident channel, outside any incident's thread, and its replies (escalated, recovered) go under it."""

    adapter: TerminalAdapter
    channel: str = "#incidents"
    platform: str = "terminal"
    started: list[Message] = field(default_factory=list)
    replies: list[tuple[PostRef, Message]] = field(default_factory=list)

    async def start(self, message: Message) -> PostRef | None:
        self.started.append(message)
        ref = PostRef(self.platform, self.channel, f"watch-post-{len(self.started)}")
        p = self.adapter.p
        self.adapter._line("")
        self.adapter._line(p.bold("━" * 3 + f" {self.channel} ") + "· " + p.yellow("EARLY WARNING") + " · "
                           + p.dim("not a page"))
        await self.adapter._render(ref.thread, message, prefix="  ┊ ")
        self.adapter.out.flush()
        return ref

    async def reply(self, ref: PostRef, message: Message) -> bool:
        self.replies.append((ref, message))
        self.adapter._line(self.adapter.p.dim(f"  ┊ ↳ in {ref.channel}, under the early warning:"))
        await self.adapter._render(ref.thread, message, prefix="  ┊   ")
        self.adapter.out.flush()
        return True


def _decided_style(p: Palette, decided: str) -> str:
    low = decided.lower()
    if "reject" in low or "failed" in low or "not recover" in low or "unknown" in low or "expired" in low:
        return p.red("✘ " + decided)
    if "executing" in low or "verifying" in low:
        return p.yellow("… " + decided)
    return p.green("✔ " + decided)


__all__ = ["PHASE_LABELS", "Palette", "TerminalAdapter", "TerminalWatchPoster", "change_ratio", "confidence_bar"]
