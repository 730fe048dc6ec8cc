"""Similarity a person can check: a signature part and a text part, combined with a stated weight.

The signature part is a weighted Jaccard over facets a responder compares — services, alert names, failure
classes, the evidence's signals and its error-log templates — counted over the facets the present incident
has (before an investigation that is services and alerts; after, all five). The text part is the TF-IDF
cosine (scikit-learn) of titles, cause sentences and postmortem text. ``score = (1 - w) * signature +
w * text`` with ``w = memory.text_weight`` (0 when the present incident has no text), and every match says
why: the shared values of each facet and the words the texts share.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

# facet -> (weight, how a match is named)
FACETS: dict[str, tuple[float, str]] = {
    "services": (0.35, "service"),
    "alertnames": (0.25, "alert"),
    "failure_classes": (0.15, "failure class"),
    "signal_kinds": (0.10, "signal"),
    "log_templates": (0.15, "log template"),
}
_TEMPLATE_NOISE = re.compile(r"<\*>|\d+|[^\w\s]")


def norm_template(t: str) -> str:
    """A log template without its variable parts, so two drain3 runs over similar lines compare equal."""
    return " ".join(_TEMPLATE_NOISE.sub(" ", t.lower()).split())[:200]


@dataclass(frozen=True, slots=True)
class Signature:
    """What an incident looked like, facet by facet, plus its text."""

    services: frozenset[str] = frozenset()
    alertnames: frozenset[str] = frozenset()
    failure_classes: frozenset[str] = frozenset()
    signal_kinds: frozenset[str] = frozenset()
    log_templates: frozenset[str] = frozenset()
    text: str = ""

    def facet(self, name: str) -> frozenset[str]:
        value: frozenset[str] = getattr(self, name)
        return value

    def to_json(self) -> dict[str, Any]:
        return {k: sorted(self.facet(k)) for k in FACETS if k != "services"}

    @classmethod
    def of(cls, services: Iterable[str] = (), alertnames: Iterable[str] = (), failure_classes: Iterable[str] = (),
           signal_kinds: Iterable[str] = (), log_templates: Iterable[str] = (), text: str = "") -> Signature:
        return cls(frozenset(s for s in services if s), frozenset(a for a in alertnames if a),
                   frozenset(f for f in failure_classes if f), frozenset(k for k in signal_kinds if k),
                   frozenset(n for n in (norm_template(t) for t in log_templates) if n), text)


def report_facets(report: Mapping[str, Any], max_causes: int = 3) -> dict[str, list[str]]:
    """Failure classes of the leading causes, signals and log templates of the evidence they cite."""
    causes = [c for c in report.get("causes") or [] if isinstance(c, Mapping)][:max_causes]
    cited = {str(k) for c in causes for k in c.get("evidence") or []}
    evidence = [e for e in report.get("evidence") or [] if isinstance(e, Mapping) and str(e.get("id")) in cited]
    templates = [str(e.get("query", ""))[len("log template: "):] for e in evidence
                 if e.get("source") == "logs" and str(e.get("query", "")).startswith("log template: ")]
    return {
        "failure_classes": sorted({str(c.get("kind", "")) for c in causes} - {""}),
        "signal_kinds": sorted({str(e.get("signal", "")) for e in evidence if e.get("source") != "logs"} - {""}),
        "log_templates": sorted({norm_template(t) for t in templates} - {""}),
    }


@dataclass(frozen=True, slots=True)
class Match:
    score: float
    signature: float
    text: float
    why: str
    shared: dict[str, list[str]] = field(default_factory=dict)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _signature_score(q: Signature, m: Signature) -> tuple[float, dict[str, list[str]]]:
    total = weight = 0.0
    shared: dict[str, list[str]] = {}
    for name, (w, _) in FACETS.items():
        qa = q.facet(name)
        if not qa:
            continue
        ma = m.facet(name)
        weight += w
        total += w * _jaccard(qa, ma)
        if qa & ma:
            shared[name] = sorted(qa & ma)
    return (total / weight if weight else 0.0), shared


def _text_scores(query: str, docs: Sequence[str]) -> tuple[list[float], list[list[str]]]:
    """Cosine of the query with each doc over TF-IDF vectors fitted on the docs and the query, and the (at
    most three) words each shares with the query, heaviest first."""
    if not query.strip() or not any(d.strip() for d in docs):
        return [0.0] * len(docs), [[] for _ in docs]
    vec = TfidfVectorizer(sublinear_tf=True, stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][\w-]{2,}\b")
    try:
        mat = vec.fit_transform([query, *docs])
    except ValueError:  # nothing but stop words
        return [0.0] * len(docs), [[] for _ in docs]
    terms = vec.get_feature_names_out()
    q = mat[0]
    sims = (mat[1:] @ q.T).toarray().ravel()  # rows are L2-normalised: the dot product is the cosine
    words: list[list[str]] = []
    for i in range(len(docs)):
        prod = mat[i + 1].multiply(q).tocoo()
        order = np.argsort(-prod.data, kind="stable")[:3]
        words.append([str(terms[prod.col[j]]) for j in order])
    return [float(s) for s in sims], words


def _why(shared: Mapping[str, list[str]], words: list[str]) -> str:
    parts: list[str] = []
    for name, values in shared.items():
        label = FACETS[name][1]
        shown = ", ".join(f"'{v}'" if name == "log_templates" else v for v in values[:3])
        parts.append(f"same {label}{'s' if len(values) > 1 else ''} {shown}"
                     + (" in both" if name == "log_templates" else ""))
    if words:
        parts.append("text shares " + ", ".join(f"'{w}'" for w in words))
    return "; ".join(parts) or "nothing in common"


def rank(query: Signature, memories: Sequence[Signature], text_weight: float) -> list[Match]:
    """One ``Match`` per memory, in the order given."""
    texts, words = _text_scores(query.text, [m.text for m in memories])
    w = text_weight if query.text.strip() else 0.0
    out: list[Match] = []
    for m, t, ws in zip(memories, texts, words, strict=True):
        sig, shared = _signature_score(query, m)
        out.append(Match(round((1 - w) * sig + w * t, 4), round(sig, 4), round(t, 4), _why(shared, ws if t > 0 else []),
                         shared))
    return out
