"""Investigations on a real Prometheus (Debian's package, filled with ``promtool tsdb create-blocks-from
openmetrics``): the same case ranks the same top cause through ``--alert --config`` as through ``--case``;
cAdvisor-style names with a mismatched catalog abstain and name the catalog; two profiles each keep their
service label; ``onwatch sources check`` prints the coverage. The alerts are old (2023), so a window ending
at the wall clock would hold no data: these tests fail without the anchoring on ``startsAt``."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.cli import main
from bot.demo.simulate import simulate
from integrations.base import TimeWindow
from integrations.catalog import Catalog
from integrations.http import HttpConfig, HttpSource
from integrations.prometheus import PrometheusClient, PrometheusSource
from integrations.replay import ReplayCase
from tests.conftest import datasets_dir
from tests.integrations_fixtures import RunningPrometheus, prometheus_with_case, prometheus_with_openmetrics

pytestmark = pytest.mark.prometheus

T0 = 1_700_000_040.0
STEP = 15.0
SPAN = 3600.0
ALERT_AT = T0 + 3000.0
FAULT_AT = ALERT_AT - 150.0
CORES = {"front-end": 0.30, "carts": 0.15, "orders": 0.20, "payment": 0.10}
CULPRIT = "payment"


def cadvisor_openmetrics(path: Path, *, otel: bool, fault_at: float = FAULT_AT,
                         active_since: float | None = None) -> Path:
    """An hour of cAdvisor + kube-state-metrics series as a kubelet exposes them (``job="kubelet"``, the pod's
    own cgroup as ``container=""``, the pause container as ``POD``), optionally with OpenTelemetry HTTP server
    metrics whose ``job`` names the service. ``payment`` burns six times its CPU from ``fault_at``. With
    ``active_since``, Prometheus' ``ALERTS_FOR_STATE`` of the front-end alert holds that time from then on."""
    rng = np.random.default_rng(14)
    times = T0 + STEP * np.arange(int(SPAN / STEP) + 1)
    fams: dict[str, list[str]] = {}

    def emit(name: str, labels: dict[str, str], values: np.ndarray) -> None:
        lab = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        fams.setdefault(name, []).extend(
            f"{name}{{{lab}}} {v!r} {int(t)}\n" for t, v in zip(times.tolist(), values.tolist(), strict=True))

    for svc, cores in CORES.items():
        pod = f"{svc}-7d9f8c6b5-{svc[:2]}k9p"
        base = {"job": "kubelet", "namespace": "shop", "pod": pod}
        rate = cores * (1 + 0.05 * rng.standard_normal(len(times)))
        if svc == CULPRIT:
            rate = np.where(times >= fault_at, rate * 6, rate)
        cpu = np.cumsum(rate * STEP)
        emit("container_cpu_usage_seconds_total", {**base, "container": svc}, cpu)
        emit("container_cpu_usage_seconds_total", {**base, "container": ""}, cpu * 1.01)
        emit("container_cpu_usage_seconds_total", {**base, "container": "POD"}, np.cumsum(np.full(len(times), 0.015)))
        emit("container_memory_working_set_bytes", {**base, "container": svc},
             2e8 * (1 + 0.01 * rng.standard_normal(len(times))))
        emit("kube_pod_container_status_restarts_total",
             {"job": "kube-state-metrics", "namespace": "shop", "pod": pod, "container": svc}, np.zeros(len(times)))
        if otel:
            rps = 10 * (1 + 0.05 * rng.standard_normal(len(times)))
            lat = 0.05 * (1 + 0.05 * rng.standard_normal(len(times)))
            if svc == CULPRIT:
                lat = np.where(times >= fault_at + 30, lat * 8, lat)
            emit("http_server_request_duration_seconds_count", {"job": svc}, np.cumsum(rps * STEP))
            emit("http_server_request_duration_seconds_sum", {"job": svc}, np.cumsum(rps * lat * STEP))
    if active_since is not None:
        held = times >= active_since
        fams["ALERTS_FOR_STATE"] = [
            f'ALERTS_FOR_STATE{{alertname="FrontEndLatencyHigh",service="front-end"}} {active_since!r} {int(t)}\n'
            for t in times[held].tolist()]
    with path.open("w") as fh:
        for name in sorted(fams):
            fh.write(f"# TYPE {name} gauge\n")
            fh.writelines(fams[name])
        fh.write("# EOF\n")
    return path


def _alert(path: Path, alertname: str = "FrontEndLatencyHigh") -> Path:
    path.write_text(json.dumps({"alerts": [{
        "status": "firing", "labels": {"alertname": alertname, "service": "front-end", "cluster": "eu-1"},
        "annotations": {"summary": "front-end p99 latency high"},
        "startsAt": datetime.fromtimestamp(ALERT_AT, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}]}))
    return path


@pytest.fixture(scope="module")
def cadvisor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningPrometheus, Path]]:
    work = tmp_path_factory.mktemp("cadvisor")
    with prometheus_with_openmetrics(cadvisor_openmetrics(work / "c.om", otel=False), work) as prom:
        yield prom, work


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningPrometheus, Path]]:
    work = tmp_path_factory.mktemp("mixed")
    with prometheus_with_openmetrics(cadvisor_openmetrics(work / "c.om", otel=True), work) as prom:
        yield prom, work


LATE_FAULT_AT = ALERT_AT - 600.0  # a `for: 10m` rule: the alert fires ten minutes after its condition held


@pytest.fixture(scope="module")
def late(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningPrometheus, Path]]:
    work = tmp_path_factory.mktemp("late")
    om = cadvisor_openmetrics(work / "c.om", otel=False, fault_at=LATE_FAULT_AT, active_since=LATE_FAULT_AT + 30)
    with prometheus_with_openmetrics(om, work) as prom:
        yield prom, work


def _config(path: Path, metrics: dict[str, Any], topology: dict[str, list[str]] | None = None) -> Path:
    path.write_text(json.dumps({"sources": {"metrics": {"min_step_s": 15, **metrics}},
                                "triage": {"topology": topology or {}}}))
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    rc = main(list(argv))
    return rc, json.loads(capsys.readouterr().out)


def test_cadvisor_names_with_a_mismatched_catalog_abstain_and_name_the_catalog(
        cadvisor: tuple[RunningPrometheus, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prom, _ = cadvisor
    alert = _alert(tmp_path / "alert.json")
    cfg = _config(tmp_path / "otel.yaml", {"url": prom.url, "catalog": "otel"})
    rc, out = _run(capsys, "investigate", "--alert", str(alert), "--config", str(cfg), "--json")
    assert rc == 0 and out["abstained"] and out["causes"] == [] and out["ranked_services"] == []
    line = ("metrics: 0 of 9 catalog signals found for profile otel; these exist: container_cpu_usage_seconds_total, "
            "container_memory_working_set_bytes, kube_pod_container_status_restarts_total (3 names); "
            "set sources.metrics.catalog")
    assert line in out["missing"] and "profile otel" in out["reason"]
    assert out["coverage"]["profiles"] == [{"profile": "otel", "service_label": "job", "signals": 9, "found": [],
                                            "fallback": False}]
    # the right catalog with a label no series carries: still no ranking, and never the empty name
    cfg = _config(tmp_path / "label.yaml", {"url": prom.url, "catalog": "kubernetes", "service_label": "service"})
    rc, out = _run(capsys, "investigate", "--alert", str(alert), "--config", str(cfg), "--json")
    assert out["abstained"] and "" not in out["ranked_services"]
    assert any("carry no service label `service`" in m for m in out["missing"])
    assert out["coverage"]["sources"][0]["unnamed"] == 3


def test_the_matching_catalog_ranks_the_culprit_over_an_old_alert(
        cadvisor: tuple[RunningPrometheus, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prom, _ = cadvisor
    alert = _alert(tmp_path / "alert.json")
    cfg = _config(tmp_path / "k8s.yaml", {"url": prom.url, "catalog": "kubernetes"})
    rc, out = _run(capsys, "investigate", "--alert", str(alert), "--config", str(cfg), "--json")
    assert rc == 0 and not out["abstained"] and out["ranked_services"][0] == CULPRIT
    assert out["scope"]["now"] == ALERT_AT + 900  # the alert's start + the lookahead, not the wall clock
    assert set(out["coverage"]["sources"][0]["services"]) == set(CORES)


def test_a_late_alert_starts_the_incident_where_its_rule_first_held(
        late: tuple[RunningPrometheus, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ten minutes of the fault lie before the alert: anchored a minute before it, they would be the baseline.
    Prometheus says since when the rule held (``ALERTS_FOR_STATE``, matched despite the alert's external
    ``cluster`` label); the incident starts a minute before that."""
    prom, _ = late
    cfg = _config(tmp_path / "k8s.yaml", {"url": prom.url, "catalog": "kubernetes"})
    rc, out = _run(capsys, "investigate", "--alert", str(_alert(tmp_path / "alert.json")), "--config", str(cfg),
                   "--json")
    assert rc == 0 and not out["abstained"] and out["ranked_services"][0] == CULPRIT
    assert out["scope"]["incident"][0] == LATE_FAULT_AT + 30 - 60 and out["scope"]["onset"] == ALERT_AT
    assert any(s["looked_at"].startswith("Start: the alert's rule has held since -570s") for s in out["steps"])
    # an alert whose rule state Prometheus does not hold keeps the assumed minute, and misses the fault
    rc, other = _run(capsys, "investigate", "--alert", str(_alert(tmp_path / "other.json", "OtherAlert")),
                     "--config", str(cfg), "--json")
    assert other["scope"]["incident"][0] == ALERT_AT - 60
    assert other["abstained"] or other["ranked_services"][:1] != [CULPRIT]


async def _grouping(url: str, spec: str) -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """The services each signal's query returns, and each profile's label and found count."""
    http = HttpSource("prometheus", HttpConfig(base_url=url, timeout_s=10, retries=1))
    src = PrometheusSource(PrometheusClient(http), Catalog.load(spec), base_url=url, min_step_s=15)
    window = TimeWindow(T0 + 600, T0 + SPAN)
    try:
        inv = await src.inventory()
        services = {sig: {s.service for s in await src.signal(sig, window)} for sig in inv.signals}
        return services, [(p.profile, p.service_label, len(p.found)) for p in inv.profiles]
    finally:
        await src.aclose()


def test_two_profiles_each_keep_their_service_label(
        mixed: tuple[RunningPrometheus, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prom, _ = mixed
    for spec in ("kubernetes,otel", "otel,kubernetes"):
        services, profiles = asyncio.run(_grouping(prom.url, spec))
        for signal in ("cpu", "memory", "restarts", "request_rate", "latency_avg"):
            assert services[signal] == set(CORES), (spec, signal)
        assert profiles == sorted([("kubernetes", "container", 3), ("otel", "job", 3)],
                                  key=lambda x: spec.index(x[0]))
        cfg = _config(tmp_path / "both.yaml", {"url": prom.url, "catalog": spec})
        rc, out = _run(capsys, "investigate", "--alert", str(_alert(tmp_path / "alert.json")), "--config", str(cfg),
                       "--json")
        assert rc == 0 and out["ranked_services"][0] == CULPRIT
        assert "kubelet" not in out["ranked_services"] and "kube-state-metrics" not in out["ranked_services"]
        assert all(e["service"] in CORES for e in out["evidence"])


def test_sources_check_prints_the_coverage(
        cadvisor: tuple[RunningPrometheus, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prom, _ = cadvisor
    at = str(ALERT_AT)
    bad = _config(tmp_path / "otel.yaml", {"url": prom.url, "catalog": "otel"})
    assert main(["sources", "check", "--config", str(bad), "--at", at]) == 1
    text = capsys.readouterr().out
    assert "profile otel (service label job): 0 of 9 signals found" in text
    assert "these exist: container_cpu_usage_seconds_total" in text and "Not ready:" in text
    good = _config(tmp_path / "k8s.yaml", {"url": prom.url, "catalog": "kubernetes,otel"})
    assert main(["sources", "check", "--config", str(good), "--at", at, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ready"] and out["reason"] == ""
    metrics = out["coverage"]["sources"][0]
    assert set(metrics["services"]) == set(CORES) and metrics["samples"]["window"] > 0
    assert [p["found"] for p in out["coverage"]["profiles"]] == [["cpu", "memory", "restarts"], []]
    # a window after the data: not ready, and it says where the data ends
    assert main(["sources", "check", "--config", str(good), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert not out["ready"] and any("3 catalog signal(s) exist but none has a sample between" in m
                                    for m in out["coverage"]["missing"])
    assert main(["sources", "check", "--config", str(good), "--at", "later"]) == 2


# ---------------------------------------------------------------- replay and live agree


def _same_top_cause(case: Path, work: Path, capsys: pytest.CaptureFixture[str]) -> str:
    rc_ = ReplayCase(case)
    topology: dict[str, list[str]] = {}
    if rc_.has_topology:
        for e in rc_.edges():
            topology.setdefault(e.caller, []).append(e.callee)
    with prometheus_with_case(case, work) as prom:
        cfg = _config(work / "onwatch.yaml", {"url": prom.url, "catalog": "replay", "min_step_s": 1}, topology)
        rc, replay = _run(capsys, "investigate", "--case", str(case), "--json")
        assert rc == 0 and replay["causes"]
        for extra in ([], ["--at", str(rc_.now)]):
            rc, live = _run(capsys, "investigate", "--alert", str(case / "alert.json"), "--config", str(cfg),
                            "--json", *extra)
            assert rc == 0
            assert live["ranked_services"][0] == replay["ranked_services"][0], (extra, live["reason"])
            assert live["causes"][0]["kind"] == replay["causes"][0]["kind"]
            assert live["scope"]["onset"] == replay["scope"]["onset"]
    return str(replay["ranked_services"][0])


@pytest.mark.datasets
def test_a_dataset_case_through_prometheus_ranks_like_replay(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    case = datasets_dir() / "sockshop" / "cases" / "sockshop-001"
    if not case.is_dir():
        pytest.skip("sockshop-001 is not in the datasets")
    assert _same_top_cause(case, tmp_path, capsys)


def test_the_demo_scenario_through_prometheus_ranks_like_replay(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's simulated shop (no dataset needed), metrics and topology only: the part Prometheus holds."""
    full = simulate(7, anchor=1_700_003_600.0).write(tmp_path / "full")
    case = tmp_path / "metrics-only" / full.name
    case.mkdir(parents=True)
    for name in ("case.json", "alert.json", "metrics.csv", "topology.json"):
        shutil.copy(full / name, case / name)
    work = tmp_path / "prom"
    work.mkdir()
    assert _same_top_cause(case, work, capsys) == "payments-api"
