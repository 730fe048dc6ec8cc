"""The engine on small crafted cases: one per hypothesis kind, abstention, a failing source, determinism."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.investigate.cli import run_case
from bot.investigate.engine import investigate
from bot.investigate.report import Report, render_text
from bot.investigate.scope import scope_from_alertmanager
from integrations.base import ClusterEvent, LogLine, SourceTimeout, TimeWindow
from integrations.replay import ReplayCase, replay_sources
from tests.investigate_fixtures import ALERT, INJECT, T0, add_on, chain, make_case, up_on

RUNBOOKS = Path(__file__).resolve().parents[1] / "runbooks"
SYMPTOM = add_on("frontend", "latency_p90", 0.2, INJECT + 30)  # what the page was about, always later


def _top(report: Report) -> tuple[str, str]:
    assert report.causes, report.to_dict()
    return report.causes[0].service, report.causes[0].kind


@pytest.mark.parametrize(
    ("effect", "service", "kind"),
    [
        (chain(up_on("payment", "cpu", 4.5), add_on("payment", "latency_p90", 0.05), SYMPTOM),
         "payment", "cpu_saturation"),
        (chain(up_on("catalog", "memory", 3.0, ramp=True), SYMPTOM), "catalog", "memory_saturation"),
        (chain(up_on("db", "disk_write", 20.0), add_on("db", "latency_p90", 0.1),
               add_on("orders", "latency_p90", 0.1, INJECT + 20), SYMPTOM), "db", "disk_saturation"),
        (chain(up_on("cache", "network_tx", 15.0), SYMPTOM), "cache", "network_saturation"),
        (chain(add_on("db", "error_rate", 0.4), add_on("orders", "error_rate", 0.3, INJECT + 20),
               add_on("frontend", "error_rate", 0.2, INJECT + 30), SYMPTOM), "db", "dependency_failure"),
        (chain(up_on("frontend", "request_rate", 5.0), SYMPTOM), "frontend", "traffic_surge"),
    ],
    ids=["cpu", "memory", "disk", "network", "dependency", "traffic"],
)
async def test_each_kind_is_found(tmp_path: Path, effect, service: str, kind: str) -> None:
    report = await run_case(make_case(tmp_path, effect))
    assert _top(report) == (service, kind)
    assert report.ranked_services[0] == service
    assert not report.abstained
    cause = report.causes[0]
    assert 0 < cause.confidence <= 1
    ids = {e.id for e in report.evidence}
    assert cause.evidence and set(cause.evidence) <= ids


async def test_node_problem(tmp_path: Path) -> None:
    node = [("orders", "node_cpu_usage_rate_pct"), ("payment", "node_cpu_usage_rate_pct")]
    for s in ("frontend", "catalog", "db", "cache"):
        node.append((s, "node_cpu_usage_rate_pct"))
    effect = chain(
        add_on("orders", "node_cpu_usage_rate_pct", 45.0), add_on("payment", "node_cpu_usage_rate_pct", 45.0),
        add_on("orders", "latency_p90", 0.1, INJECT + 10), add_on("payment", "latency_p90", 0.1, INJECT + 10),
        SYMPTOM,
    )
    report = await run_case(make_case(tmp_path, effect, extra_series=node))
    svc, kind = _top(report)
    assert kind == "node_problem" and svc in ("orders", "payment")


async def test_deploy_before_the_onset(tmp_path: Path) -> None:
    changes = [
        {"service": "orders", "time": INJECT - 90, "kind": "deploy", "version": "v2", "previous_version": "v1",
         "description": "orders v2", "url": "https://git.example/orders/pull/7", "diff_url": ""},
        {"service": "catalog", "time": T0 + 10, "kind": "config", "version": "", "previous_version": ""},
    ]
    effect = chain(add_on("orders", "error_rate", 0.3), add_on("frontend", "error_rate", 0.2, INJECT + 20), SYMPTOM)
    report = await run_case(make_case(tmp_path, effect, changes=changes))
    assert _top(report) == ("orders", "deploy")
    change_ev = [e for e in report.evidence if e.kind == "change"]
    assert change_ev and change_ev[0].link == "https://git.example/orders/pull/7"
    assert change_ev[0].id in report.causes[0].evidence


async def test_new_error_pattern_in_logs(tmp_path: Path) -> None:
    logs: list[tuple[float, str, str, str]] = []
    for i in range(0, 1800, 5):
        t = T0 + i
        logs.append((t, "orders", "INFO", f"served order {i} in {i % 17} ms"))
        logs.append((t + 1, "catalog", "INFO", f"listed {i % 9} items"))
        if t >= INJECT:
            logs.append((t + 2, "payment", "ERROR", f"connection refused to ledger:5432 after {i % 50} ms"))
    report = await run_case(make_case(tmp_path, SYMPTOM, logs=logs))
    svc, kind = _top(report)
    assert (svc, kind) == ("payment", "error_pattern")
    ev = [e for e in report.evidence if e.id in report.causes[0].evidence]
    assert any("connection refused" in e.summary for e in ev)


async def test_abstains_on_flat_data(tmp_path: Path) -> None:
    report = await run_case(make_case(tmp_path, None))
    assert report.abstained
    assert report.steps[-1].concluded.startswith("not enough evidence")
    assert "Not enough evidence" in render_text(report)


class _TimingOutLogs:
    name = "loki"

    async def error_counts(self, window: TimeWindow, services: Sequence[str] | None = None):
        raise SourceTimeout("loki", "timed out after 10 s")

    async def lines(self, window: TimeWindow, services: Sequence[str] | None = None, limit: int = 1000) -> list[LogLine]:
        raise SourceTimeout("loki", "timed out after 10 s")

    def link(self, service: str, window: TimeWindow) -> str:
        return ""


async def test_failing_source_is_missing_evidence(tmp_path: Path) -> None:
    case = ReplayCase(make_case(tmp_path, chain(up_on("payment", "cpu", 4.5), SYMPTOM)))
    sources = replay_sources(case)
    sources.logs = _TimingOutLogs()
    scope = scope_from_alertmanager(case.alert_payload, now=case.now)
    report = await investigate(scope, sources)
    assert any("loki" in m and "timed out" in m for m in report.missing)
    assert _top(report) == ("payment", "cpu_saturation")


async def test_same_data_same_answer(tmp_path: Path) -> None:
    logs: list[tuple[float, str, str, str]] = [
        (T0 + i, "orders", "ERROR" if i > 1200 else "INFO", f"request {i} done") for i in range(0, 1800, 7)]
    case = make_case(tmp_path, chain(up_on("payment", "cpu", 4.5), SYMPTOM), logs=logs)
    a = json.dumps((await run_case(case)).to_dict(), sort_keys=True)
    b = json.dumps((await run_case(case)).to_dict(), sort_keys=True)
    assert a == b


async def test_scope_windows_follow_the_alert(tmp_path: Path) -> None:
    case = ReplayCase(make_case(tmp_path, None))
    scope = scope_from_alertmanager(case.alert_payload, now=case.now)
    assert scope.onset == ALERT and scope.symptoms == ("frontend",)
    assert scope.baseline.end == scope.incident.start < scope.onset <= scope.now


def test_a_callers_wait_is_split_among_its_callees() -> None:
    """A caller's client latency is one figure for all its calls: without traces each of its callees
    gets an even share; when traces show which calls grew, the wait is laid on those alone."""
    from bot.investigate.catalog import classify
    from bot.investigate.findings import Finding, caller_wait_findings

    wait = Finding("food", "client_latency_p90", classify("client_latency_p90"), "metrics", 400.0, 100.0,
                   False, 0.04, 12.0, "", "")
    callers_of = {c: {"food"} for c in ("travel", "delivery", "station", "train")}
    callees_of = {"food": set(callers_of)}
    even = {f.service: f for f in caller_wait_findings([wait], callers_of, callees_of)}
    assert set(even) == set(callers_of) and all(f.z == pytest.approx(100.0) for f in even.values())
    traced = caller_wait_findings([wait], callers_of, callees_of,
                                  {("food", "travel"): 40.0, ("food", "delivery"): 0.3, ("food", "station"): -1.0})
    assert [f.service for f in traced] == ["travel"] and traced[0].z == pytest.approx(400.0)
    # the caller's own calls are not traced, but another caller is seen waiting longer on one of them
    other = caller_wait_findings([wait], callers_of, callees_of, {("gateway", "travel"): 25.0})
    assert [f.service for f in other] == ["travel"]


async def test_pool_exhaustion_in_logs_is_reported_as_its_failure_class(tmp_path: Path) -> None:
    logs: list[tuple[float, str, str, str]] = []
    for i in range(0, 1800, 5):
        t = T0 + i
        logs.append((t, "orders", "INFO", f"served order {i} in {i % 17} ms"))
        if t >= INJECT:
            logs.append((t + 2, "payment", "ERROR",
                         f"HikariPool-1 - Connection is not available, request timed out after {30000 + i % 7}ms"))
    report = await run_case(make_case(tmp_path, SYMPTOM, logs=logs))
    assert _top(report) == ("payment", "connection_pool_exhausted")


class _Cluster:
    """A cluster source with OOM kills (Kubernetes events) of one service after the fault began."""

    name = "kubernetes"

    def __init__(self, service: str, reason: str) -> None:
        self.service, self.reason = service, reason

    async def events(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[ClusterEvent]:
        return [ClusterEvent(time=INJECT + 60 * k, service=self.service, reason=self.reason,
                             message="container exceeded its memory limit", object=f"Pod/shop/{self.service}-0")
                for k in range(1, 4) if window.start <= INJECT + 60 * k <= window.end]


@pytest.mark.parametrize(("reason", "effect", "kind"), [
    ("OOMKilled", up_on("catalog", "memory", 3.0, ramp=True), "oom_kill"),  # sharpens the memory saturation
    ("Evicted", add_on("catalog", "latency_p90", 0.08), "pod_evicted"),  # a slow service whose pods are evicted
])
async def test_cluster_events_name_the_failure_class(tmp_path: Path, reason: str, effect, kind: str) -> None:
    case = ReplayCase(make_case(tmp_path, chain(effect, SYMPTOM)))
    sources = replay_sources(case)
    sources.cluster = _Cluster("catalog", reason)
    report = await investigate(scope_from_alertmanager(case.alert_payload, now=case.now), sources)
    assert _top(report) == ("catalog", kind)
    cause = report.causes[0]
    events = [e for e in report.evidence if e.id in cause.evidence and reason in e.summary]
    assert events, "the events themselves are cited as evidence"


async def test_memory_prior_from_a_past_incident_is_small_and_named(tmp_path: Path) -> None:
    from bot.investigate.engine import PastIncident

    case = ReplayCase(make_case(tmp_path, chain(up_on("payment", "cpu", 4.5), SYMPTOM)))
    scope = scope_from_alertmanager(case.alert_payload, now=case.now)
    plain = await investigate(scope, replay_sources(case))
    past = [PastIncident("INC-OLD", ("frontend",), "payment", "cpu_saturation", "frontend slow", grade="confirmed")]
    recalled = await investigate(scope, replay_sources(case), past)
    assert _top(plain) == _top(recalled) == ("payment", "cpu_saturation")
    assert recalled.causes[0].confidence >= plain.causes[0].confidence
    assert recalled.to_dict()["similar"][0]["incident_id"] == "INC-OLD" and "similar" not in plain.to_dict()
    # a past incident never invents a cause the present data does not show
    unrelated = [PastIncident("INC-X", ("frontend",), "cache", "network_saturation", "", grade="confirmed")]
    other = await investigate(scope, replay_sources(case), unrelated)
    assert all(c.service != "cache" or c.kind != "network_saturation" for c in other.causes[:1])


async def test_an_oom_kill_meets_the_shipped_auto_restart_policy(tmp_path: Path) -> None:
    """The engine and the shipped catalog agree: a clear OOM kill is a class the restart runbook may auto-run."""
    from bot.config import Settings
    from bot.remediate.catalog import load_catalog

    case = ReplayCase(make_case(tmp_path, chain(up_on("catalog", "memory", 3.0, ramp=True), SYMPTOM)))
    sources = replay_sources(case)
    sources.cluster = _Cluster("catalog", "OOMKilled")
    report = await investigate(scope_from_alertmanager(case.alert_payload, now=case.now), sources)
    cause = report.causes[0]
    catalog = load_catalog(RUNBOOKS, Settings())
    restart = catalog.get("restart-deployment")
    assert restart is not None
    assert restart.auto is not None and cause.kind in restart.auto.classes
    assert cause.confidence >= restart.auto.min_confidence and not report.abstained


def test_cli_alert_with_config_runs_on_the_configured_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`onwatch investigate --alert FILE --config FILE --json`: the sources come from the settings file."""
    from bot.cli import main

    case = make_case(tmp_path, chain(up_on("payment", "cpu", 4.5), SYMPTOM))
    cfg = tmp_path / "onwatch.yaml"
    cfg.write_text(f"sources:\n  replay: {{path: {case}}}\n")
    assert main(["investigate", "--alert", str(case / "alert.json"), "--config", str(cfg), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"abstained", "ranked_services", "causes", "evidence", "steps", "missing"}
    assert out["ranked_services"][0] == "payment" and out["causes"][0]["kind"] == "cpu_saturation"
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["investigate", "--alert", str(tmp_path / "bad.json"), "--config", str(cfg)]) == 2
    assert "cannot read input" in capsys.readouterr().err


def _rarely_called_cache(svc: str, sig: str, t, v):  # type: ignore[no-untyped-def]
    """A cache called ~3 times a minute with a wide latency distribution (p50 0.35 s, p90/p99 ~2.3 s):
    after the fault its median happens to land on the slow mode, as a median of 3 requests can."""
    import numpy as np

    if svc != "cache":
        return v
    if sig == "request_rate":
        return np.full_like(v, 0.05)
    if sig == "latency_p50":
        return np.where(t >= INJECT, 2.3, 0.35)
    if sig in ("latency_p90", "latency_p99"):
        return np.full_like(v, 2.3)
    return v


async def test_a_rarely_called_services_median_landing_on_its_slow_mode_is_not_the_cause(tmp_path: Path) -> None:
    effect = chain(add_on("payment", "latency_p90", 0.08), _rarely_called_cache, SYMPTOM)
    report = await run_case(make_case(tmp_path, effect, extra_series=[("cache", "latency_p50"), ("cache", "latency_p99")]))
    assert _top(report)[0] == "payment"
    assert not any(e.service == "cache" and e.signal == "latency_p50" for e in report.evidence)
