"""``onwatch demo --scenario drift``: a slow drift in the simulated shop gives exactly one early warning, before the
alert, which the incident's investigation then starts from; the default scenario is unchanged and stays quiet."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import select

from bot.config import DetectSettings
from bot.demo.run import DRIFT_DETECT, DemoResult, main, run_demo, scan_ticks, write_runbooks
from bot.demo.simulate import SYMPTOM, Scenario, ShopCase, simulate, symptom_p99
from bot.demo.terminal import TerminalAdapter, TerminalWatchPoster
from bot.detect.scan import scan
from bot.messages.model import Message, Text
from bot.remediate.catalog import load_catalog
from bot.store.db import Database
from bot.store.models import AuditEvent, Evidence, WatchItem
from integrations.replay import ReplayCase, replay_sources

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = 1_760_000_000.0
SEED = 7


def _series(shop: ShopCase, service: str, signal: str) -> list[tuple[float, float]]:
    return [(t, v) for t, s, g, v in shop.metrics if s == service and g == signal]


@pytest.fixture(scope="module")
def drift() -> ShopCase:
    return simulate(SEED, anchor=ANCHOR, scenario=Scenario.DRIFT)


# ----------------------------------------------------------------------------- the simulation


def test_the_default_scenario_is_byte_for_byte_what_it_was(tmp_path: Path) -> None:
    """The rollout bundle of seed 5 as it was before the drift scenario existed (the other demo tests pin it)."""
    out = simulate(5, anchor=ANCHOR).write(tmp_path)
    pinned = {
        "alert.json": "ea77d1b4029b7b46102a95cc3f05b71f8e54f8e687ce387008babc526d3bcaf7",
        "case.json": "02686ca57ee54ca3786067fbbbd0f6f76ee665c7c3fab5d94b2496e93bb24bb2",
        "changes.json": "d66d0eaff7d5b02ae68f26f687c418a525d1334f48dfaa630af0e608cfc12be5",
        "logs.csv": "6469c612e3e6ec8195726b5682fed6833931b5fc2cacf710a3d212a2d8201792",
        "metrics.csv": "a537b7b6375d989bec80a5e5e08d0e8160824d8d5ce93472ef5074565ddb198e",
        "topology.json": "370c5317cfee92c6687992d494f7505ff831cf91ccf10eebf35af666409168c2",
        "traces.csv": "1736fd34b9cf4143f7caf6cab02be8fce88858cc128ca16cf4d4801784050a50",
    }
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()} == pinned


def test_drift_is_deterministic(tmp_path: Path, drift: ShopCase) -> None:
    again = simulate(SEED, anchor=ANCHOR, scenario="drift")
    assert again.metrics == drift.metrics and again.logs == drift.logs and again.alert == drift.alert
    assert simulate(SEED + 1, anchor=ANCHOR, scenario="drift").metrics != drift.metrics
    with pytest.raises(ValueError):
        simulate(SEED, anchor=ANCHOR, scenario="nonsense")
    with pytest.raises(ValueError):
        simulate(SEED, anchor=ANCHOR, restart_at=ANCHOR)  # the rollout scenario models no restart


def test_checkout_creeps_up_for_tens_of_minutes_then_pages(drift: ShopCase) -> None:
    tl = drift.timeline
    assert tl.leak is not None
    knee, alert = tl.leak.knee, tl.detection
    assert tl.end - tl.start == 3 * 3600, "three hours: an hour of baseline inside a two-hour lookback, then more"
    assert 25 * 60 <= alert - knee <= 45 * 60, "a creep over tens of minutes, not a step"
    p99 = symptom_p99(drift, tl.start)
    healthy = [v for t, v in p99 if t < knee]
    assert max(healthy) < 0.3
    # the median of each ten minutes climbs: a ramp, and no ten minutes of it pages
    blocks = [float(np.median([v for t, v in p99 if knee + i * 600 <= t < knee + (i + 1) * 600])) for i in range(3)]
    assert blocks[0] < blocks[1] < blocks[2] < 2.0
    assert blocks[0] < 3 * float(np.median(healthy)), "the first minutes of the drift are barely visible"
    assert min(v for t, v in p99 if alert - 60 <= t <= alert) > 2.0, "above 2 s for a minute: the rule fires"
    assert float(np.median([v for t, v in p99 if t >= alert])) > 2.0
    # only checkout is slow: what it calls, and the database, are as usual
    for svc in ("payments-api", "cart", "shipping"):
        series = _series(drift, svc, "latency_p99")
        before = [v for t, v in series if t < knee]
        after = [v for t, v in series if knee <= t <= alert]
        assert float(np.median(after)) < 1.3 * float(np.median(before)), svc


def test_the_drift_bundle_names_no_cause(tmp_path: Path, drift: ShopCase) -> None:
    out = drift.write(tmp_path)
    text = "\n".join(p.read_text() for p in out.iterdir()).lower()
    for word in ("root cause", "culprit", "inject", "fault", "leak", "caused by", "scenario", "drift"):
        assert word not in text, word
    rc = ReplayCase(out)
    assert rc.detection_time == drift.timeline.detection
    assert [c.kind for c in rc.change_events() if c.service == SYMPTOM] == ["deploy"]


def test_a_restart_or_a_rollback_of_checkout_ends_the_drift(drift: ShopCase) -> None:
    at = drift.timeline.end + 20
    for kw in ({"restart_at": at}, {"rollback_at": at}):
        long = simulate(SEED, anchor=ANCHOR, scenario="drift", until=at + 240, **kw)
        assert [r for r in long.metrics if r[0] <= drift.timeline.end] == drift.metrics, "the same shop, run on"
        late = [v for _, v in symptom_p99(long, at + 90)]
        assert late and max(late) < 0.5
        kinds = {c["kind"] for c in long.changes if c["service"] == SYMPTOM and c["time"] >= at}
        assert kinds == ({"other"} if "restart_at" in kw else {"rollback"})


async def _scan_findings(shop: ShopCase, folder: Path, settings: DetectSettings,
                         ticks: list[float]) -> dict[tuple[str, str], float]:
    """The first tick at which each (service, signal) was a finding of the leader's scan."""
    case = ReplayCase(shop.write(folder))
    first: dict[tuple[str, str], float] = {}
    for tick in ticks:
        src = replay_sources(case)
        src.now = tick
        for f in (await scan(src, settings)).findings:
            first.setdefault((f.service, f.signal), tick)
    return first


async def test_the_scan_sees_only_checkout_and_only_after_the_drift_began(tmp_path: Path, drift: ShopCase) -> None:
    settings = DetectSettings(**DRIFT_DETECT)
    ticks = scan_ticks(drift, settings.every_s, settings.lookback_s)
    assert len(ticks) > 30 and ticks[-1] < drift.timeline.detection
    first = await _scan_findings(drift, tmp_path, settings, ticks)
    assert drift.timeline.leak is not None
    assert {svc for svc, _ in first} == {SYMPTOM}, first
    assert min(first, key=lambda k: first[k]) == (SYMPTOM, "latency_p99"), "the p99 is what moves first"
    assert drift.timeline.leak.knee < first[(SYMPTOM, "latency_p99")] < drift.timeline.detection - 10 * 60


async def test_a_healthy_history_stays_quiet(tmp_path: Path, drift: ShopCase) -> None:
    """Twenty minutes of scans over the healthy shop (a harmless deploy and config change in its history, traffic
    rising through the evening) before checkout's heap reaches its knee: nothing to warn about."""
    settings = DetectSettings(**DRIFT_DETECT)
    assert drift.timeline.leak is not None
    ticks = [t for t in scan_ticks(drift, settings.every_s, settings.lookback_s) if t < drift.timeline.leak.knee]
    assert len(ticks) >= 15
    assert await _scan_findings(drift, tmp_path, settings, ticks) == {}


# ----------------------------------------------------------------------------- the terminal's watch poster


async def test_terminal_watch_poster_posts_in_the_channel_and_replies_under_it(tmp_path: Path) -> None:
    out = io.StringIO()
    poster = TerminalWatchPoster(TerminalAdapter(out=out, chart_dir=tmp_path))
    ref = await poster.start(Message(blocks=(Text("Early warning: p99 of checkout", "heading"),), fallback="w"))
    assert ref is not None and ref.platform == "terminal" and ref.channel == "#incidents"
    assert await poster.reply(ref, Message(blocks=(Text("Escalated to incident INC-1"),), fallback="e"))
    text = out.getvalue()
    assert "#incidents · EARLY WARNING" in text and "Early warning: p99 of checkout" in text
    assert text.index("Escalated to incident INC-1") > text.index("Early warning: p99")
    assert len(poster.started) == 1 and len(poster.replies) == 1


def test_drift_runbooks_add_a_restart(tmp_path: Path) -> None:
    cat = load_catalog(write_runbooks(tmp_path / "drift", 12345, Scenario.DRIFT))
    kinds = {rb.id: set(rb.match.kinds) for rb in cat}
    assert kinds["demo-restart-deployment"] == {"cpu_saturation", "memory_saturation"}
    assert "deploy" in kinds["demo-rollback-deploy"]
    assert len(list(load_catalog(write_runbooks(tmp_path / "rollout", 12345)))) == 1


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def drift_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, str, Path]:
    """The drift demo, run once in this process on a kept temporary SQLite database."""
    work = tmp_path_factory.mktemp("drift-demo")
    saved = os.environ.pop("ONWATCH_DATABASE__URL", None)
    try:
        out = io.StringIO()
        res = asyncio.run(run_demo(SEED, out=out, keep=True, colour=False, workdir=work, scenario=Scenario.DRIFT))
    finally:
        if saved is not None:
            os.environ["ONWATCH_DATABASE__URL"] = saved
    return res, out.getvalue(), work


async def test_drift_demo_warns_once_before_the_alert_and_investigates_from_it(
        drift_run: tuple[DemoResult, str, Path]) -> None:
    res, out, work = drift_run
    assert res.scenario == "drift" and res.scans > 30
    assert res.alert_at is not None
    (warning,) = res.warnings
    assert (warning.service, warning.signal) == (SYMPTOM, "latency_p99")
    assert warning.opened_at < res.alert_at - 10 * 60, "well before anyone is paged"
    assert out.count("EARLY WARNING") == 1, "posted once, though the scan found it again at later ticks"
    assert res.outcomes.get("held", 0) >= 10 and res.outcomes.get("opened") == 1
    assert "onwatch noticed checkout's p99 latency drifting up at" in out and "minutes before the alert" in out
    # the investigation started from it
    (ew,) = res.early_warnings
    assert ew["watch_item"] == warning.id and ew["service"] == SYMPTOM and ew["signal"] == "latency_p99"
    assert out.index("EARLY WARNING") < out.index("The alert arrives") < out.index("Escalated to incident")
    db = Database(f"sqlite:///{work / 'onwatch.db'}")
    try:
        async with db.session() as s:
            items = (await s.exec(select(WatchItem))).all()
            opened = (await s.exec(select(AuditEvent).where(AuditEvent.action == "watch.opened"))).all()
            evidence = (await s.exec(select(Evidence).where(Evidence.source == "watch"))).all()
    finally:
        await db.dispose()
    (item,) = items
    assert item.status == "escalated" and item.incident_id == res.incident_id and len(item.posts) == 1
    assert len(opened) == 1
    assert [e.investigation_id for e in evidence] == [res.investigation_id]
    # and the rest of the demo still runs: approval, the restart of checkout, verification, audit
    assert res.execution == "succeeded" and res.verification == "recovered"
    assert res.audit_ok


async def test_the_default_scenario_warns_of_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rollout scenario runs no scheduler (an hour of history is less than the scan's lookback): its page is
    the first anyone hears, as before, and nothing is posted in the incident channel."""
    monkeypatch.delenv("ONWATCH_DATABASE__URL", raising=False)
    out = io.StringIO()
    res = await run_demo(3, out=out, keep=True, colour=False, workdir=tmp_path)
    assert res.scenario == "rollout" and res.scans == 0 and res.warnings == [] and res.early_warnings == []
    assert "EARLY WARNING" not in out.getvalue() and "scheduler" not in out.getvalue()
    db = Database(f"sqlite:///{tmp_path / 'onwatch.db'}")
    try:
        async with db.session() as s:
            assert (await s.exec(select(WatchItem))).all() == []
    finally:
        await db.dispose()
    assert res.verification == "recovered" and res.audit_ok


def test_demo_refuses_an_unknown_scenario(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONWATCH_")}
    env.update(NO_COLOR="1", TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "demo", "--scenario", "nonsense"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--scenario" in proc.stderr and "nonsense" in proc.stderr
    assert "rollout" in proc.stderr and "drift" in proc.stderr
    assert not any(tmp_path.glob("onwatch-demo-*")), "nothing was started"
    assert main(Namespace(scenario="nonsense", seed=1)) == 2
