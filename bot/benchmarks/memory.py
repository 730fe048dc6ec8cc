"""``onwatch bench memory DATASET [--json]``: does memory help on the second and later occurrences?

The cases of a dataset are replayed in time order (by detection time) over a fresh SQLite database. Each
case is investigated with the memory built so far (the recall and prior ``onwatch serve`` uses), and again
without memory; then it is resolved and its true cause confirmed as a person would (``incidents confirm``
when the engine ranked the true service, ``incidents correct`` otherwise) and remembered. A *recurrence* is
a case whose (root-cause service, fault type) is already remembered: an earlier case of it was resolved before
this one was detected (one whose incident is still open is counted in ``recurrences_open``: no memory can
recall it). Over the recurrences: ``recall_at_k`` is the share whose top k memories recalled after the
investigation include one of the same pattern, ``given_at_3`` the share whose memories handed to the engine
(recalled before it gathered anything, the ones that can act as a prior) do, and ``ac1_without_memory`` /
``ac1_with_memory`` the engine's AC@1. ``misses`` lists each recurrence the engine with memory got wrong, with
where the same pattern stood in both recalls. Only this harness opens ``labels.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.audit import Actor
from bot.benchmarks.rca import BenchError, case_dirs, load_labels
from bot.config import Settings
from bot.investigate.engine import PRIOR_GRADES, investigate
from bot.investigate.report import Report
from bot.investigate.scope import anchored_scope
from bot.investigate.service import past_incidents, report_signature
from bot.investigate.tiebreak import tie_broken
from bot.memory.feedback import set_cause
from bot.memory.similar import Signature
from bot.memory.store import recall, remember
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import Alert, Finding, Incident, Investigation
from integrations.replay import BundleError, ReplayCase, replay_sources

HARNESS = Actor("cli", "bench-memory", "bench memory")
RESOLVED_AFTER_S = 600.0  # each replayed incident is resolved this long after it was detected


def _patterns(labels: dict[str, Any], cases: list[str]) -> list[tuple[str, str]]:
    return [(str(labels[c]["root_cause_service"]), str(labels[c].get("fault_type", ""))) for c in cases
            if c in labels]


@dataclass(slots=True)
class Row:
    case: str
    pattern: tuple[str, str]
    recurrence: bool  # an earlier case of the pattern is remembered (resolved before this one was detected)
    recalled: list[str]  # case ids of the memories recalled after the investigation, best first
    recalled_patterns: list[tuple[str, str]]
    top_without: str
    top_with: str
    priors: int  # recalled memories that could act as a prior
    given_patterns: list[tuple[str, str]] = field(default_factory=list)  # the memories the engine was given
    seen_open: bool = False  # the pattern occurred before, but no earlier case of it was resolved yet


async def _investigate(case: ReplayCase, past: list[Any]) -> Report:
    scope = anchored_scope(case.alert_payload, case.now, incident_id=case.id)
    sources = replay_sources(case)
    try:
        return await investigate(scope, sources, past)
    finally:
        await sources.aclose()


async def _resolve(db: Database, settings: Settings, inc_id: str, case: ReplayCase, data: dict[str, Any],
                   label: dict[str, Any]) -> None:
    """The incident as onwatch would have stored it, resolved, its true cause confirmed by a person."""
    scope = data.get("scope") or {}
    services = list(scope.get("symptoms") or [])
    alerts = list(scope.get("alerts") or [])
    t = case.detection_time
    async with db.begin() as s:
        s.add(Incident(id=inc_id, title=str(scope.get("title") or case.id)[:500], services=services,
                       status="resolved", opened_at=t, resolved_at=t + RESOLVED_AFTER_S, phase="resolved"))
        await s.flush()
        for i, name in enumerate(alerts or ["alert"]):
            s.add(Alert(fingerprint=f"{inc_id}-{i}", source="alertmanager", name=name, status="resolved",
                        service=services[0] if services else "", starts_at=t, incident_id=inc_id))
        inv = Investigation(incident_id=inc_id, status="done", finished_at=t + 60, report=data,
                            abstained=bool(data.get("abstained")))
        s.add(inv)
        await s.flush()
        for rank, c in enumerate(data.get("causes") or [], 1):
            s.add(Finding(investigation_id=inv.id, rank=rank, service=str(c["service"])[:300],
                          kind=str(c["kind"])[:64], confidence=float(c["confidence"]),
                          summary=str(c.get("summary", ""))[:4000]))
    true_service = str(label["root_cause_service"])
    ranked = [str(c["service"]) for c in data.get("causes") or []]
    if true_service in ranked:
        await set_cause(db, settings, inc_id, HARNESS, rank=ranked.index(true_service) + 1, now=t + 120)
    else:
        kind = re.sub(r"[^a-z0-9_]+", "_", str(label.get("fault_type") or "unknown").lower()).strip("_") or "unknown"
        if not kind[0].isalpha():
            kind = "fault_" + kind
        await set_cause(db, settings, inc_id, HARNESS, service=true_service, kind=kind[:64], now=t + 120)
    await remember(db, inc_id)


async def run_dataset(dataset: Path) -> dict[str, Any]:
    labels = load_labels(dataset)
    cases: list[ReplayCase] = []
    for d in case_dirs(dataset):
        if d.name in labels:
            try:
                cases.append(ReplayCase(d))
            except BundleError as exc:
                raise BenchError(f"{d}: {exc}") from None
    if not cases:
        raise BenchError(f"{dataset}: no labelled cases")
    cases.sort(key=lambda c: (c.detection_time, c.id))
    settings = Settings()
    cfg = settings.memory
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="onwatch-bench-memory-") as tmp:
        url = f"sqlite:///{tmp}/memory.db"
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        try:
            resolved: dict[tuple[str, str], list[float]] = {}  # pattern -> when its cases were resolved
            case_of: dict[str, str] = {}
            for n, case in enumerate(cases, 1):
                label = labels[case.id]
                pattern = (str(label["root_cause_service"]), str(label.get("fault_type", "")))
                scope = anchored_scope(case.alert_payload, case.now, incident_id=case.id)
                before = await recall(db, Signature.of(scope.symptoms, scope.alert_names, text=scope.title),
                                      limit=cfg.recall_limit, min_score=cfg.min_score, text_weight=cfg.text_weight,
                                      before=case.detection_time)
                past = past_incidents(before)
                plain = await _investigate(case, [])
                with_memory = await _investigate(case, past) if past else plain
                data = with_memory.to_dict()
                shown = await recall(db, report_signature(list(scope.symptoms), list(scope.alert_names), scope.title,
                                                          data),
                                     limit=cfg.recall_limit, min_score=cfg.min_score, text_weight=cfg.text_weight,
                                     before=case.detection_time)
                with_memory = tie_broken(with_memory, past_incidents(shown))
                data = with_memory.to_dict()
                recalled = [case_of.get(r.incident_id or "", r.ref) for r in shown]
                given = [case_of.get(r.incident_id or "", r.ref) for r in before]
                earlier = resolved.get(pattern, [])
                rows.append(Row(
                    case.id, pattern, any(t < case.detection_time for t in earlier), recalled,
                    _patterns(labels, recalled),
                    plain.ranked_services[0] if plain.ranked_services else "",
                    with_memory.ranked_services[0] if with_memory.ranked_services else "",
                    sum(1 for p in past if p.grade in PRIOR_GRADES),
                    _patterns(labels, given),
                    bool(earlier) and all(t >= case.detection_time for t in earlier),
                ))
                inc_id = f"INC-{n:06X}"
                case_of[inc_id] = case.id
                await _resolve(db, settings, inc_id, case, data, label)
                resolved.setdefault(pattern, []).append(case.detection_time + RESOLVED_AFTER_S)
        finally:
            await db.dispose()
    return summarise(dataset.name, rows, time.perf_counter() - started)


def summarise(name: str, rows: list[Row], seconds: float) -> dict[str, Any]:
    rec = [r for r in rows if r.recurrence]

    def share(hits: int) -> float | None:
        return round(hits / len(rec), 3) if rec else None  # no recurrence: nothing to measure, not a zero

    def at(patterns: list[tuple[str, str]], pattern: tuple[str, str]) -> int | None:
        return patterns.index(pattern) + 1 if pattern in patterns else None

    return {
        "dataset": name,
        "cases": len(rows),
        "recurrences": len(rec),
        "recurrences_open": sum(r.seen_open for r in rows),
        "recall_at_1": share(sum(r.pattern in r.recalled_patterns[:1] for r in rec)),
        "recall_at_3": share(sum(r.pattern in r.recalled_patterns[:3] for r in rec)),
        "given_at_3": share(sum(r.pattern in r.given_patterns[:3] for r in rec)),
        "ac1_without_memory": share(sum(r.top_without == r.pattern[0] for r in rec)),
        "ac1_with_memory": share(sum(r.top_with == r.pattern[0] for r in rec)),
        "ac1_all_without_memory": round(sum(r.top_without == r.pattern[0] for r in rows) / len(rows), 3),
        "ac1_all_with_memory": round(sum(r.top_with == r.pattern[0] for r in rows) / len(rows), 3),
        "changed_top": sum(r.top_with != r.top_without for r in rows),
        "with_prior": sum(r.priors > 0 for r in rows),
        "misses": [{"case": r.case, "top_with_memory": r.top_with, "given_rank": at(r.given_patterns, r.pattern),
                    "recalled_rank": at(r.recalled_patterns, r.pattern)}
                   for r in rec if r.top_with != r.pattern[0]],
        "seconds": round(seconds, 1),
    }


def main(args: argparse.Namespace) -> int:
    try:
        out = asyncio.run(run_dataset(Path(args.dataset)))
    except BenchError as exc:
        print(f"onwatch: bench memory: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        f = {k: "n/a" if out[k] is None else f"{out[k]:.3f}" for k in
             ("recall_at_1", "recall_at_3", "given_at_3", "ac1_without_memory", "ac1_with_memory")}
        print(f"{out['dataset']}: {out['cases']} cases, {out['recurrences']} recurrences "
              f"({out['recurrences_open']} more while the earlier one was open); recall@1 {f['recall_at_1']}, "
              f"recall@3 {f['recall_at_3']}, given to the engine@3 {f['given_at_3']}; AC@1 on recurrences "
              f"{f['ac1_without_memory']} without memory, {f['ac1_with_memory']} with")
        for m in out["misses"]:
            print(f"  missed {m['case']}: engine with memory named {m['top_with_memory'] or '-'}; same pattern "
                  f"given at {m['given_rank'] or '-'}, recalled after at {m['recalled_rank'] or '-'}")
    return 0
