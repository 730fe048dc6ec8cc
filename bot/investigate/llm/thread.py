"""What the incident thread shows of the LLM investigator: its steps live, then its checked reading.

Everything is under one message key per investigation and headed as the model's, so nobody mistakes it
for the engine's ranking; a refused or failed run says so and leaves the engine's report as the answer.
Text from the model and the tools is plain ``Text``: adapters escape it like any other text.
"""

from __future__ import annotations

from typing import Any

from bot.chat.model import EvidenceItem, Message, Step, Text
from bot.investigate.llm.loop import LlmOutcome, LlmStatus

HEADING = "The model's reading (LLM investigator, checked against the evidence; the engine's ranking is unchanged)"


def llm_key(investigation_id: str) -> str:
    return f"llm:{investigation_id}"


class LlmThread:
    """The model's message in one incident thread: posted with its first step, then edited in place."""

    def __init__(self, chat: Any, incident_id: str, investigation_id: str):
        self.chat = chat
        self.incident_id = incident_id
        self.key = llm_key(investigation_id)
        self.investigation_id = investigation_id
        self.shown: list[Step] = []

    async def _send(self, msg: Message) -> None:
        if not self.shown:
            await self.chat.post(self.incident_id, msg)
        else:
            await self.chat.replace(self.incident_id, self.key, msg)

    async def step(self, text: str) -> None:
        """One of the model's steps (a tool call and what it returned), marked as the model's."""
        msg = Message(blocks=(Text(HEADING, "heading"), *self.shown,
                              Step(len(self.shown) + 1, "looked", f"model: {text}"[:1500])),
                      fallback=f"model: {text}"[:3000], key=self.key)
        await self._send(msg)
        self.shown.append(Step(len(self.shown) + 1, "looked", f"model: {text}"[:1500]))

    async def finish(self, outcome: LlmOutcome) -> None:
        await self._send(outcome_message(outcome, self.investigation_id))


def outcome_message(outcome: LlmOutcome, investigation_id: str) -> Message:
    """The model's final word: its accepted reading with the evidence it cited, or why there is none."""
    blocks: list[Any] = [Text(HEADING, "heading")]
    a = outcome.answer
    if outcome.status == LlmStatus.ACCEPTED and a is not None:
        blocks.append(Text(f"{a.service} ({a.kind}): {a.mechanism} [{', '.join(a.evidence)}]"))
        blocks += [Text(f"- {c.text} [{', '.join(c.evidence)}]") for c in a.claims]
        by_id = {e.id: e for e in outcome.evidence}
        for eid in dict.fromkeys([*a.evidence, *(i for c in a.claims for i in c.evidence)]):
            e = by_id.get(eid)
            if e is not None:
                blocks.append(EvidenceItem(e.id, e.source, e.summary, e.query, e.link, service=e.service))
        if a.next:
            blocks.append(Text("Check next: " + "; ".join(a.next), "muted"))
        fallback = f"Model's reading: {a.service} ({a.kind}): {a.mechanism}"
    elif outcome.status == LlmStatus.REFUSED:
        blocks.append(Text(f"The model's answer was refused: {outcome.reason}. The engine's report stands.", "warning"))
        fallback = f"Model's answer refused: {outcome.reason}"
    else:
        blocks.append(Text(f"The LLM investigator stopped: {outcome.reason}. The engine's report stands.", "warning"))
        fallback = f"LLM investigator stopped: {outcome.reason}"
    blocks.append(Text(f"{len(outcome.tool_calls)} tool calls, {outcome.prompt_tokens + outcome.completion_tokens} "
                       f"tokens, {outcome.seconds:.1f} s ({outcome.model})", "muted"))
    return Message(blocks=tuple(blocks), fallback=fallback[:3000], key=llm_key(investigation_id))
