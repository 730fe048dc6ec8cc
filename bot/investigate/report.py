"""The result of an investigation: ranked causes, the evidence behind them, the reasoning, what was missing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bot.messages.format import fmt_num


@dataclass(slots=True)
class EvidenceItem:
    id: str
    source: str
    kind: str  # metric | logs | traces | change | topology | cluster | memory
    service: str
    signal: str
    query: str
    summary: str
    before: float | None = None
    after: float | None = None
    z: float = 0.0
    onset: float | None = None
    link: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("before", "after", "z", "onset"):
            if isinstance(d[k], float):
                d[k] = round(d[k], 6)
        return d


@dataclass(slots=True)
class Cause:
    service: str
    kind: str
    confidence: float
    evidence: list[str]
    summary: str = ""
    score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "kind": self.kind,
            "confidence": round(self.confidence, 4),
            "evidence": list(self.evidence),
            "summary": self.summary,
        }


@dataclass(slots=True)
class Step:
    n: int
    looked_at: str
    concluded: str
    kind: str = "looked"  # looked | hypothesised | tested | concluded (the chat model's step kinds)

    @property
    def text(self) -> str:
        return f"{self.looked_at} → {self.concluded}" if self.concluded else self.looked_at

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "index": self.n, "kind": self.kind, "looked_at": self.looked_at,
                "concluded": self.concluded, "text": self.text}


@dataclass(slots=True)
class Report:
    abstained: bool
    ranked_services: list[str]
    causes: list[Cause]
    evidence: list[EvidenceItem]
    steps: list[Step]
    missing: list[str]
    scope: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    chart: dict[str, Any] | None = None
    separation: float = 0.0  # 1 - (best rival / leading cause): how clearly the leader stands out
    similar: list[dict[str, str]] = field(default_factory=list)  # remembered look-alikes, shown as context
    coverage: dict[str, Any] = field(default_factory=dict)  # what the sources covered (bot.investigate.coverage)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "abstained": self.abstained,
            "ranked_services": list(self.ranked_services),
            "causes": [c.to_dict() for c in self.causes],
            "evidence": [e.to_dict() for e in self.evidence],
            "steps": [s.to_dict() for s in self.steps],
            "missing": list(self.missing),
            "scope": self.scope,
            "reason": self.reason,
            "separation": round(self.separation, 4),
        }
        if self.chart is not None:
            out["chart"] = self.chart
        if self.similar:
            out["similar"] = self.similar
        if self.coverage:
            out["coverage"] = self.coverage
        return out


def render_text(report: Report) -> str:
    """The reasoning as a person reads it: what was looked at, what it showed, what is concluded."""
    out: list[str] = []
    sc = report.scope
    if sc:
        out.append(f"Incident: {sc.get('title') or sc.get('incident_id') or '(untitled)'}")
        out.append(f"Symptoms: {', '.join(sc.get('symptoms') or []) or '(none named)'}")
    out.append("")
    out.append("Reasoning:")
    for s in report.steps:
        out.append(f"  {s.n}. {s.looked_at}")
        out.append(f"     -> {s.concluded}")
    out.append("")
    by_id = {e.id: e for e in report.evidence}
    if report.abstained:
        out.append("Not enough evidence to name a cause." + (f" {report.reason}" if report.reason else ""))
        if report.causes:
            out.append("What it saw (unconfirmed):")
    else:
        out.append("Likely causes:")
    for i, c in enumerate(report.causes[:5], 1):
        out.append(f"  {i}. {c.service} - {c.kind} (confidence {c.confidence:.2f})")
        if c.summary:
            out.append(f"     {c.summary}")
        for eid in c.evidence[:4]:
            e = by_id.get(eid)
            if e is not None:
                out.append(f"     [{e.id}] {e.summary} (before {fmt_num(e.before, '-')}, after {fmt_num(e.after, '-')})")
    cov = coverage_line(report.coverage)
    if cov:
        out.append("")
        out.append(f"Coverage: {cov}")
    if report.missing:
        out.append("")
        out.append("Missing or failed sources:")
        for m in report.missing:
            out.append(f"  - {m}")
    return "\n".join(out)


def coverage_line(coverage: dict[str, Any]) -> str:
    """The telemetry an investigation covered, per source: named services and samples per window."""
    parts: list[str] = []
    for s in coverage.get("sources") or []:
        if s.get("source") not in ("metrics", "logs", "traces") or not s.get("answered"):
            continue
        samples = ", ".join(f"{k} {v}" for k, v in (s.get("samples") or {}).items())
        parts.append(f"{s['source']} {len(s.get('services') or [])} services ({samples} samples)")
    return "; ".join(parts)
