"""``onwatch demo``: the shop simulation is deterministic and writes a valid case bundle, the terminal
adapter renders the neutral thread, and the whole demo runs end to end naming payments-api."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from bot.demo.run import DEPLOYMENTS, pick_database, write_runbooks
from bot.demo.simulate import CULPRIT, SYMPTOM, ShopCase, simulate, symptom_p99
from bot.demo.terminal import TerminalAdapter, change_ratio, confidence_bar
from bot.messages.model import (
    Action,
    Cause,
    Chart,
    EvidenceItem,
    Facts,
    IncidentCard,
    Message,
    ProposalBlock,
    Step,
    Text,
)
from integrations.replay import ReplayCase

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = 1_760_000_000.0
FORMAT_LABELS = {"alertname", "severity", "service", "namespace", "system"}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def shop() -> ShopCase:
    return simulate(5, anchor=ANCHOR)


@pytest.fixture(scope="module")
def bundle(shop: ShopCase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shop.write(tmp_path_factory.mktemp("bundle"))


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_bundle_byte_for_byte(tmp_path: Path, bundle: Path) -> None:
    again = simulate(5, anchor=ANCHOR).write(tmp_path / "again")
    assert _files(again) == _files(bundle)
    other = simulate(6, anchor=ANCHOR).write(tmp_path / "other")
    assert _files(other)["metrics.csv"] != _files(bundle)["metrics.csv"]


def test_a_longer_run_shares_its_prefix_and_recovers_after_a_rollback(shop: ShopCase) -> None:
    short = shop
    rollback = ANCHOR + 30
    long = simulate(5, anchor=ANCHOR, rollback_at=rollback, until=rollback + 240)
    cut = short.timeline.end
    assert [r for r in long.metrics if r[0] <= cut] == short.metrics
    assert long.case["time_range"][1] == int(rollback + 240)
    late = [v for t, v in symptom_p99(long, rollback + 90)]
    assert late and max(late) < 0.5, "checkout latency recovers once payments-api is rolled back"
    assert any(c["kind"] == "rollback" and c["service"] == CULPRIT for c in long.changes)


def test_the_incident_shows_in_the_symptom_after_the_deploy(shop: ShopCase) -> None:
    tl = shop.timeline
    before = [v for t, v in symptom_p99(shop, tl.start) if t < tl.deploy]
    after = [v for t, v in symptom_p99(shop, tl.detection)]
    assert max(before) < 0.5 < 2.0 < min(after)
    assert tl.deploy < tl.detection < tl.end
    assert 30 <= tl.detection - tl.deploy <= 300, "the deploy lands a few minutes before the page"


# ----------------------------------------------------------------------------- FORMAT.md


def _csv(path: Path) -> tuple[list[str], list[list[str]]]:
    raw = path.read_bytes()
    assert b"\r\n" not in raw, f"{path.name}: line ends must be \\n"
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    return rows[0], rows[1:]


def _num(s: str) -> float:
    assert s != "", "an empty value"
    v = float(s)
    assert math.isfinite(v), f"not finite: {s}"
    return v


def test_bundle_layout_and_case_json(bundle: Path) -> None:
    assert {p.name for p in bundle.iterdir()} == {
        "case.json", "alert.json", "metrics.csv", "logs.csv", "traces.csv", "topology.json", "changes.json"}
    case = json.loads((bundle / "case.json").read_text())
    assert set(case) == {"id", "system", "dataset", "description", "time_range"}
    assert case["id"] == bundle.name
    assert re.fullmatch(rf"{case['dataset']}-\d{{3}}", case["id"])
    start, end = case["time_range"]
    assert isinstance(start, int) and isinstance(end, int) and start < end
    assert end - start == 3600


def test_metrics_sorted_finite_inside_range(bundle: Path) -> None:
    start, end = json.loads((bundle / "case.json").read_text())["time_range"]
    header, rows = _csv(bundle / "metrics.csv")
    assert header == ["time", "service", "signal", "value"]
    keys = [(_num(t), s, g) for t, s, g, _ in rows]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys), "one value per series and time"
    for t, svc, sig, v in rows:
        _num(v)
        assert start <= float(t) <= end
        assert svc and re.fullmatch(r"[a-z_][a-z0-9_]*", sig), sig
    signals = {g for _, _, g, _ in rows}
    assert {"cpu", "memory", "request_rate", "error_rate", "latency_p50", "latency_p90", "latency_p99"} <= signals
    # 15 s resolution for an hour: about 240 samples per series
    per = {}
    for _, s, g, _ in rows:
        per[(s, g)] = per.get((s, g), 0) + 1
    assert min(per.values()) >= 235


def test_logs_and_traces_follow_the_format(bundle: Path) -> None:
    start, end = json.loads((bundle / "case.json").read_text())["time_range"]
    _, metric_rows = _csv(bundle / "metrics.csv")
    services = {r[1] for r in metric_rows}
    header, logs = _csv(bundle / "logs.csv")
    assert header == ["time", "service", "level", "message", "trace_id"]
    times = [_num(r[0]) for r in logs]
    assert times == sorted(times) and start <= times[0] and times[-1] <= end
    for _, svc, level, msg, _tid in logs:
        assert svc in services
        assert level in {"DEBUG", "INFO", "WARN", "ERROR", "FATAL", ""}
        assert "\n" not in msg and msg
    header, spans = _csv(bundle / "traces.csv")
    assert header == ["trace_id", "span_id", "parent_span_id", "service", "operation", "start_time", "duration_ms",
                      "status"]
    starts = [_num(r[5]) for r in spans]
    assert starts == sorted(starts) and start <= starts[0] and starts[-1] <= end
    ids = {(r[0], r[1]) for r in spans}
    assert len(ids) == len(spans)
    for tid, _sid, parent, svc, op, _st, dur, status in spans:
        assert svc in services and op
        assert _num(dur) >= 0
        assert status in {"ok", "error", ""}
        assert parent == "" or (tid, parent) in ids
    topo = json.loads((bundle / "topology.json").read_text())
    for e in topo["edges"]:
        assert set(e) == {"from", "to"} and e["from"] in services and e["to"] in services


def test_alert_is_an_alertmanager_v4_payload(bundle: Path) -> None:
    case = json.loads((bundle / "case.json").read_text())
    payload = json.loads((bundle / "alert.json").read_text())
    assert payload["version"] == "4" and payload["status"] == "firing" and payload["receiver"] == "rca-bot"
    assert payload["externalURL"] == ""
    (alert,) = payload["alerts"]
    assert set(alert["labels"]) == FORMAT_LABELS
    assert alert["labels"]["service"] == SYMPTOM
    assert alert["labels"]["namespace"] == alert["labels"]["system"] == case["system"]
    assert set(alert["annotations"]) == {"summary", "description"}
    assert payload["commonLabels"] == alert["labels"]
    assert payload["commonAnnotations"] == alert["annotations"]
    assert alert["endsAt"] == "0001-01-01T00:00:00Z" and alert["generatorURL"] == ""
    assert re.fullmatch(r"[0-9a-f]{16}", alert["fingerprint"])
    starts = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00")).timestamp()
    assert alert["startsAt"].endswith("Z")
    assert case["time_range"][0] < starts < case["time_range"][1]
    # the replay source (and through it the engine) reads the bundle without complaint
    rc = ReplayCase(bundle)
    assert rc.detection_time == starts
    assert rc.signals() and rc.logs()[1] and rc.spans()[1] and rc.edges()
    changes = rc.change_events()
    deploy = [c for c in changes if c.service == CULPRIT and c.kind == "deploy"]
    assert len(deploy) == 1 and deploy[0].version == "v1.8.4" and deploy[0].previous_version == "v1.8.3"
    assert deploy[0].time < starts


def test_nothing_in_the_bundle_names_the_answer(bundle: Path) -> None:
    text = "\n".join(p.read_text() for p in bundle.iterdir()).lower()
    for word in ("root cause", "root_cause", "culprit", "inject", "fault", "chaos", "bad deploy", "caused by"):
        assert word not in text, word


# ----------------------------------------------------------------------------- the terminal adapter


async def test_terminal_renders_the_thread(tmp_path: Path) -> None:
    out = io.StringIO()
    term = TerminalAdapter(out=out, chart_dir=tmp_path / "charts")
    card = IncidentCard("INC-1", "Checkout slow", "critical", "open", "new", ("checkout",), "shop-team", ANCHOR)
    await term.announce(card, None)
    await term.update_card(card)  # unchanged: nothing printed
    await term.update_card(IncidentCard("INC-1", "Checkout slow", "critical", "open", "investigating",
                                        ("checkout",), "shop-team", ANCHOR))
    chart = Chart("latency", b"\x89PNG\r\n\x1a\nfake", "chart.png")
    await term.post("INC-1", Message(blocks=(
        Text("How I investigated", "heading"), Step(1, "looked", "looked at metrics"),
        Facts((("Owner", "shop-team"),)), chart,
        Cause(1, "payments-api", "deploy", 0.62, ("e1",), "deploy in payments-api"),
        EvidenceItem("e1", "metrics", "latency_p99 of payments-api rose", before=0.036, after=3.02,
                     excerpt="slow query took 2312ms", service="payments-api"),
    ), fallback="x", attachments=(chart,)))
    approve = Action("onwatch_approve", "Approve", "p1", "primary", "Sure?")
    reject = Action("onwatch_reject", "Reject", "p1", "danger")
    await term.post("INC-1", Message(blocks=(ProposalBlock("p1", "Roll back payments-api", "rollback", "medium",
                                                          (("request", "POST /rollback"),), (approve, reject)),),
                                     fallback="p", key="proposal:p1"))
    await term.replace("INC-1", "proposal:p1", Message(blocks=(ProposalBlock(
        "p1", "Roll back payments-api", "rollback", "medium", (), (), decided="Approved by dana"),), fallback="d"))
    text = out.getvalue()
    assert "\x1b[" not in text, "no colour when the output is not a terminal"
    assert "INC-1" in text and "CRITICAL" in text
    assert text.count("↻ status:") == 1 and "Investigating" in text
    assert "#1 payments-api — deploy" in text and confidence_bar(0.62) in text and "62%" in text
    assert "0.036 → 3.02" in text and "×83.9" in text
    assert "[Approve] [Reject]" in text and "asks first: Sure?" in text
    assert "↻ Roll back payments-api: ✔ Approved by dana" in text
    assert len(term.charts) == 1 and term.charts[0].read_bytes() == chart.png, "the chart is saved once"
    assert str(term.charts[0]) in text


def test_colour_only_when_asked_or_on_a_tty(tmp_path: Path) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert TerminalAdapter(out=Tty(), chart_dir=tmp_path).p.on is (not os.environ.get("NO_COLOR"))
    assert TerminalAdapter(out=io.StringIO(), chart_dir=tmp_path).p.on is False
    assert change_ratio(2.0, 1.0) == "÷2" and change_ratio(1.0, 1.2) == "+0.2" and change_ratio(None, 1) == ""


# ----------------------------------------------------------------------------- set-up pieces


def test_database_choice_says_which(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONWATCH_DATABASE__URL", raising=False)
    url, which = pick_database(tmp_path)
    assert url == f"sqlite:///{tmp_path / 'onwatch.db'}" and "temporary SQLite" in which
    monkeypatch.setenv("ONWATCH_DATABASE__URL", "postgresql://onwatch:s3cret@db.internal/onwatch")
    url, which = pick_database(tmp_path)
    assert url == "postgresql://onwatch:s3cret@db.internal/onwatch"
    assert "ONWATCH_DATABASE__URL" in which and "s3cret" not in which


def test_demo_runbook_is_a_valid_catalog_entry(tmp_path: Path) -> None:
    from bot.remediate.catalog import HttpAction, load_catalog

    cat = load_catalog(write_runbooks(tmp_path / "runbooks", 12345))
    (rb,) = list(cat)
    assert isinstance(rb.action, HttpAction) and rb.action.url.startswith("http://127.0.0.1:12345/")
    assert rb.scope.hosts == ["127.0.0.1"] and set(rb.scope.services) == set(DEPLOYMENTS)
    assert rb.verify is not None and rb.risk == "medium"


# ----------------------------------------------------------------------------- end to end


def test_onwatch_demo_runs_end_to_end(tmp_path: Path) -> None:
    """The real command, as a newcomer runs it: temporary SQLite, no network, exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONWATCH_")}
    env.update(NO_COLOR="1", TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "demo", "--seed", "3"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "temporary SQLite file" in out
    assert re.search(r"#1 payments-api — ", out), out[-4000:]
    assert "likely cause in" in out and "payments-api —" in out.split("[8] Summary")[-1]
    assert "POST /webhooks/alertmanager → 200 accepted: opened INC-" in out
    assert "[Approve] [Reject]" in out
    assert "execution succeeded, verification recovered" in out
    assert re.search(r"audit chain intact: \d+ rows", out)
    assert not any(tmp_path.glob("onwatch-demo-*")), "temporary files are removed without --keep"
