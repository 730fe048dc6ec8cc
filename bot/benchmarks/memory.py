"""``onwatch bench memory DATASET [--json]``: does memory help on the second and later occurrences?

The cases of a dataset are replayed in time order (by detection time) over a fresh SQLite database. Each
case is investigated with the memory built so far (the recall and prior ``onwatch serve`` uses), and again
without memory; then it is resolved and its true cause confirmed as a person would (``incidents confirm``
when the engine ranked the true service, ``incidents correct`` otherwise) and remembered. A *recurrence* is
a case whose (root-cause service, fault type) appeared in an earlier case. Over the recurrences:
``recall_at_k`` is the share whose top k recalled memories include one of the same pattern, and
``ac1_without_memory`` / ``ac1_with_memory`` the engine's AC@1. Only this harness opens ``labels.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.audit import Actor
from bot.benchmarks.rca import BenchError, case_dirs, load_labels
from bot.config import Settings
from bot.investigate.engine import investigate
from bot.investigate.report import Report
from bot.investigate.scope import anchored_scope
from bot.investigate.service import past_incidents, report_signature
from bot.memory.feedback import set_cause
from bot.memory.similar import Signature
from bot.memory.store import recall, remember
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import Alert, Finding, Incident, Investigation
from integrations.replay import BundleError, ReplayCase, replay_sources

HARNESS = Actor("cli", "bench-memory", "bench memory")


@dataclass(slots=True)
class Row:
    case: str
    pattern: tuple[str, str]
    recurrence: bool
    recalled: list[str]  # case ids of the recalled memories, best first
    recalled_patterns: list[tuple[str, str]]
    top_without: str
    top_with: str
    priors: int  # recalled memories that could act as a prior


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
                       status="resolved", opened_at=t, resolved_at=t + 600, phase="resolved"))
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
            seen: set[tuple[str, str]] = set()
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
                recalled = [case_of.get(r.incident_id or "", r.ref) for r in shown]
                rows.append(Row(
                    case.id, pattern, pattern in seen, recalled,
                    [(str(labels[c]["root_cause_service"]), str(labels[c].get("fault_type", ""))) for c in recalled
                     if c in labels],
                    plain.ranked_services[0] if plain.ranked_services else "",
                    with_memory.ranked_services[0] if with_memory.ranked_services else "",
                    sum(1 for p in past if p.grade in ("confirmed", "verified")),
                ))
                inc_id = f"INC-{n:06X}"
                case_of[inc_id] = case.id
                await _resolve(db, settings, inc_id, case, data, label)
                seen.add(pattern)
        finally:
            await db.dispose()
    return summarise(dataset.name, rows, time.perf_counter() - started)


def summarise(name: str, rows: list[Row], seconds: float) -> dict[str, Any]:
    rec = [r for r in rows if r.recurrence]

    def share(hits: int) -> float:
        return round(hits / len(rec), 3) if rec else 0.0

    return {
        "dataset": name,
        "cases": len(rows),
        "recurrences": len(rec),
        "recall_at_1": share(sum(r.pattern in r.recalled_patterns[:1] for r in rec)),
        "recall_at_3": share(sum(r.pattern in r.recalled_patterns[:3] for r in rec)),
        "ac1_without_memory": share(sum(r.top_without == r.pattern[0] for r in rec)),
        "ac1_with_memory": share(sum(r.top_with == r.pattern[0] for r in rec)),
        "ac1_all_without_memory": round(sum(r.top_without == r.pattern[0] for r in rows) / len(rows), 3),
        "ac1_all_with_memory": round(sum(r.top_with == r.pattern[0] for r in rows) / len(rows), 3),
        "changed_top": sum(r.top_with != r.top_without for r in rows),
        "with_prior": sum(r.priors > 0 for r in rows),
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
        print(f"{out['dataset']}: {out['cases']} cases, {out['recurrences']} recurrences; recall@1 "
              f"{out['recall_at_1']:.3f}, recall@3 {out['recall_at_3']:.3f}; AC@1 on recurrences "
              f"{out['ac1_without_memory']:.3f} without memory, {out['ac1_with_memory']:.3f} with")
    return 0
