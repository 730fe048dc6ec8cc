"""The platform-neutral message model. Domain code speaks this; Slack and Teams adapters render it.

A thread is a root ``IncidentCard`` (edited in place as work moves on) plus ``Message`` replies made of
blocks: text, facts, evidence, a chart, ranked causes and proposals with actions. Nothing here knows
Block Kit or Adaptive Cards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PHASE_LABELS: dict[str, str] = {
    "new": "New",
    "investigating": "Investigating",
    "cause_found": "Cause found",
    "inconclusive": "Not enough evidence",
    "awaiting_approval": "Awaiting approval",
    "executing": "Executing",
    "executed": "Action done",
    "verifying": "Verifying the fix",
    "verified": "Fix verified",
    "rejected": "Proposal rejected",
    "execution_unknown": "Action state unknown",
    "not_recovered": "Fix did not help",
    "failed": "Action failed",
    "resolved": "Resolved",
}


@dataclass(frozen=True, slots=True)
class IncidentCard:
    """The root message of an incident's thread."""

    incident_id: str
    title: str
    severity: str
    status: str
    phase: str
    services: tuple[str, ...]
    owner: str = ""
    opened_at: float = 0.0
    summary: str = ""
    url: str = ""  # the incident's web page ({server.public_url}/ui/incidents/ID); empty when not configured
    acknowledged_by: tuple[str, ...] = ()  # display names, first acknowledgement first

    @property
    def acknowledgeable(self) -> bool:
        """The Acknowledge button is offered until the incident is resolved."""
        return self.status != "resolved"

    @property
    def phase_label(self) -> str:
        return PHASE_LABELS.get(self.phase, self.phase)


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    style: Literal["plain", "heading", "muted", "warning", "code"] = "plain"


@dataclass(frozen=True, slots=True)
class Facts:
    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One reasoning step: what was looked at or concluded."""

    index: int
    kind: str  # looked | hypothesised | tested | concluded | missing
    text: str


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    key: str
    source: str
    summary: str
    query: str = ""
    link: str = ""
    before: float | None = None
    after: float | None = None
    excerpt: str = ""  # a log excerpt, a trace id, a diff summary
    service: str = ""


@dataclass(frozen=True, slots=True)
class Cause:
    rank: int
    service: str
    kind: str
    confidence: float
    evidence_keys: tuple[str, ...]
    summary: str = ""


@dataclass(frozen=True, slots=True)
class Chart:
    """A PNG of the key signal around the onset; ``png`` holds the bytes, ``title`` the alt text."""

    title: str
    png: bytes
    filename: str = "chart.png"


@dataclass(frozen=True, slots=True)
class Action:
    """A button. ``value`` is an opaque id only; the server looks everything else up."""

    action_id: Literal["onwatch_approve", "onwatch_reject", "onwatch_feedback", "onwatch_ack"]
    label: str
    value: str
    style: Literal["primary", "danger", "default"] = "default"
    confirm: str = ""  # a confirmation question for risky actions; empty for none


def ack_action(incident_id: str) -> Action:
    """The Acknowledge button of an incident's root message; its value is the incident id, checked on the server."""
    return Action("onwatch_ack", "Acknowledge", incident_id, "primary")


@dataclass(frozen=True, slots=True)
class ProposalBlock:
    proposal_id: str
    title: str
    description: str
    risk: str
    preview: tuple[tuple[str, str], ...]
    actions: tuple[Action, ...]
    approvers: tuple[str, ...] = ()  # platform-qualified ids allowed to decide (for Teams refresh.userIds)
    decided: str = ""  # "Approved by @x at 12:03 UTC" once decided; actions are then empty


@dataclass(frozen=True, slots=True)
class FeedbackBlock:
    """People's word on an incident's cause and fix (``bot.memory.feedback``): what was said, buttons while it
    may still change (values are ``<incident>|confirm``, ``<incident>|cause|<rank>``, ``<incident>|fix|<proposal>``,
    checked on the server), and how to name another cause or fix in words."""

    incident_id: str
    lines: tuple[str, ...]
    actions: tuple[Action, ...] = ()
    hint: str = ""


Block = Text | Facts | Step | EvidenceItem | Cause | Chart | ProposalBlock | FeedbackBlock


@dataclass(frozen=True, slots=True)
class Message:
    """One reply in an incident thread. ``key`` lets a later update replace it (e.g. a decided proposal)."""

    blocks: tuple[Block, ...]
    fallback: str
    key: str = ""
    ephemeral_to: str = ""  # platform user id for an ephemeral reply
    attachments: tuple[Chart, ...] = field(default_factory=tuple)
    page_url: str = ""  # a web view page (server.public_url) this message is about; renderers add a link to it
    page_title: str = "incident page"  # shown as "Open the <page_title>"


def incident_page(public_url: str | None, incident_id: str) -> str:
    """The incident's web page (docs/web.md) under ``server.public_url``; empty when that is not set."""
    return f"{public_url.rstrip('/')}/ui/incidents/{incident_id}" if public_url else ""


def feedback_key(incident_id: str) -> str:
    """The key of the one thread message holding an incident's cause and fix feedback."""
    return f"feedback:{incident_id}"


def steps_key(investigation_id: str) -> str:
    """The key of the one thread message holding an investigation's reasoning, edited as steps arrive."""
    return f"investigation:{investigation_id}:steps"
