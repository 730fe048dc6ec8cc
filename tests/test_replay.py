"""The replay source: a real case bundle read lazily, step-function series, typed errors on bad files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bot.investigate.cli import main as investigate_main
from integrations.base import (
    ChangeSource,
    LogSource,
    MetricsSource,
    SourceBadResponse,
    TimeWindow,
    TopologySource,
    TraceSource,
)
from integrations.replay import BundleError, ReplayCase, replay_sources
from tests.investigate_fixtures import INJECT, T0, make_case

DATASETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


def _real_case(dataset: str) -> Path:
    cases = DATASETS / dataset / "cases"
    if not cases.is_dir():
        pytest.skip(f"../shared/datasets/{dataset} is not present")
    return sorted(p for p in cases.iterdir() if p.is_dir())[0]


@pytest.fixture
def no_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything opens a labels.json."""
    real_open = Path.open

    def guarded(self: Path, *a, **kw):
        if self.name == "labels.json":
            raise AssertionError("labels.json was opened")
        return real_open(self, *a, **kw)

    monkeypatch.setattr(Path, "open", guarded)
    real_read = Path.read_text

    def guarded_read(self: Path, *a, **kw):
        if self.name == "labels.json":
            raise AssertionError("labels.json was read")
        return real_read(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", guarded_read)


@pytest.mark.datasets
async def test_real_case_serves_every_interface(no_labels: None) -> None:
    path = _real_case("trainticket")
    case = ReplayCase(path)
    src = replay_sources(case)
    assert src.now == case.time_range[1] == src.clock()
    assert isinstance(src.metrics, MetricsSource)
    assert isinstance(src.logs, LogSource) and isinstance(src.traces, TraceSource)
    assert all(isinstance(t, TopologySource) for t in src.topology) and src.topology
    assert src.changes == [] or all(isinstance(c, ChangeSource) for c in src.changes)
    sigs = await src.metrics.available_signals()
    assert "cpu" in sigs and sigs == sorted(sigs)
    start, end = case.time_range
    window = TimeWindow(start + 300, end + 3600)  # past the clock: clipped to it
    series = await src.metrics.signal("cpu", window)
    assert len({s.service for s in series}) == len(series) > 10
    for s in series:
        assert s.points[0][0] >= start + 300 and s.points[-1][0] <= end
        assert all(a[0] <= b[0] for a, b in zip(s.points, s.points[1:], strict=False))
    lines = await src.logs.lines(TimeWindow(start, end), limit=100)
    assert len(lines) <= 100
    spans = await src.traces.spans(TimeWindow(start, end), limit=500)
    assert 0 < len(spans) <= 500
    assert await src.traces.trace(spans[0].trace_id)
    edges = await src.topology[0].edges()
    assert edges and all(e.caller and e.callee for e in edges)


@pytest.mark.datasets
def test_change_only_series_are_forward_filled(no_labels: None) -> None:
    case = ReplayCase(_real_case("sockshop"))
    (svc, sig), data = next(iter(case.metrics().items()))
    # a window between two recorded changes still holds the value in force
    gaps = [(a, b) for a, b in zip(data.times, data.times[1:], strict=False) if b - a > 2]
    assert gaps, "sockshop writes only value changes"
    a, b = gaps[0]
    got = case.series(sig, TimeWindow(a + 0.5, b - 0.5), [svc])
    assert got[0].points == [(a + 0.5, float(data.values[list(data.times).index(a)]))]


@pytest.mark.datasets
def test_cli_on_a_real_case(capsys: pytest.CaptureFixture[str], no_labels: None) -> None:
    rc = investigate_main(argparse.Namespace(case=str(_real_case("petshop")), alert=None, config=None, json=True))
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"abstained", "ranked_services", "causes", "evidence", "steps", "missing"}
    for c in out["causes"]:
        assert set(c) >= {"service", "kind", "confidence", "evidence"}


def test_cli_text_and_bad_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = make_case(tmp_path, None)
    assert investigate_main(argparse.Namespace(case=str(case), alert=None, config=None, json=False)) == 0
    assert "Reasoning:" in capsys.readouterr().out
    (case / "case.json").write_text("{not json")
    assert investigate_main(argparse.Namespace(case=str(case), alert=None, config=None, json=True)) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert investigate_main(argparse.Namespace(case=None, alert=None, config=None, json=True)) == 2


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("metrics.csv", "time,service,value\n1,a,2\n", "header"),
        ("metrics.csv", "time,service,signal,value\n1,a,cpu,abc\n", "not a number"),
        ("metrics.csv", "time,service,signal,value\n1,a,cpu\n", "3 fields"),
        ("metrics.csv", "time,service,signal,value\n1,a,cpu,nan\n", "finite"),
        ("case.json", '{"id": "x", "time_range": [5, 1]}', "time_range"),
        ("alert.json", '{"alerts": []}', "at least one alert"),
        ("topology.json", '{"edges": [{"from": "a"}]}', "edges[0]"),
        ("changes.json", '{"changes": [{"service": "a", "time": "yesterday"}]}', "RFC 3339"),
        ("changes.json", '{"changes": [{"service": "a", "time": 1, "kind": "party"}]}', "kind"),
        ("logs.csv", "time,service,level,message,trace_id\n1,a,LOUD,hi,\n", "unknown level"),
    ],
)
def test_malformed_files_raise_typed_errors(tmp_path: Path, file: str, content: str, message: str) -> None:
    path = make_case(tmp_path, None, logs=[(T0 + 1, "a", "INFO", "x")])
    (path / file).write_text(content)
    case = ReplayCase(path)
    with pytest.raises(BundleError) as err:
        _ = case.case, case.alert_payload, case.metrics(), case.edges(), case.logs()
        if (path / "changes.json").exists():
            case.change_events()
    assert message in str(err.value) and file in str(err.value)
    assert isinstance(err.value, SourceBadResponse)


async def test_changes_extension_is_served_in_window(tmp_path: Path) -> None:
    changes = [{"service": "orders", "time": INJECT - 60, "kind": "deploy", "version": "v2"},
               {"service": "db", "time": "2023-11-14T22:13:20Z", "kind": "config"}]
    src = replay_sources(make_case(tmp_path, None, changes=changes))
    got = await src.changes[0].changes(TimeWindow(INJECT - 120, INJECT))
    assert [(c.service, c.kind, c.version, c.source) for c in got] == [("orders", "deploy", "v2", "replay")]
    assert len(await src.changes[0].changes(TimeWindow(T0 - 10**6, T0 + 10**6))) == 2


def test_missing_folder() -> None:
    with pytest.raises(BundleError):
        ReplayCase("/nonexistent/case")
