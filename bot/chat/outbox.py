"""The chat hub's subscription to the lifecycle outbox: each event becomes the hub call that renders it.

The domain writes events (``bot.incidents.outbox``); this edge turns them into messages. Every rendering is
idempotent, so an event delivered twice (a crash between rendering and marking) changes nothing more: the
card is edited in place, proposal messages are replaced under their key, an announcement of an incident that
already has a thread only refreshes its card, and a note is posted under the event's key (adapters edit a
message they already posted under a key instead of posting it again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bot.incidents.outbox import EventKind, OutboxEvent, origin_of
from bot.investigate.llm.thread import outcome_message, steps_message
from bot.messages.model import Message, Step, Text, steps_key
from bot.ports import ChatPort


async def _show(hub: ChatPort, incident_id: str, msg: Message, *, edit: bool) -> None:
    """Post ``msg``, or edit the one posted earlier under its key (a message that grows as events arrive)."""
    await (hub.replace(incident_id, msg.key, msg) if edit else hub.post(incident_id, msg))


async def _steps(hub: ChatPort, incident_id: str, params: Mapping[str, Any]) -> None:
    """The investigation's reasoning so far as one message: posted with the first step, then edited."""
    steps = [Step(int(n), str(kind), str(text)) for n, kind, text in params.get("steps", [])]
    if not steps:
        return
    msg = Message(blocks=(Text(f"Investigating {incident_id}…", "heading"), *steps),
                  fallback=f"{steps[-1].index}. {steps[-1].text}"[:3000], key=steps_key(str(params["investigation_id"])))
    await _show(hub, incident_id, msg, edit=len(steps) > 1)


class HubRenderer:
    """An outbox subscriber rendering through the hub ``hub()`` returns when the event arrives."""

    def __init__(self, hub: Callable[[], ChatPort]):
        self.hub = hub

    async def __call__(self, event: OutboxEvent) -> None:
        hub, inc, p = self.hub(), event.incident_id, event.params
        if event.kind == EventKind.INCIDENT_OPENED:
            await hub.incident_opened(inc, origin_of(p))
        elif event.kind in (EventKind.INCIDENT_CHANGED, EventKind.INCIDENT_UPDATED):
            await hub.incident_updated(inc)
        elif event.kind == EventKind.INVESTIGATION_STEPS:
            await _steps(hub, inc, p)
        elif event.kind == EventKind.LLM_STEPS:
            texts = [str(t) for t in p.get("steps", [])]
            msg = steps_message(str(p["investigation_id"]), texts)
            await _show(hub, inc, msg, edit=len(texts) != 1)
        elif event.kind == EventKind.LLM_FINISHED:
            msg = outcome_message(p.get("outcome") or {}, str(p["investigation_id"]))
            await _show(hub, inc, msg, edit=bool(p.get("steps_shown")))
        elif event.kind == EventKind.INVESTIGATION_FINISHED:
            await hub.investigation_finished(inc, str(p["investigation_id"]))
        elif event.kind == EventKind.PROPOSALS_OFFERED:
            await hub.proposals_offered(inc, [str(i) for i in p.get("proposal_ids", [])],
                                        [str(r) for r in p.get("refused", [])])
        elif event.kind == EventKind.PROPOSAL_CHANGED:
            await hub.proposal_changed(str(p["proposal_id"]))
        elif event.kind == EventKind.NOTE:
            await hub.notify(inc, str(p.get("text", "")), key=event.key)
