"""The typed seams between the domain and the rest: what the domain may tell chat, and the two domain services
the edges call. ``bot.context.AppContext`` holds these protocols; ``bot.app`` plugs in the implementations
(``ChatHub``, ``TriageService``, ``RemediationService``), so neither side imports the other.

Types the services own (``AlertIn``, ``IngestOutcome``, ``DecisionOutcome``) are named for the type checker
only: at run time this module imports nothing above the store, so the domain can import it freely.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from bot.audit import Actor
from bot.messages.model import IncidentCard, Message
from bot.store.models import Job, Proposal

if TYPE_CHECKING:
    from bot.remediate.service import DecisionOutcome
    from bot.triage.alert import AlertIn
    from bot.triage.txn import IngestOutcome
    from bot.watch.model import WatchFinding, WatchOutcome


DecisionVerb = Literal["approve", "reject"]  # what an approver's button asks for


@dataclass(frozen=True, slots=True)
class ThreadOrigin:
    """Where an incident was born in chat (an alert post): onwatch answers in that message's thread."""

    platform: str
    channel: str
    thread_id: str
    reference: dict[str, Any] = field(default_factory=dict)


class ChatAdapter(Protocol):
    """One chat platform (Slack, Teams, the demo's terminal) as the hub drives it."""

    platform: str

    async def announce(self, card: IncidentCard, origin: ThreadOrigin | None) -> None:
        """Post the incident's root message (or adopt ``origin`` as its thread) and remember where."""
        ...

    async def update_card(self, card: IncidentCard) -> None: ...

    async def post(self, incident_id: str, message: Message) -> None: ...

    async def replace(self, incident_id: str, key: str, message: Message) -> None:
        """Edit a message posted earlier with ``message.key == key``."""
        ...


class ChatPort(Protocol):
    """What happened, by id, for every configured platform (``bot.chat.hub.ChatHub``); the domain never
    names a platform."""

    adapters: list[ChatAdapter]

    def add(self, adapter: ChatAdapter) -> None: ...

    async def incident_opened(self, incident_id: str, origin: ThreadOrigin | None = None) -> None: ...

    async def incident_updated(self, incident_id: str) -> None: ...

    async def post(self, incident_id: str, message: Message) -> None: ...

    async def replace(self, incident_id: str, key: str, message: Message) -> None: ...

    async def investigation_finished(self, incident_id: str, investigation_id: str) -> None: ...

    async def feedback_changed(self, incident_id: str, edit_window_s: float = ...) -> None: ...

    async def proposals_offered(self, incident_id: str, proposal_ids: list[str], refused: list[str]) -> None: ...

    async def proposal_changed(self, proposal_id: str) -> None: ...

    async def notify(self, incident_id: str, text: str, key: str = "") -> None: ...


class TriagePort(Protocol):
    """Alerts in, incidents out (``bot.triage.service.TriageService``)."""

    async def drained(self) -> None: ...

    async def aclose(self) -> None: ...

    async def ingest(self, alerts: Sequence[AlertIn], *, origin: ThreadOrigin | None = None,
                     actor: Actor | None = None) -> IngestOutcome: ...

    async def open_adhoc(self, text_: str, actor: Actor, origin: ThreadOrigin | None) -> str | None: ...


class RemediationPort(Protocol):
    """Proposals, decisions, executions and their jobs (``bot.remediate.service.RemediationService``)."""

    async def aclose(self) -> None: ...

    async def propose(self, incident_id: str, investigation_id: str) -> list[Proposal]: ...

    def approvers_for(self, proposal: Proposal) -> tuple[str, ...]: ...

    async def decide(self, proposal_id: str, actor: Actor, decision: DecisionVerb,
                     principals: frozenset[str]) -> DecisionOutcome: ...

    async def expire_due(self) -> int: ...

    async def run_execution(self, job: Job) -> None: ...

    async def on_execution_lost(self, job: Job) -> None: ...

    async def run_verification(self, job: Job) -> None: ...


class WatchPort(Protocol):
    """Early warnings (``bot.watch.service.WatchService``): what the proactive checks and investigations call."""

    async def observe(self, finding: WatchFinding) -> WatchOutcome: ...

    async def recover(self, keys_still_holding: Iterable[str], kind: str,
                      judged: Iterable[str] | None = None) -> list[str]: ...

    async def close(self, key: str, reason: str = "recovered", actor: Actor = ...) -> bool: ...

    async def escalate(self, incident_id: str, services: Sequence[str]) -> list[dict[str, Any]]: ...
