"""Tiny crafted case bundles (FORMAT.md) for the investigation tests, written into a tmp folder."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

T0 = 1_700_000_000
STEP = 10
DURATION = 1800
INJECT = T0 + 1200
ALERT = INJECT + 60
SERVICES = ("frontend", "orders", "payment", "catalog", "db", "cache")
EDGES = (("frontend", "orders"), ("frontend", "catalog"), ("orders", "payment"), ("orders", "db"),
         ("catalog", "cache"))
BASE = {"cpu": 20.0, "memory": 2.0e8, "latency_p90": 0.05, "error_rate": 0.0, "request_rate": 20.0,
        "network_tx": 1.0e6, "disk_write": 1.0e5}

Effect = Callable[[str, str, np.ndarray, np.ndarray], np.ndarray]


def _times() -> np.ndarray:
    return np.arange(T0, T0 + DURATION + 1, STEP, dtype=np.float64)


def after(t: np.ndarray, start: float = INJECT) -> np.ndarray:
    return (t >= start).astype(float)


def make_case(
    root: Path,
    effect: Effect | None = None,
    *,
    name: str = "crafted-001",
    symptom: str = "frontend",
    edges: Sequence[tuple[str, str]] | None = EDGES,
    extra_series: Sequence[tuple[str, str]] = (),
    changes: list[dict[str, Any]] | None = None,
    logs: list[tuple[float, str, str, str]] | None = None,
    seed: int = 7,
) -> Path:
    """Write a case folder; ``effect(service, signal, t, values)`` returns the values with the fault."""
    rng = np.random.default_rng(seed)
    case = root / name
    case.mkdir(parents=True)
    t = _times()
    rows: list[tuple[int, str, str, float]] = []
    keys = [(s, sig) for s in SERVICES for sig in BASE] + list(extra_series)
    for svc, sig in sorted(keys):
        base = BASE.get(sig, 50.0)
        noise = rng.normal(0, 0.03 * base if base else 0.002, len(t))
        vals = np.abs(base + noise) if sig != "error_rate" else np.clip(np.abs(noise), 0, 1)
        if effect is not None:
            vals = effect(svc, sig, t, vals)
        rows += [(int(ti), svc, sig, float(v)) for ti, v in zip(t, vals, strict=True)]
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    with (case / "metrics.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["time", "service", "signal", "value"])
        for r in rows:
            w.writerow([r[0], r[1], r[2], f"{r[3]:.6g}"])
    (case / "case.json").write_text(json.dumps({
        "id": name, "system": "crafted", "dataset": "crafted", "description": "a crafted case",
        "time_range": [T0, T0 + DURATION]}))
    starts = datetime.fromtimestamp(ALERT, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {"alertname": "Crafted", "severity": "critical", "service": symptom, "namespace": "x", "system": "x"}
    (case / "alert.json").write_text(json.dumps({
        "version": "4", "status": "firing", "receiver": "rca-bot", "groupLabels": {}, "commonLabels": labels,
        "commonAnnotations": {}, "externalURL": "", "groupKey": "", "truncatedAlerts": 0,
        "alerts": [{"status": "firing", "labels": labels, "annotations": {"summary": "crafted"},
                    "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
                    "fingerprint": "0" * 16}]}))
    if edges is not None:
        (case / "topology.json").write_text(json.dumps({"edges": [{"from": a, "to": b} for a, b in edges]}))
    if changes is not None:
        (case / "changes.json").write_text(json.dumps({"changes": changes}))
    if logs is not None:
        with (case / "logs.csv").open("w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["time", "service", "level", "message", "trace_id"])
            for row in sorted(logs):
                w.writerow([f"{row[0]:.3f}", row[1], row[2], row[3], ""])
    return case


def up_on(service: str, signal: str, factor: float, start: float = INJECT, ramp: bool = False) -> Effect:
    def fx(svc: str, sig: str, t: np.ndarray, v: np.ndarray) -> np.ndarray:
        if svc == service and sig == signal:
            on = after(t, start)
            if ramp:
                on = on * np.clip((t - start) / 300.0, 0, 1)
            return v * (1 + (factor - 1) * on)
        return v
    return fx


def chain(*effects: Effect) -> Effect:
    def fx(svc: str, sig: str, t: np.ndarray, v: np.ndarray) -> np.ndarray:
        for e in effects:
            v = e(svc, sig, t, v)
        return v
    return fx


def add_on(service: str, signal: str, amount: float, start: float = INJECT) -> Effect:
    def fx(svc: str, sig: str, t: np.ndarray, v: np.ndarray) -> np.ndarray:
        if svc == service and sig == signal:
            return v + amount * after(t, start)
        return v
    return fx


def shift_case(case: Path, offset: float) -> None:
    """Move a crafted case in time so that its fault happens just before now (the alert is posted now)."""
    rows = list(csv.reader((case / "metrics.csv").open()))
    with (case / "metrics.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(rows[0])
        for r in rows[1:]:
            w.writerow([str(int(float(r[0]) + offset)), *r[1:]])
    meta = json.loads((case / "case.json").read_text())
    meta["time_range"] = [t + offset for t in meta["time_range"]]
    (case / "case.json").write_text(json.dumps(meta))
    changes = json.loads((case / "changes.json").read_text())
    for c in changes["changes"]:
        c["time"] = c["time"] + offset
    (case / "changes.json").write_text(json.dumps(changes))


def deploy_case(root: Path) -> Path:
    changes = [{"service": "orders", "time": INJECT - 90, "kind": "deploy", "version": "v2", "previous_version": "v1",
                "description": "orders v2", "url": "https://git.example/orders/pull/7", "diff_url": ""}]
    effect = chain(add_on("orders", "error_rate", 0.3), add_on("frontend", "error_rate", 0.2, INJECT + 20),
                   add_on("frontend", "latency_p90", 0.2, INJECT + 30))
    case = make_case(root, effect, changes=changes)
    shift_case(case, time.time() - 60 - INJECT)  # the fault began a minute ago; T0 is 20 minutes before it
    assert T0 < INJECT
    return case
