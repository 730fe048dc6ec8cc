"""NAB's scoring rules against hand-computed cases, and ``onwatch bench nab`` end to end on a small corpus."""

from __future__ import annotations

import csv
import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.benchmarks.nab_score import (
    best_threshold,
    normalised,
    probation_rows,
    raw_at,
    scaled_sigmoid,
    score_rows,
    sweep,
)
from bot.cli import main

WINDOW = (40, 49)  # a 10-row window in a 100-row file (rows 0..14 are probationary)


def at(*hits: int, n: int = 100) -> list[float]:
    return [1.0 if i in hits else 0.0 for i in range(n)]


def raw(scores: list[float]) -> float:
    return raw_at(score_rows("f", scores, [WINDOW]), 0.5)


def test_the_sigmoid_runs_from_the_left_edge_to_three_widths_past_the_right() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0


def test_probation_is_fifteen_percent_capped_at_750_rows() -> None:
    assert probation_rows(100) == 15
    assert probation_rows(4032) == 604
    assert probation_rows(22_000) == 750


def test_a_window_scores_its_earliest_detection_only() -> None:
    assert raw(at(40)) == pytest.approx(1.0)  # the left edge earns A_TP
    right = (2 / (1 + math.exp(-0.5)) - 1) / scaled_sigmoid(-1.0)  # position -0.1
    assert raw(at(49)) == pytest.approx(right)
    assert raw(at(40, 45, 49)) == pytest.approx(1.0)
    assert raw(at()) == -1.0  # a miss costs A_FN


def test_false_positives_cost_by_their_distance_past_the_last_window() -> None:
    before = raw(at(20)) + 1.0  # before any window: the full A_FP
    assert before == pytest.approx(-0.11)
    near = raw(at(52)) + 1.0  # 3 rows past a 10-row window: position 3/9
    assert near == pytest.approx(0.11 * (2 / (1 + math.exp(5 / 3)) - 1))
    assert raw(at(80)) + 1.0 == pytest.approx(-0.11)  # 31/9 widths past: the full cost
    assert raw(at(10)) == -1.0  # probationary rows never count


def test_one_threshold_for_the_corpus_and_the_normalisation() -> None:
    a = score_rows("a", [0.9 if i == 40 else 0.0 for i in range(100)], [WINDOW])
    b = score_rows("b", [0.6 if i == 41 else 0.7 if i == 20 else 0.0 for i in range(100)], [WINDOW])
    sweeps = sweep(a + b)
    assert [s.threshold for s in sweeps] == [1.1, 0.9, 0.7, 0.6, 0.0]
    best = best_threshold(a + b)
    second = scaled_sigmoid(-0.9) / scaled_sigmoid(-1.0)
    assert best.threshold == 0.6 and best.raw == pytest.approx(1.0 + second - 0.11)
    assert best.detected_windows == 2 and best.false_positives == 1
    null = best_threshold(score_rows("a", [0.5] * 100, [WINDOW]) + score_rows("b", [0.5] * 100, [WINDOW]))
    assert null.raw == -2.0  # a constant score does best by detecting nothing
    assert normalised(2.0, null.raw, 2) == 100.0
    assert normalised(null.raw, null.raw, 2) == 0.0
    assert normalised(best.raw, null.raw, 2) == pytest.approx(100 * (best.raw + 2) / 4)


def test_a_window_outside_the_file_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        score_rows("f", [0.0] * 10, [(5, 12)])


# ------------------------------------------------------------------ the command


def corpus(root: Path, *, rows: int = 1200, shift_at: int = 900) -> str:
    """One file with a level shift and its label window, in NAB's layout."""
    start = datetime(2014, 4, 1, tzinfo=UTC)
    r = random.Random(1)
    stamps = [(start + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(rows)]
    (root / "data" / "cat").mkdir(parents=True)
    with (root / "data" / "cat" / "shift.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value"])
        for i, s in enumerate(stamps):
            w.writerow([s, f"{50 + r.gauss(0, 2) + (30 if i >= shift_at else 0):.3f}"])
    window = [f"{stamps[shift_at - 20]}.000000", f"{stamps[shift_at + 20]}.000000"]
    (root / "labels.json").write_text(json.dumps({"cat/shift.csv": [window]}))
    return stamps[shift_at - 20]


def test_bench_nab_writes_nabs_results_format_and_scores_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    window_start = corpus(tmp_path / "nab")
    out = tmp_path / "results"
    assert main(["bench", "nab", str(tmp_path / "nab"), "--out", str(out), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["files"] == 1 and figures["windows"] == 1 and figures["detected"] == 1
    assert figures["standard"] > 90  # found within a few rows of the shift, early in its window
    assert figures["us_per_point"] > 0
    with (out / "onwatch" / "cat" / "onwatch_shift.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "label"]
    assert len(rows) == 1200 and all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
    labelled = [r["timestamp"] for r in rows if r["label"] == "1"]
    assert len(labelled) == 41 and labelled[0] == window_start
    assert max(float(r["anomaly_score"]) for r in rows[:180]) == 0.0  # nothing scored in probation


@pytest.mark.parametrize("damage, message", [
    (lambda root: (root / "labels.json").write_text("{}"), "no windows for cat/shift.csv"),
    (lambda root: (root / "labels.json").write_text("[1, 2]"), "expected NAB's combined windows"),
    (lambda root: (root / "labels.json").write_text(json.dumps({"cat/shift.csv": [["2014-04-01 00:02:00",
                                                                                   "2014-04-01 00:10:00"]]})),
     "does not start and end on rows"),
    (lambda root: (root / "data" / "cat" / "shift.csv").write_text("timestamp,value\nyesterday,1\n"),
     "is not a timestamp"),
    (lambda root: (root / "data" / "cat" / "shift.csv").write_text("timestamp,value\n2014-04-01 00:00:00,abc\n"),
     "is not a number"),
    (lambda root: (root / "data" / "cat" / "shift.csv").write_text("time,v\n1,2\n"), "expected the columns"),
])
def test_bench_nab_names_what_is_wrong_with_a_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      damage: object, message: str) -> None:
    corpus(tmp_path / "nab")
    damage(tmp_path / "nab")  # type: ignore[operator]
    assert main(["bench", "nab", str(tmp_path / "nab"), "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err


def test_bench_nab_on_the_shared_corpus_beats_the_aim(tmp_path: Path, datasets: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    nab = datasets / "nab"
    if not (nab / "labels.json").exists():
        pytest.skip("../shared/datasets/nab is not here")
    assert main(["bench", "nab", str(nab), "--out", str(tmp_path), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["files"] == len(json.loads((nab / "labels.json").read_text()))
    assert figures["standard"] > 60
