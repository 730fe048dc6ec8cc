"""The RCA harness on a few real cases, with BARO beside the engine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bot.benchmarks.rca import BenchError, CaseResult, main, run_dataset, summarise

DATASETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


def test_summary_figures() -> None:
    rs = [CaseResult("a", "x", ["x", "y"], False, 0.8, 0.1, ["y", "x"]),
          CaseResult("b", "x", ["y", "z", "x"], True, 0.2, 0.3, ["x"]),
          CaseResult("c", "x", [], True, 0.0, 0.2, [])]
    s = summarise(rs, True)
    assert s["onwatch"]["ac1"] == round(1 / 3, 4) and s["onwatch"]["ac3"] == round(2 / 3, 4)
    assert s["onwatch"]["ac1_answered"] == 1.0 and s["onwatch"]["abstain_rate"] == round(2 / 3, 4)
    assert s["onwatch"]["median_s"] == 0.2
    assert s["baro"]["ac1"] == round(1 / 3, 4) and s["baro"]["ac3"] == round(2 / 3, 4)
    assert s["onwatch"]["avg5"] == round((1 / 3 + 1 / 3 + 2 / 3 * 3) / 5, 4)


def test_breakdown_per_fault_type_and_root_cause() -> None:
    rs = [CaseResult("a", "x", ["x"], False, 0.8, 0.1, fault_type="cpu"),
          CaseResult("b", "y", ["x", "y"], True, 0.2, 0.1, fault_type="cpu"),
          CaseResult("c", "y", ["y"], False, 0.7, 0.1, fault_type="exception")]
    s = summarise(rs, False)
    assert s["by_fault_type"]["cpu"] == {"cases": 2, "ac1": 0.5, "ac3": 1.0, "abstain_rate": 0.5, "ac1_answered": 1.0}
    assert s["by_fault_type"]["exception"]["ac1"] == 1.0
    assert s["by_root_cause"]["y"]["cases"] == 2 and s["by_root_cause"]["y"]["ac1"] == 0.5
    assert s["by_root_cause"]["x"]["ac1_answered"] == 1.0


@pytest.mark.datasets
def test_bench_on_two_cases(capsys: pytest.CaptureFixture[str]) -> None:
    ds = DATASETS / "sockshop"
    if not ds.is_dir():
        pytest.skip("../shared/datasets/sockshop is not present")
    pytest.importorskip("RCAEval", reason="BARO needs the bench extra: pip install -e '.[bench]'")
    assert main(argparse.Namespace(dataset=str(ds), json=True, no_baro=False, limit=2)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cases"] == 2 and len(out["per_case"]) == 2
    for k in ("ac1", "ac3", "avg5", "abstain_rate", "ac1_answered", "median_s"):
        assert k in out["onwatch"]
    assert set(out["baro"]) == {"ac1", "ac3", "avg5"}
    assert all(r["baro_top"] for r in out["per_case"])


def test_bad_dataset(tmp_path: Path) -> None:
    with pytest.raises(BenchError):
        run_dataset(tmp_path, with_baro=False)
    assert main(argparse.Namespace(dataset=str(tmp_path), json=True, no_baro=True, limit=None)) == 2
