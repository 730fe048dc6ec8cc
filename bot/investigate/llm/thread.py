"""What the incident thread shows of the LLM investigator: its steps live, then its checked reading.

The investigation writes them as outbox events (``llm.steps``: the model's steps so far; ``llm.finished``: its
outcome as stored in the report) and the chat hub renders them with the functions here. Everything is under one
message key per investigation and headed as the model's, so nobody mistakes it for the engine's ranking; a
refused or failed run says so and leaves the engine's report as the answer. Text from the model and the tools
is plain ``Text``: adapters escape it like any other text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.incidents.outbox import EventKind, Outbox, emit
from bot.investigate.llm.loop import LlmOutcome, LlmStatus
from bot.messages.model import EvidenceItem, Message, Step, Text
from bot.store.db import Database

HEADING = "The model's reading (LLM investigator, checked against the evidence; the engine's ranking is unchanged)"


def llm_key(investigation_id: str) -> str:
    return f"llm:{investigation_id}"


class LlmThread:
    """The model's message in one incident thread, told through the outbox: posted with its first step, then
    edited in place with each next one and finally with its reading."""

    def __init__(self, db: Database, outbox: Outbox, incident_id: str, investigation_id: str):
        self.db, self.outbox = db, outbox
        self.incident_id = incident_id
        self.investigation_id = investigation_id
        self.texts: list[str] = []

    async def _emit(self, kind: EventKind, params: dict[str, Any]) -> None:
        async with self.db.begin() as s:
            await emit(s, self.incident_id, kind, {"investigation_id": self.investigation_id, **params})
        await self.outbox.flush()

    async def step(self, text: str) -> None:
        """One of the model's steps (a tool call and what it returned), marked as the model's."""
        self.texts.append(text)
        await self._emit(EventKind.LLM_STEPS, {"steps": list(self.texts)})

    async def finish(self, outcome: LlmOutcome) -> None:
        await self._emit(EventKind.LLM_FINISHED, {"steps_shown": len(self.texts), "outcome": outcome.to_dict()})


def steps_message(investigation_id: str, texts: Sequence[str]) -> Message:
    """The model's steps so far, each marked as the model's."""
    steps = [Step(i + 1, "looked", f"model: {t}"[:1500]) for i, t in enumerate(texts)]
    return Message(blocks=(Text(HEADING, "heading"), *steps), fallback=f"model: {texts[-1] if texts else ''}"[:3000],
                   key=llm_key(investigation_id))


def outcome_message(outcome: LlmOutcome | Mapping[str, Any], investigation_id: str) -> Message:
    """The model's final word: its accepted reading with the evidence it cited, or why there is none. Takes the
    outcome or its ``to_dict()`` (what the report and the ``llm.finished`` event hold)."""
    d: Mapping[str, Any] = outcome.to_dict() if isinstance(outcome, LlmOutcome) else outcome
    blocks: list[Any] = [Text(HEADING, "heading")]
    a = d.get("answer")
    reason = str(d.get("reason", ""))
    if d.get("status") == LlmStatus.ACCEPTED and isinstance(a, Mapping):
        claims = [c for c in a.get("claims") or [] if isinstance(c, Mapping)]
        cited = [str(e) for e in a.get("evidence") or []]
        blocks.append(Text(f"{a.get('service')} ({a.get('kind')}): {a.get('mechanism')} [{', '.join(cited)}]"))
        blocks += [Text(f"- {c.get('text')} [{', '.join(str(e) for e in c.get('evidence') or [])}]") for c in claims]
        by_id = {str(e.get("id")): e for e in d.get("evidence") or [] if isinstance(e, Mapping)}
        for eid in dict.fromkeys([*cited, *(str(i) for c in claims for i in c.get("evidence") or [])]):
            e = by_id.get(eid)
            if e is not None:
                blocks.append(EvidenceItem(eid, str(e.get("source", "")), str(e.get("summary", "")),
                                           str(e.get("query", "")), str(e.get("link", "")),
                                           service=str(e.get("service", ""))))
        if a.get("next"):
            blocks.append(Text("Check next: " + "; ".join(str(n) for n in a["next"]), "muted"))
        fallback = f"Model's reading: {a.get('service')} ({a.get('kind')}): {a.get('mechanism')}"
    elif d.get("status") == LlmStatus.REFUSED:
        blocks.append(Text(f"The model's answer was refused: {reason}. The engine's report stands.", "warning"))
        fallback = f"Model's answer refused: {reason}"
    else:
        blocks.append(Text(f"The LLM investigator stopped: {reason}. The engine's report stands.", "warning"))
        fallback = f"LLM investigator stopped: {reason}"
    tokens = d.get("tokens")
    total = int(tokens.get("total", 0)) if isinstance(tokens, Mapping) else 0
    blocks.append(Text(f"{len(d.get('tool_calls') or [])} tool calls, {total} "
                       f"tokens, {float(d.get('seconds') or 0.0):.1f} s ({d.get('model', '')})", "muted"))
    return Message(blocks=tuple(blocks), fallback=fallback[:3000], key=llm_key(investigation_id))
