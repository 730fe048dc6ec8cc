"""``onwatch bench rca DATASET_DIR``: the engine on every case of a dataset, scored against its labels,
beside the BARO baseline (``RCAEval.e2e.baro``) on the same metrics and the same detection time.

AC@k is the share of cases whose true root-cause service is in the top k of the ranking; Avg@5 is
the mean of AC@1..AC@5; ``ac1_answered`` is AC@1 over the cases where the engine did not abstain.
This module is the only code that opens ``labels.json``; the engine sees only the case folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.config import LlmSettings, load_settings
from bot.errors import ConfigError
from bot.investigate.cli import investigate_case, run_case
from bot.investigate.llm.investigator import configured
from bot.investigate.stats import estimate_step, forward_fill, make_grid
from integrations.replay import BundleError, ReplayCase


class BenchError(Exception):
    """The dataset folder is not usable (no cases, no labels, BARO not installed)."""


@dataclass(slots=True)
class CaseResult:
    case: str
    root_cause: str
    ranked: list[str]
    abstained: bool
    confidence: float
    seconds: float
    baro_ranked: list[str] | None = None
    error: str = ""
    fault_type: str = ""

    def rank(self, ranked: list[str] | None) -> int | None:
        if ranked is None or self.root_cause not in ranked:
            return None
        return ranked.index(self.root_cause) + 1


def load_labels(dataset: Path) -> dict[str, dict[str, Any]]:
    p = dataset / "labels.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchError(f"{p}: cannot read labels: {exc}") from None
    if not isinstance(data, dict):
        raise BenchError(f"{p}: expected an object of case id -> label")
    return data


def case_dirs(dataset: Path) -> list[Path]:
    root = dataset / "cases"
    if not root.is_dir():
        raise BenchError(f"{dataset}: no cases/ folder")
    return sorted(p for p in root.iterdir() if p.is_dir())


def baro_frame(case: ReplayCase, max_points: int = 4000) -> tuple[Any, dict[str, str]]:
    """A wide frame: one forward-filled column per (service, signal) on the case's grid."""
    import pandas as pd

    series = case.metrics()
    start, end = case.time_range
    step = estimate_step([s.times for s in series.values()])
    grid, _ = make_grid(start, end, step, max_points)
    cols: dict[str, np.ndarray] = {"time": grid}
    owner: dict[str, str] = {}
    for (svc, sig), data in series.items():
        name = f"{svc}_{sig}"
        vals = forward_fill(data.times, data.values, grid)
        finite = np.isfinite(vals)
        if not finite.any():
            continue
        vals[: int(np.argmax(finite))] = vals[int(np.argmax(finite))]  # back-fill the lead-in only
        cols[name] = vals
        owner[name] = svc
    return pd.DataFrame(cols), owner


def run_baro(case: ReplayCase) -> list[str]:
    from RCAEval.e2e.baro import baro

    frame, owner = baro_frame(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = baro(frame, inject_time=case.detection_time, dataset="onwatch")
    ranked: list[str] = []
    for col in out["ranks"]:
        svc = owner.get(col)
        if svc is not None and svc not in ranked:
            ranked.append(svc)
    return ranked


def _ac(results: list[CaseResult], k: int, baro: bool = False) -> float:
    if not results:
        return 0.0
    hits = 0
    for r in results:
        rank = r.rank(r.baro_ranked if baro else r.ranked)
        hits += rank is not None and rank <= k
    return hits / len(results)


def breakdown(results: list[CaseResult], key: str) -> dict[str, dict[str, Any]]:
    """AC@1, AC@3, abstention and AC@1 among answered per fault type or per root-cause service, so weak
    kinds are visible (the labels say which; the engine never sees them)."""
    groups: dict[str, list[CaseResult]] = {}
    for r in results:
        groups.setdefault(r.fault_type if key == "fault_type" else r.root_cause, []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(groups):
        rs = groups[name]
        answered = [r for r in rs if not r.abstained]
        out[name] = {
            "cases": len(rs),
            "ac1": round(_ac(rs, 1), 4),
            "ac3": round(_ac(rs, 3), 4),
            "abstain_rate": round(1 - len(answered) / len(rs), 4),
            "ac1_answered": round(_ac(answered, 1), 4) if answered else None,
        }
    return out


def summarise(results: list[CaseResult], with_baro: bool) -> dict[str, Any]:
    answered = [r for r in results if not r.abstained]
    out: dict[str, Any] = {
        "cases": len(results),
        "onwatch": {
            "ac1": round(_ac(results, 1), 4),
            "ac3": round(_ac(results, 3), 4),
            "avg5": round(sum(_ac(results, k) for k in range(1, 6)) / 5, 4),
            "abstain_rate": round(1 - len(answered) / len(results), 4) if results else 0.0,
            "ac1_answered": round(_ac(answered, 1), 4) if answered else None,
            "median_s": round(statistics.median(r.seconds for r in results), 4) if results else None,
        },
    }
    if with_baro:
        out["baro"] = {
            "ac1": round(_ac(results, 1, True), 4),
            "ac3": round(_ac(results, 3, True), 4),
            "avg5": round(sum(_ac(results, k, True) for k in range(1, 6)) / 5, 4),
        }
    out["by_fault_type"] = breakdown(results, "fault_type")
    out["by_root_cause"] = breakdown(results, "root_cause")
    out["per_case"] = [
        {
            "case": r.case,
            "root_cause": r.root_cause,
            "fault_type": r.fault_type,
            "onwatch_rank": r.rank(r.ranked),
            "onwatch_top": r.ranked[:3],
            "abstained": r.abstained,
            "confidence": r.confidence,
            "seconds": round(r.seconds, 4),
            **({"baro_rank": r.rank(r.baro_ranked), "baro_top": (r.baro_ranked or [])[:3]} if with_baro else {}),
            **({"error": r.error} if r.error else {}),
        }
        for r in results
    ]
    return out


def run_dataset(dataset: Path, with_baro: bool = True, limit: int | None = None) -> dict[str, Any]:
    labels = load_labels(dataset)
    dirs = case_dirs(dataset)
    if limit:
        dirs = dirs[:limit]
    if not dirs:
        raise BenchError(f"{dataset}: no cases")
    if with_baro:
        try:
            import RCAEval.e2e.baro  # noqa: F401
        except ImportError as exc:
            raise BenchError(f"BARO needs the bench extra (pip install -e '.[bench]'): {exc}") from None
    results: list[CaseResult] = []
    for d in dirs:
        label = labels.get(d.name)
        if label is None:
            raise BenchError(f"{d.name}: no label in {dataset / 'labels.json'}")
        started = time.perf_counter()
        try:
            report = asyncio.run(run_case(d))
        except BundleError as exc:
            results.append(CaseResult(d.name, label["root_cause_service"], [], True, 0.0,
                                      time.perf_counter() - started, error=str(exc),
                                      fault_type=str(label.get("fault_type", ""))))
            continue
        elapsed = time.perf_counter() - started
        res = CaseResult(
            case=d.name,
            root_cause=str(label["root_cause_service"]),
            ranked=list(report.ranked_services),
            abstained=report.abstained,
            confidence=report.causes[0].confidence if report.causes else 0.0,
            seconds=elapsed,
            fault_type=str(label.get("fault_type", "")),
        )
        if with_baro:
            res.baro_ranked = run_baro(ReplayCase(d))
        results.append(res)
    return summarise(results, with_baro)


def format_table(name: str, s: dict[str, Any]) -> str:
    o = s["onwatch"]
    line = (f"{name:<14} cases {s['cases']:>3}  onwatch ac1 {o['ac1']:.3f} ac3 {o['ac3']:.3f} avg5 {o['avg5']:.3f} "
            f"abstain {o['abstain_rate']:.3f} ac1_answered {o['ac1_answered'] if o['ac1_answered'] is not None else '-'} "
            f"median {o['median_s']:.3f}s")
    if "baro" in s:
        b = s["baro"]
        line += f"  | BARO ac1 {b['ac1']:.3f} ac3 {b['ac3']:.3f} avg5 {b['avg5']:.3f}"
    return line


def format_breakdown(title: str, table: dict[str, dict[str, Any]]) -> str:
    lines = [f"  {title:<44} cases   ac1   ac3  abstain  ac1_answered"]
    for name, r in table.items():
        ans = f"{r['ac1_answered']:.3f}" if r["ac1_answered"] is not None else "-"
        lines.append(f"  {name[:44]:<44} {r['cases']:>5} {r['ac1']:.3f} {r['ac3']:.3f}  {r['abstain_rate']:.3f}    {ans}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if getattr(args, "llm", False):
        return main_llm(args)
    dataset = Path(args.dataset)
    try:
        summary = run_dataset(dataset, with_baro=not getattr(args, "no_baro", False), limit=getattr(args, "limit", None))
    except BenchError as exc:
        print(f"onwatch bench rca: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(summary, indent=2))
    else:
        print(format_table(dataset.name, summary))
        print(format_breakdown("fault type", summary["by_fault_type"]))
        print(format_breakdown("root-cause service", summary["by_root_cause"]))
        for r in summary["per_case"]:
            print(f"  {r['case']:<20} truth {r['root_cause']:<40} onwatch #{r['onwatch_rank'] or '-'}"
                  f"{' (abstained)' if r['abstained'] else ''} [{r['fault_type']}] top {r['onwatch_top'][:3]}"
                  + (f"  BARO #{r['baro_rank'] or '-'}" if "baro_rank" in r else ""))
    return 0


# ---------------------------------------------------------------- --llm: the LLM investigator on the same cases


def run_llm(dataset: Path, cfg: LlmSettings, transcripts: Path | None = None, limit: int | None = None) -> dict[str, Any]:
    """The engine, then the investigator on the configured endpoint, per case: the model's AC@1 on its refined
    cause (refused and failed answers count as misses), refusals, tool calls, tokens and seconds per case,
    and a transcript per case (what was sent, redacted, and what came back) in ``transcripts``."""
    labels = load_labels(dataset)
    dirs = case_dirs(dataset)[: limit or None]
    if not dirs:
        raise BenchError(f"{dataset}: no cases")
    if transcripts is not None:
        transcripts.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for d in dirs:
        truth = str((labels.get(d.name) or {}).get("root_cause_service", ""))
        if not truth:
            raise BenchError(f"{d.name}: no label in {dataset / 'labels.json'}")
        report, out = asyncio.run(investigate_case(d, llm=cfg))
        row = {"case": d.name, "root_cause": truth, "engine_top": report.ranked_services[:1],
               "status": out.status.value, "reason": out.reason,
               "llm_service": out.answer.service if out.answer else None,
               "tool_calls": len(out.tool_calls), "tokens": out.prompt_tokens + out.completion_tokens,
               "seconds": round(out.seconds, 3)}
        rows.append(row)
        if transcripts is not None:
            (transcripts / f"{d.name}.json").write_text(json.dumps(
                {**row, "outcome": out.to_dict(), "transcript": out.transcript}, indent=2, default=str))
    n = len(rows)
    return {
        "cases": n,
        "engine_ac1": round(sum(r["root_cause"] in r["engine_top"] for r in rows) / n, 4),
        "llm": {
            "ac1": round(sum(r["llm_service"] == r["root_cause"] for r in rows) / n, 4),
            "accepted": sum(r["status"] == "accepted" for r in rows),
            "refused": sum(r["status"] == "refused" for r in rows),
            "errors": sum(r["status"] == "error" for r in rows),
            "tool_calls_per_case": round(sum(r["tool_calls"] for r in rows) / n, 2),
            "tokens_per_case": round(sum(r["tokens"] for r in rows) / n, 1),
            "seconds_per_case": round(sum(r["seconds"] for r in rows) / n, 3),
        },
        "per_case": rows,
    }


def main_llm(args: argparse.Namespace) -> int:
    try:
        cfg = load_settings(getattr(args, "config", None)).llm
        if not configured(cfg):
            raise BenchError("--llm needs llm.enabled and llm.base_url (docs/llm.md)")
        summary = run_llm(Path(args.dataset), cfg, getattr(args, "transcripts", None), getattr(args, "limit", None))
    except (BenchError, ConfigError) as exc:
        print(f"onwatch bench rca: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(summary, indent=2))
        return 0
    m = summary["llm"]
    print(f"{Path(args.dataset).name:<14} cases {summary['cases']:>3}  engine ac1 {summary['engine_ac1']:.3f}  "
          f"model ac1 {m['ac1']:.3f}  accepted {m['accepted']} refused {m['refused']} errors {m['errors']}  "
          f"{m['tool_calls_per_case']} tool calls, {m['tokens_per_case']} tokens, {m['seconds_per_case']} s per case")
    for r in summary["per_case"]:
        print(f"  {r['case']:<20} truth {r['root_cause']:<30} model {r['llm_service'] or '-':<24} {r['status']}"
              + (f" ({r['reason']})" if r["reason"] else ""))
    return 0
