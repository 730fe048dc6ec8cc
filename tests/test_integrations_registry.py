"""The registry (settings -> Sources), OpenMetrics export, and a failing or slow source degrading an
investigation's evidence gathering instead of breaking it."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import ConfigError
from integrations.base import TimeWindow, call_tool
from integrations.jaeger import JaegerSource
from integrations.kubernetes_read import KubernetesReader, KubernetesRollouts
from integrations.loki import LokiSource
from integrations.openmetrics import gridded, main_export_openmetrics
from integrations.prometheus import PrometheusSource
from integrations.registry import build_sources
from integrations.replay import ReplayCase
from integrations.settings import SourcesSettings
from integrations.tempo import TempoSource
from tests.conftest import datasets_dir
from tests.fakes import FAULTS, Fault
from tests.fakes import loki as fake_loki
from tests.fakes import tempo as fake_tempo
from tests.integrations_fixtures import serve

CASE = "sockshop/cases/sockshop-001"


def test_live_sources_from_settings() -> None:
    s = SourcesSettings.model_validate({
        "metrics": {"kind": "prometheus", "url": "http://prometheus:9090", "catalog": "kubernetes,otel"},
        "logs": {"kind": "loki", "url": "http://loki:3100"},
        "traces": {"kind": "jaeger", "url": "http://jaeger:16686"},
        "changes": [{"kind": "github", "repo": "acme/shop", "token": "x"},
                    {"kind": "argocd", "url": "https://argo"}, {"kind": "webhook"}],
        "kubernetes": {"kubeconfig": "/nonexistent"},
        "grafana": {"url": "https://grafana"},
    })
    src = build_sources(s, now=123.0)
    assert isinstance(src.metrics, PrometheusSource) and src.metrics.catalog.knows("latency_p99")
    assert src.metrics.link("cpu", TimeWindow(0, 60)).startswith("https://grafana/explore?")
    assert isinstance(src.logs, LokiSource) and isinstance(src.traces, JaegerSource)
    assert [c.name for c in src.changes] == ["github", "argocd", "kubernetes-rollouts"]  # webhook needs db
    assert isinstance(src.cluster, KubernetesReader) and isinstance(src.changes[-1], KubernetesRollouts)
    assert src.clock() == 123.0
    asyncio.run(src.aclose())


def test_settings_errors_are_collected() -> None:
    s = SourcesSettings.model_validate({
        "metrics": {"url": "http://p", "catalog": "nope"},
        "traces": {"url": "http://t", "ca_file": "/nonexistent/ca.pem"},
    })
    with pytest.raises(ConfigError) as err:
        build_sources(s)
    assert len(err.value.errors) == 2 and "/nonexistent/ca.pem" in str(err.value)
    with pytest.raises(ValueError, match="owner/name"):
        SourcesSettings.model_validate({"changes": [{"kind": "github"}]})


@pytest.mark.datasets
def test_replay_sources_from_settings() -> None:
    case_dir = datasets_dir() / CASE
    src = build_sources(SourcesSettings.model_validate({"replay": {"path": str(case_dir)}}))
    case = ReplayCase(case_dir)
    assert src.metrics is not None and src.clock() == case.time_range[1]
    assert build_sources(SourcesSettings.model_validate({"replay": {"path": str(case_dir)}}), now=5.0).now == 5.0


@given(st.lists(st.tuples(st.integers(0, 2000), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=50),
       st.sampled_from([1.0, 7.0, 60.0]))
def test_grid_reproduces_the_step_function(samples: list[tuple[int, float]], step: float) -> None:
    samples.sort(key=lambda s: s[0])
    t = np.array([float(x) for x, _ in samples])
    v = np.array([y for _, y in samples])
    gt, gv = gridded(t, v, 0.0, step)
    assert np.all(np.diff(gt) > 0) and gt[0] == t[0] and gt[-1] == t[-1]
    assert np.all(np.diff(gt) <= step)  # Prometheus' lookback never sees a gap
    for q in np.linspace(t[0], t[-1], 97):
        want = v[np.searchsorted(t, q, side="right") - 1]
        got = gv[np.searchsorted(gt, q, side="right") - 1]
        assert got == want


@pytest.mark.datasets
def test_export_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case_dir = datasets_dir() / CASE
    assert main_export_openmetrics(argparse.Namespace(case_dir=str(case_dir), output=None)) == 0
    out = capsys.readouterr().out
    assert out.startswith("# TYPE cpu gauge\n") and out.endswith("# EOF\n")
    assert 'cpu{service="carts"} 1.23716 1652821675\n' in out
    families = [ln.split()[2] for ln in out.splitlines() if ln.startswith("# TYPE")]
    assert families == sorted(ReplayCase(case_dir).signals())
    assert main_export_openmetrics(argparse.Namespace(case_dir=str(tmp_path), output=None)) == 1
    assert "no such file" in capsys.readouterr().err


def test_export_cli_bad_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "case.json").write_text('{"id": "x", "time_range": [0, 10]}')
    (tmp_path / "metrics.csv").write_text("time,service,signal,value\n1,a,cpu,notanumber\n")
    assert main_export_openmetrics(argparse.Namespace(case_dir=str(tmp_path), output=str(tmp_path / "o"))) == 1
    assert "not a number" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.datasets
async def test_failing_and_slow_sources_degrade_instead_of_breaking() -> None:
    """Metrics from the case, a Loki that hangs and a Tempo that fails: evidence gathering in parallel
    returns the metrics and names the two missing sources, as the engine reports them."""
    case_dir = datasets_dir() / CASE
    loki_app, tempo_app = fake_loki.make_app([]), fake_tempo.make_app([])
    loki_app[FAULTS].push(Fault("delay", delay_s=10), Fault("delay", delay_s=10))
    tempo_app[FAULTS].push(*[Fault("status", 500)] * 5)
    async with serve(loki_app) as loki_url, serve(tempo_app) as tempo_url:
        settings = SourcesSettings.model_validate({
            "logs": {"url": loki_url, "timeout_s": 0.5, "retries": 0},
            "traces": {"kind": "tempo", "url": tempo_url, "retries": 1},
        })
        live = build_sources(settings)
        replay = build_sources(SourcesSettings.model_validate({"replay": {"path": str(case_dir)}}))
        assert isinstance(live.logs, LokiSource) and isinstance(live.traces, TempoSource)
        assert replay.metrics is not None
        end = replay.clock()
        w = TimeWindow(end - 300, end)
        results = await asyncio.gather(
            call_tool("replay-metrics", "cpu", replay.metrics.signal("cpu", w), timeout_s=10),
            call_tool("loki", "error counts", live.logs.error_counts(w), timeout_s=10),
            call_tool("tempo", "slow/failed traces", live.traces.spans(w), timeout_s=10),
        )
        metrics, logs, traces = results
        assert metrics.ok and metrics.data and len(metrics.data) == 13
        assert logs.status == "timeout" and logs.error == "loki: timed out after 0.5 s"
        assert traces.status == "error" and "tempo: HTTP 500" in traces.error
        await live.aclose()
        await replay.aclose()
