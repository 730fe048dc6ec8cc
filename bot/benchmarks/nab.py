"""``onwatch bench nab DIR --out RESULTS [--json]``: the degradation detector on the Numenta Anomaly Benchmark.

``DIR`` holds NAB's own files: ``data/<category>/<name>.csv`` (``timestamp,value``) and ``labels.json`` (NAB's
``combined_windows.json``: file -> anomaly windows). Every file is streamed through a fresh
``DegradationDetector`` in row order, with no look-ahead; as NAB's protocol does, the detector is told the
file's probationary period (its first 15 %) as its warm-up. The scores are written in NAB's results format,
``RESULTS/onwatch/<category>/onwatch_<name>.csv`` with ``timestamp,value,anomaly_score,label``, so NAB's own
scorer can score the folder, and scored here under the standard profile (``bot.benchmarks.nab_score``).
Only this harness reads ``labels.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.benchmarks.nab_score import (
    STANDARD,
    Row,
    best_threshold,
    normalised,
    probation_rows,
    raw_at,
    score_rows,
)
from bot.detect.detector import DegradationDetector, DetectorConfig

DETECTOR = "onwatch"


class NabError(Exception):
    """The folder is not a NAB corpus this harness can read; the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class Series:
    relative: str  # "<category>/<name>.csv", the key in labels.json
    stamps: list[str]  # as written in the file (NAB's scorer matches them to the windows)
    values: list[str]
    times: list[float]
    windows: list[tuple[int, int]]  # inclusive row ranges


def _time(text: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise NabError(f"{where}: {text[:40]!r} is not a timestamp (NAB writes 2014-04-10 07:15:00)") from None


def load_labels(root: Path) -> dict[str, list[list[str]]]:
    path = root / "labels.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NabError(f"{path}: cannot read the label windows: {exc}") from None
    if not isinstance(data, dict) or not all(
            isinstance(w, list) and all(isinstance(p, list) and len(p) == 2 for p in w) for w in data.values()):
        raise NabError(f"{path}: expected NAB's combined windows: file -> [[start, end], ...]")
    return data


def load_series(root: Path, relative: str, windows: list[list[str]]) -> Series:
    path = root / "data" / relative
    stamps: list[str] = []
    values: list[str] = []
    times: list[float] = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"timestamp", "value"} <= set(reader.fieldnames):
                raise NabError(f"{path}: expected the columns timestamp,value")
            for line, row in enumerate(reader, start=2):
                stamp, value = row.get("timestamp") or "", row.get("value") or ""
                try:
                    float(value)
                except ValueError:
                    raise NabError(f"{path}:{line}: value {value[:40]!r} is not a number") from None
                times.append(_time(stamp, f"{path}:{line}").timestamp())
                stamps.append(stamp)
                values.append(value)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NabError(f"{path}: cannot read: {exc}") from None
    if not stamps:
        raise NabError(f"{path}: no rows")
    row_of = {_time(s, str(path)): i for i, s in enumerate(stamps)}
    ranges: list[tuple[int, int]] = []
    for start, end in windows:
        a, b = row_of.get(_time(start, relative)), row_of.get(_time(end, relative))
        if a is None or b is None or a > b:
            raise NabError(f"labels.json: window {start} .. {end} of {relative} does not start and end on rows of "
                           "the file")
        ranges.append((a, b))
    return Series(relative, stamps, values, times, ranges)


def run_detector(series: Series) -> tuple[list[float], float]:
    """The score of each row, streamed in order, and the seconds it took."""
    detector = DegradationDetector(DetectorConfig(warmup=max(1, int(probation_rows(len(series.times))))))
    started = time.perf_counter()
    scores = [detector.update(t, float(v)).score for t, v in zip(series.times, series.values, strict=True)]
    return scores, time.perf_counter() - started


def write_results(out: Path, series: Series, scores: list[float]) -> Path:
    """NAB's results file for one series: ``RESULTS/onwatch/<category>/onwatch_<name>.csv``."""
    category, _, name = series.relative.rpartition("/")
    path = out / DETECTOR / category / f"{DETECTOR}_{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    in_window = [0] * len(scores)
    for a, b in series.windows:
        for i in range(a, b + 1):
            in_window[i] = 1
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value", "anomaly_score", "label"])
        for stamp, value, score, label in zip(series.stamps, series.values, scores, in_window, strict=True):
            w.writerow([stamp, value, repr(score), label])
    return path


def run_corpus(root: Path, out: Path) -> dict[str, Any]:
    """Detect, write and score every labelled file under ``root/data``; the figures ``main`` prints."""
    labels = load_labels(root)
    files = sorted(p.relative_to(root / "data").as_posix() for p in (root / "data").glob("*/*.csv"))
    if not files:
        raise NabError(f"{root}: no data/<category>/*.csv files")
    unlabelled = [f for f in files if f not in labels]
    if unlabelled:
        raise NabError(f"labels.json has no windows for {', '.join(unlabelled[:5])}: NAB's scorer needs every file")
    rows: list[Row] = []
    null_rows: list[Row] = []
    per_file: list[tuple[str, list[Row], int]] = []
    points, seconds, n_windows = 0, 0.0, 0
    for relative in files:
        series = load_series(root, relative, labels[relative])
        scores, took = run_detector(series)
        write_results(out, series, scores)
        points += len(scores)
        seconds += took
        n_windows += len(series.windows)
        file_rows = score_rows(relative, scores, series.windows, STANDARD)
        rows += file_rows
        null_rows += score_rows(relative, [0.5] * len(scores), series.windows, STANDARD)
        per_file.append((relative, file_rows, len(series.windows)))
    best = best_threshold(rows, STANDARD)
    null = best_threshold(null_rows, STANDARD)
    detail = []
    for relative, file_rows, windows in per_file:
        found = {r.window for r in file_rows if r.window is not None and r.score >= best.threshold}
        fps = sum(1 for r in file_rows if r.window is None and r.score >= best.threshold)
        detail.append({"file": relative, "windows": windows, "detected": len(found), "false_positives": fps,
                       "raw": round(raw_at(file_rows, best.threshold, STANDARD), 4)})
    return {
        "files": len(files),
        "standard": round(normalised(best.raw, null.raw, n_windows, STANDARD), 2) if n_windows else None,
        "us_per_point": round(seconds / points * 1e6, 2),
        "threshold": best.threshold,
        "windows": n_windows,
        "detected": best.detected_windows,
        "false_positives": best.false_positives,
        "points": points,
        "results": str(out / DETECTOR),
        "per_file": detail,
    }


def main(args: argparse.Namespace) -> int:
    try:
        out = run_corpus(Path(args.dir), Path(args.out))
    except NabError as exc:
        print(f"onwatch: bench nab: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"onwatch: bench nab: cannot write the results: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    score = "n/a (no windows)" if out["standard"] is None else f"{out['standard']:.1f}"
    print(f"NAB standard profile: {score} over {out['files']} files ({out['detected']}/{out['windows']} windows "
          f"found, {out['false_positives']} false positives at threshold {out['threshold']:.4f}); "
          f"{out['us_per_point']:.1f} us per point; results in {out['results']}")
    for f in out["per_file"]:
        print(f"  {f['file']}: {f['detected']}/{f['windows']} windows, {f['false_positives']} false positives, "
              f"raw {f['raw']:+.2f}")
    return 0
