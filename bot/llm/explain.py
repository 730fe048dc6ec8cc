"""An optional narrative of an investigation, written by an LLM and checked against the evidence.

The deterministic engine decides the ranking; the LLM only explains it. Its answer must cite evidence
ids in brackets (``[e3]``) and may name only services the report ranked. An answer that cites an
unknown id or names another service is refused, and the thread keeps the deterministic text. Every
call is an audit row; what is sent is redacted first.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from bot.audit import BOT, audit
from bot.llm.redact import redact
from bot.store.db import Database

SYSTEM_PROMPT = (
    "You are an SRE assistant. Explain, in at most 5 sentences, why the ranked causes below are ranked as they "
    "are. Cite every claim with evidence ids in square brackets, like [e3]. Use only the evidence given. "
    "Do not propose or perform actions. If the report abstained, say what evidence is missing."
)
_CITE = re.compile(r"\[([A-Za-z0-9_.:-]{1,32})\]")


class ChatCompletion(Protocol):
    async def complete(self, system: str, user: str) -> str: ...


class ExplanationRejected(Exception):
    """The model's answer did not stay within the evidence."""


@dataclass(frozen=True, slots=True)
class Explanation:
    text: str
    cited: tuple[str, ...]


def prompt_for(report: dict[str, Any]) -> str:
    """A compact, redacted rendering of the report: causes, evidence, steps."""
    lines = ["Ranked causes:"]
    for c in report.get("causes", [])[:5]:
        lines.append(f"- {c['service']} ({c['kind']}, confidence {c['confidence']:.2f}) evidence {c.get('evidence', [])}")
    lines.append("Evidence:")
    for e in report.get("evidence", [])[:30]:
        lines.append(f"[{e.get('id')}] {e.get('source', '')}: {e.get('summary', '')}")
    if report.get("missing"):
        lines.append("Missing: " + "; ".join(report["missing"]))
    if report.get("abstained"):
        lines.append("The engine abstained: not enough evidence.")
    return redact("\n".join(lines)).text


def check(answer: str, report: dict[str, Any]) -> Explanation:
    known_ids = {str(e.get("id")) for e in report.get("evidence", [])}
    cited = tuple(dict.fromkeys(_CITE.findall(answer)))
    if not cited:
        raise ExplanationRejected("the answer cites no evidence")
    unknown = [c for c in cited if c not in known_ids]
    if unknown:
        raise ExplanationRejected(f"the answer cites evidence that does not exist: {', '.join(unknown)}")
    ranked = {c["service"] for c in report.get("causes", [])}
    all_services = {e.get("service", "") for e in report.get("evidence", [])} | ranked | set(report.get("ranked_services", []))
    named_unranked = [s for s in all_services - ranked if s and re.search(rf"\b{re.escape(s)}\b is (?:the|a) (?:root )?cause", answer)]
    if named_unranked:
        raise ExplanationRejected(f"the answer blames services the evidence did not rank: {', '.join(sorted(named_unranked))}")
    return Explanation(answer.strip(), cited)


async def explain(db: Database, llm: ChatCompletion, model: str, incident_id: str, report: dict[str, Any]) -> Explanation | None:
    """Ask the model for a narrative; audit the call; return None when the answer is refused."""
    user = prompt_for(report)
    digest = hashlib.sha256(user.encode()).hexdigest()
    answer = await llm.complete(SYSTEM_PROMPT, user)
    try:
        out = check(answer, report)
    except ExplanationRejected as exc:
        await audit(db, BOT, "llm.call", incident_id=incident_id,
                    params={"model": model, "prompt_sha256": digest, "prompt_chars": len(user)},
                    result=f"rejected: {exc}")
        return None
    await audit(db, BOT, "llm.call", incident_id=incident_id,
                params={"model": model, "prompt_sha256": digest, "prompt_chars": len(user), "cited": list(out.cited)},
                result="accepted")
    return out


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True)
