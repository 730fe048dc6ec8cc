"""Fans domain chat events out to every configured adapter (Slack, Teams, the demo's terminal).

The domain calls the hub with ids; the hub loads what it needs, composes neutral messages
(``bot.chat.compose``) and hands them to each adapter. With no adapter configured it does nothing,
so triage and investigation work the same with or without chat.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from sqlmodel import col, select

from bot.chat import compose
from bot.chat.feedback import feedback_message
from bot.memory.feedback import DEFAULT_EDIT_WINDOW_S
from bot.memory.feedback import state as feedback_state
from bot.messages.model import IncidentCard, Message, Text, feedback_key, incident_page
from bot.ports import ChatAdapter, ThreadOrigin
from bot.store.db import Database
from bot.store.models import Acknowledgement, Incident

log = logging.getLogger(__name__)


def card_for(incident: Incident, acknowledged_by: tuple[str, ...] = (), public_url: str | None = None) -> IncidentCard:
    return IncidentCard(
        incident_id=incident.id,
        title=incident.title,
        severity=incident.severity,
        status=incident.status,
        phase=incident.phase,
        services=tuple(incident.services),
        owner=incident.owner,
        opened_at=incident.opened_at,
        summary=incident.summary,
        url=incident_page(public_url, incident.id),
        acknowledged_by=acknowledged_by,
    )


async def load_card(db: Database, incident_id: str, public_url: str | None = None) -> IncidentCard | None:
    """The root message of an incident as it stands: its row, who acknowledged it, the link to its page."""
    async with db.session() as s:
        inc = await s.get(Incident, incident_id)
        if inc is None:
            return None
        acks = (await s.exec(select(Acknowledgement).where(Acknowledgement.incident_id == incident_id)
                             .order_by(col(Acknowledgement.at)))).all()
    return card_for(inc, tuple(a.actor_name or a.actor for a in acks), public_url)


class ChatHub:
    def __init__(self, db: Database, adapters: list[ChatAdapter] | None = None, remember_cards: int = 1000,
                 public_url: str | None = None):
        self.db = db
        self.public_url = public_url  # server.public_url: messages link to the incident page under it
        self.adapters: list[ChatAdapter] = list(adapters or [])
        # The last card sent per incident: an update that changes nothing is not sent again (platform rate
        # limits). Bounded, oldest forgotten first; another replica may still send one redundant update.
        self._last_cards: OrderedDict[str, IncidentCard] = OrderedDict()
        self._remember_cards = remember_cards

    def add(self, adapter: ChatAdapter) -> None:
        self.adapters.append(adapter)

    async def _card(self, incident_id: str) -> IncidentCard | None:
        return await load_card(self.db, incident_id, self.public_url)

    async def incident_opened(self, incident_id: str, origin: ThreadOrigin | None = None) -> None:
        card = await self._card(incident_id)
        if card is None:
            return
        self._last_cards[incident_id] = card
        for a in self.adapters:
            await a.announce(card, origin if origin is None or origin.platform == a.platform else None)

    async def incident_updated(self, incident_id: str) -> None:
        card = await self._card(incident_id)
        if card is None or self._last_cards.get(incident_id) == card:
            return
        self._last_cards[incident_id] = card
        self._last_cards.move_to_end(incident_id)
        while len(self._last_cards) > self._remember_cards:
            self._last_cards.popitem(last=False)
        for a in self.adapters:
            await a.update_card(card)

    async def post(self, incident_id: str, message: Message) -> None:
        for a in self.adapters:
            await a.post(incident_id, message)

    async def replace(self, incident_id: str, key: str, message: Message) -> None:
        for a in self.adapters:
            await a.replace(incident_id, key, message)

    # ---- domain events, composed into neutral messages

    async def investigation_finished(self, incident_id: str, investigation_id: str) -> None:
        if not self.adapters:
            return
        await self.incident_updated(incident_id)
        for msg in await compose.investigation_messages(self.db, investigation_id, self.public_url):
            await self.post(incident_id, msg)
        await self.feedback_changed(incident_id)

    async def feedback_changed(self, incident_id: str, edit_window_s: float = DEFAULT_EDIT_WINDOW_S) -> None:
        """Post or edit the incident's feedback message (cause and fix as people gave them, and the buttons)."""
        if not self.adapters:
            return
        st = await feedback_state(self.db, incident_id, edit_window_s)
        await self.replace(incident_id, feedback_key(incident_id), feedback_message(st))

    async def proposals_offered(self, incident_id: str, proposal_ids: list[str], refused: list[str]) -> None:
        """Post each proposal with its buttons; ``refused`` lists out-of-scope matches and why."""
        if not self.adapters:
            return
        await self.incident_updated(incident_id)
        for msg in await compose.proposal_messages(self.db, proposal_ids, refused):
            await self.post(incident_id, msg)

    async def proposal_changed(self, proposal_id: str) -> None:
        """A decision, expiry, execution or verification: replace the proposal message and refresh the card."""
        if not self.adapters:
            return
        incident_id, msg = await compose.proposal_status_message(self.db, proposal_id)
        await self.replace(incident_id, msg.key, msg)
        await self.incident_updated(incident_id)

    async def notify(self, incident_id: str, text: str, key: str = "") -> None:
        """A short line in the incident thread (e.g. 'execution state unknown after a restart'). With ``key``,
        a second notify under the same key edits the first instead of repeating it (outbox re-deliveries)."""
        if not self.adapters:
            return
        await self.post(incident_id, Message(blocks=(Text(text),), fallback=text, key=key))
