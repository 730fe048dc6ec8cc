"""Code checks the model's answer before anyone sees it.

An answer is a JSON object: a refined cause (``service``, ``kind``, a sentence of ``mechanism``), the
evidence ids behind it, optional ``claims`` each with its own ids, and what to ``next`` check. It is
refused when it cites an id that is neither the engine's nor a tool result, names a service no evidence
is about, makes a claim without a citation, cites nothing about the service it blames, or carries
anything that looks like an action: the investigator reads and explains, it never acts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.investigate.report import EvidenceItem

_ACTION_KEYS = frozenset({"action", "actions", "approve", "approval", "runbook", "runbooks", "execute", "run",
                          "remediation", "rollback", "command", "commands", "tool_calls"})
_KIND = re.compile(r"[a-z][a-z0-9_ -]{0,39}")
MAX_MECHANISM = 600
MAX_CLAIMS = 8
MAX_NEXT = 5


class AnswerRefused(Exception):
    """The answer did not stay within the evidence (the message says how)."""


@dataclass(frozen=True, slots=True)
class Claim:
    text: str
    evidence: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "evidence": list(self.evidence)}


@dataclass(frozen=True, slots=True)
class Answer:
    service: str
    kind: str
    mechanism: str
    evidence: tuple[str, ...]
    claims: tuple[Claim, ...] = ()
    next: tuple[str, ...] = ()
    ignored: tuple[str, ...] = field(default=())  # keys of the answer that were not read

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "kind": self.kind, "mechanism": self.mechanism,
                "evidence": list(self.evidence), "claims": [c.to_dict() for c in self.claims],
                "next": list(self.next)}


def _ids(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AnswerRefused(f"{where} must be a list of evidence ids")
    return tuple(dict.fromkeys(v.strip().strip("[]") for v in value if v.strip()))


def _text(value: Any, where: str, limit: int, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise AnswerRefused(f"{where} must be a non-empty string")
    if len(value) > limit:
        raise AnswerRefused(f"{where} is longer than {limit} characters")
    return value.strip()


def check_answer(raw: dict[str, Any], evidence: Iterable[EvidenceItem], services: Iterable[str] = ()) -> Answer:
    """The answer, checked against every evidence item (the engine's and the tools'); else ``AnswerRefused``.

    ``services`` are all the service names this investigation knows of (ranked, symptoms, evidence), so a
    claim that names one the evidence is not about can be caught.
    """
    by_id = {e.id: e for e in evidence}
    about = {e.service for e in by_id.values() if e.service}
    for s in list(about):
        about.update(p.strip() for p in s.split(",") if p.strip())  # a changes listing names several
    acting = sorted(k for k in raw if k.lower() in _ACTION_KEYS)
    if acting:
        raise AnswerRefused(f"the answer carries an action ({', '.join(acting)}); the investigator cannot act")
    service = _text(raw.get("service"), "service", 200)
    kind = _text(raw.get("kind"), "kind", 40).lower()
    if not _KIND.fullmatch(kind):
        raise AnswerRefused(f"kind {kind!r} is not a short lowercase word")
    mechanism = _text(raw.get("mechanism"), "mechanism", MAX_MECHANISM)
    cited = _ids(raw.get("evidence"), "evidence")
    if not cited:
        raise AnswerRefused("the mechanism cites no evidence")
    claims_raw = raw.get("claims") or []
    if not isinstance(claims_raw, list) or len(claims_raw) > MAX_CLAIMS:
        raise AnswerRefused(f"claims must be a list of at most {MAX_CLAIMS}")
    claims: list[Claim] = []
    for i, c in enumerate(claims_raw):
        if not isinstance(c, dict):
            raise AnswerRefused(f"claims[{i}] must be an object with text and evidence")
        text = _text(c.get("text"), f"claims[{i}].text", MAX_MECHANISM)
        ids = _ids(c.get("evidence"), f"claims[{i}].evidence")
        if not ids:
            raise AnswerRefused(f"claims[{i}] cites no evidence: {text[:80]!r}")
        claims.append(Claim(text, ids))
    all_ids = [*cited, *(i for c in claims for i in c.evidence)]
    unknown = sorted({i for i in all_ids if i not in by_id})
    if unknown:
        raise AnswerRefused(f"the answer cites evidence that does not exist: {', '.join(unknown)}")
    if service not in about:
        raise AnswerRefused(f"the answer blames {service}, which no evidence is about")
    if not any(service in {p.strip() for p in by_id[i].service.split(",")} for i in all_ids):
        raise AnswerRefused(f"the answer blames {service} but cites no evidence about {service}")
    texts = " ".join([mechanism, *(c.text for c in claims)])
    outside = sorted(s for s in set(services) - about
                     if s and re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", texts))
    if outside:
        raise AnswerRefused(f"the answer names services no evidence is about: {', '.join(outside)}")
    nxt_raw = raw.get("next") or []
    if isinstance(nxt_raw, str):
        nxt_raw = [nxt_raw]
    if not isinstance(nxt_raw, list) or not all(isinstance(n, str) for n in nxt_raw):
        raise AnswerRefused("next must be a list of strings")
    nxt = tuple(n.strip()[:300] for n in nxt_raw[:MAX_NEXT] if n.strip())
    ignored = tuple(sorted(set(raw) - {"service", "kind", "mechanism", "evidence", "claims", "next"}))
    return Answer(service, kind, mechanism, tuple(cited), tuple(claims), nxt, ignored)
