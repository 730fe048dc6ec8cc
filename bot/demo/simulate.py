"""A deterministic, seeded simulation of a small web shop, written as a case bundle.

The shop: ``frontend`` calls ``catalog``, ``cart`` and ``checkout``; ``checkout`` calls ``cart``,
``payments-api`` and ``shipping``; ``payments-api`` uses the ``payments-db`` PostgreSQL database and
``cart`` keeps carts in ``redis``. An hour of telemetry is produced at 15 s resolution: CPU, memory,
request rate, error rate and latency quantiles for every service, connection-pool and query signals for
the payments path, sampled access logs, sampled traces, the topology and the change log.

What happens in that hour, as an on-call engineer would later reconstruct it: the frontend ships a
routine release and the catalog's cache TTL is raised (both harmless); then ``payments-api`` v1.8.4 rolls
out, pod by pod. Its new code lists a merchant's pending payments with a query that the ``payments``
table has no index for, so every charge served by a new pod waits seconds on the database. Checkout
requests pile up behind it, some time out, and the checkout latency alert fires a minute later.

Nothing in the bundle names the cause: the data is what the telemetry of such a shop would hold. The
engine has to find it the way it would in production.

Every random draw comes from a generator keyed by ``(seed, tick, stream)``, so a given seed and anchor
always give the same bundle byte for byte, and a longer run (``until``, ``rollback_at``) shares its
prefix with a shorter one: the demo uses that to "fast-forward" the shop after a rollback.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

STEP_S = 15
HISTORY_S = 3600
SYMPTOM = "checkout"
CULPRIT = "payments-api"  # used by the demo's narration and its tests only; never written into the bundle
NAMESPACE = "shop"
SYSTEM = "shop"
DATASET = "demo"
CLIENT_TIMEOUT_MS = 3000.0  # checkout gives up on payments-api after this long
ALERT_P99_S = 2.0  # CheckoutLatencyHigh: p99 above 2 s for 1 minute
REPLICAS = 3

SERVICES: tuple[str, ...] = (
    "cart", "catalog", "checkout", "frontend", "payments-api", "payments-db", "redis", "shipping",
)
EDGES: tuple[tuple[str, str], ...] = (
    ("cart", "redis"),
    ("checkout", "cart"),
    ("checkout", "payments-api"),
    ("checkout", "shipping"),
    ("frontend", "cart"),
    ("frontend", "catalog"),
    ("frontend", "checkout"),
    ("payments-api", "payments-db"),
)

# Requests per second at the start of the hour (before the gentle evening ramp and noise).
_BASE_RPS = {"frontend": 140.0, "catalog": 98.0, "cart": 42.0, "checkout": 8.4, "payments-api": 8.4,
             "shipping": 8.4}
_BASE_CPU = {"frontend": 34.0, "catalog": 27.0, "cart": 14.0, "checkout": 11.0, "payments-api": 13.0,
             "payments-db": 21.0, "redis": 7.0, "shipping": 5.0}
_BASE_MEM_MB = {"frontend": 410.0, "catalog": 520.0, "cart": 180.0, "checkout": 260.0, "payments-api": 330.0,
                "payments-db": 2900.0, "redis": 610.0, "shipping": 150.0}
_SHOP_FRACTIONS = (0.70, 0.24, 0.06)  # frontend traffic: product pages, cart views, checkouts

_SLOW_SQL = ("SELECT id, amount, currency, status FROM payments WHERE merchant_id = $1 AND status = $2 "
             "ORDER BY created_at DESC LIMIT 50")
_OLD_VERSION, _NEW_VERSION = "v1.8.3", "v1.8.4"
_REPO = "https://git.example.internal/shop"


class Scenario(StrEnum):
    """What goes wrong in the simulated shop."""

    ROLLOUT = "rollout"  # payments-api v1.8.4 rolls out with an unindexed query: a step, paged within minutes
    DRIFT = "drift"  # checkout's heap nears its limit: its p99 creeps up for half an hour before the page


# The drift scenario: checkout v2.9.0, deployed two days earlier, keeps a little memory per order it never
# frees. For two days nothing showed; now the heap nears its limit, the collector runs longer and more often,
# and the requests it stops wait for it.
DRIFT_HISTORY_S = 3 * 3600  # the scan needs an hour of baseline inside a two-hour lookback before the drift
HEAP_LIMIT_MB = 1024.0
HEAP_KNEE_MB = 896.0  # live heap where the collector starts to struggle
HEAP_FRESH_MB = 300.0  # a freshly started checkout pod
LEAK_MB_PER_S = 0.05  # 3 MB a minute on every pod
# The drift's samples start on a whole minute, where the demo's scheduler ticks: a seed then gives the same scans
# whatever the time it runs at (the detector's reading of a window depends on where the window's first point sits).
DRIFT_GRID_S = 60
_DRIFT_OLD, _DRIFT_NEW = "v2.8.6", "v2.9.0"


# ----------------------------------------------------------------------------- the timeline


@dataclass(frozen=True, slots=True)
class HeapLeak:
    """The drift scenario's checkout pods: each one's live heap grows by ``LEAK_MB_PER_S``; it reaches
    ``HEAP_KNEE_MB`` at ``knee`` on the pods running since the deploy, and a pod restarted by a rollback
    (``restarts``, one per pod) or by a plain restart at ``restart`` starts again from ``HEAP_FRESH_MB``."""

    knee: float
    restarts: tuple[float, ...] = ()
    restart: float | None = None  # a rollout restart (same version) began then; None for a rollback or none

    def live_mb(self, t: float, pod: int) -> float:
        if pod < len(self.restarts) and self.restarts[pod] <= t:
            return HEAP_FRESH_MB + LEAK_MB_PER_S * (t - self.restarts[pod])
        return HEAP_KNEE_MB + LEAK_MB_PER_S * (t - self.knee)

    def stress(self, t: float, pod: int) -> float:
        """How hard the collector struggles on ``pod``: 0 below the knee, 1 at the heap limit."""
        return max(0.0, (self.live_mb(t, pod) - HEAP_KNEE_MB) / (HEAP_LIMIT_MB - HEAP_KNEE_MB))


@dataclass(frozen=True, slots=True)
class Timeline:
    """When things happen, in Unix seconds. ``detection`` is the alert's ``startsAt``."""

    start: float
    end: float
    frontend_deploy: float
    catalog_config: float
    deploy: float
    pods_ready: tuple[float, ...]
    detection: float
    rollback: float | None = None
    pods_reverted: tuple[float, ...] = ()
    leak: HeapLeak | None = None  # the drift scenario (no payments-api rollout then: ``pods_ready`` is empty)

    def new_pods(self, t: float) -> int:
        """How many payments-api pods run the new version at ``t``."""
        n = sum(1 for r in self.pods_ready if r <= t)
        return max(0, n - sum(1 for r in self.pods_reverted if r <= t))

    def bad_fraction(self, t: float) -> float:
        return self.new_pods(t) / REPLICAS


@dataclass
class ShopCase:
    """One simulated incident, ready to be written as a case bundle."""

    seed: int
    case_id: str
    timeline: Timeline
    case: dict[str, Any]
    alert: dict[str, Any]
    metrics: list[tuple[float, str, str, float]]
    logs: list[tuple[float, str, str, str, str]]
    spans: list[tuple[str, str, str, str, str, float, float, str]]
    edges: list[dict[str, str]]
    changes: list[dict[str, Any]]
    facts: dict[str, Any] = field(default_factory=dict)  # narration only (not written)

    def write(self, folder: str | Path) -> Path:
        """Write the bundle into ``folder/<case_id>`` and return that path."""
        out = Path(folder) / self.case_id
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "case.json", self.case)
        _write_json(out / "alert.json", self.alert)
        _write_json(out / "topology.json", {"edges": self.edges})
        _write_json(out / "changes.json", {"changes": self.changes})
        _write_csv(out / "metrics.csv", ("time", "service", "signal", "value"),
                   ((_time(t), s, g, _num(v)) for t, s, g, v in self.metrics))
        _write_csv(out / "logs.csv", ("time", "service", "level", "message", "trace_id"),
                   ((_time(t), s, lv, m, tid) for t, s, lv, m, tid in self.logs))
        _write_csv(out / "traces.csv",
                   ("trace_id", "span_id", "parent_span_id", "service", "operation", "start_time", "duration_ms",
                    "status"),
                   ((tid, sid, pid, s, op, _time(st), _num(d), status)
                    for tid, sid, pid, s, op, st, d, status in self.spans))
        return out


def _num(v: float) -> str:
    """A value in plain decimal or exponent notation, six significant digits."""
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6g}"


def _time(t: float) -> str:
    """Unix seconds with millisecond precision and no trailing zeros (``1700000123.5``)."""
    return f"{t:.3f}".rstrip("0").rstrip(".")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_csv(path: Path, header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- randomness


class _Rng:
    """Independent generators keyed by (seed, tick, stream): a tick's draws never depend on other ticks."""

    STREAMS = ("level", "lat", "cpu", "mem", "logs", "traces", "ids", "misc")

    def __init__(self, seed: int):
        self.seed = seed

    def at(self, tick: int, stream: str) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, tick + 1_000_000, self.STREAMS.index(stream)])

    def fixed(self, stream: str) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, 7, self.STREAMS.index(stream)])


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.random() * len(options))]


# ----------------------------------------------------------------------------- the simulation


@dataclass
class _Tick:
    """What the shop did during one 15 s tick: request samples per service (ms) and their outcomes."""

    t: float
    f: float
    rps: dict[str, float]
    lat: dict[str, np.ndarray]
    failed: dict[str, float]  # share of requests that failed (5xx)
    query_ms: np.ndarray  # payments-api DB query durations
    pool_in_use: float
    db_conns: float
    db_qps: float
    gc_stress: tuple[float, ...] = ()  # the drift scenario: each checkout pod's collector stress
    gc_pauses: np.ndarray | None = None  # and the pauses its requests waited out (ms)


def _timeline(seed: int, anchor: float, rollback_at: float | None, until: float | None) -> Timeline:
    g = _Rng(seed).fixed("misc")
    end_default = math.floor(anchor / STEP_S) * STEP_S
    start = end_default - HISTORY_S
    frontend_deploy = start + 540 + float(g.integers(0, 120))
    catalog_config = start + 1320 + float(g.integers(0, 120))
    deploy = end_default - 555 + float(g.integers(0, 40))
    pods = tuple(deploy + 18 + 31 * i + float(g.integers(0, 8)) for i in range(REPLICAS))
    reverted: tuple[float, ...] = ()
    if rollback_at is not None:
        reverted = tuple(rollback_at + 12 + 17 * i for i in range(REPLICAS))
    end = end_default if until is None else math.floor(until)
    return Timeline(start=start, end=end, frontend_deploy=frontend_deploy, catalog_config=catalog_config,
                    deploy=deploy, pods_ready=pods, detection=0.0, rollback=rollback_at, pods_reverted=reverted)


def _drift_timeline(seed: int, anchor: float, rollback_at: float | None, until: float | None,
                    restart_at: float | None = None) -> Timeline:
    """Three quiet hours in which checkout's heap fills; the collector starts to struggle some 40 minutes
    before the end. No deploy in the window: the release that leaks went out two days earlier."""
    g = _Rng(seed).fixed("misc")
    end_default = math.floor(anchor / DRIFT_GRID_S) * DRIFT_GRID_S
    start = end_default - DRIFT_HISTORY_S
    frontend_deploy = start + 540 + float(g.integers(0, 120))
    catalog_config = start + 1320 + float(g.integers(0, 120))
    knee = end_default - 2460 + float(g.integers(0, 120))
    deploy = end_default - 2 * 86400 + 3600 * float(g.uniform(-3, 3))
    restarts: tuple[float, ...] = ()
    begun = rollback_at if rollback_at is not None else restart_at
    if begun is not None:
        restarts = tuple(begun + 12 + 17 * i for i in range(REPLICAS))
    end = end_default if until is None else math.floor(until)
    return Timeline(start=start, end=end, frontend_deploy=frontend_deploy, catalog_config=catalog_config,
                    deploy=deploy, pods_ready=(), detection=0.0, rollback=rollback_at,
                    leak=HeapLeak(knee, restarts, restart_at if rollback_at is None else None))


def _gc_pauses(g: np.random.Generator, leak: HeapLeak, t: float, n: int) -> tuple[tuple[float, ...], np.ndarray]:
    """Each pod's collector stress, and how long each of ``n`` checkout requests waited for a collection.

    A healthy collector stops a request now and then for a few tens of milliseconds; near the heap limit it
    runs more often and each pause is longer, so more and more requests wait out a pause of seconds."""
    stress = tuple(leak.stress(t, pod) for pod in range(REPLICAS))
    pod = g.integers(0, REPLICAS, n)
    s = np.asarray(stress)[pod]
    hit = g.random(n) < 0.002 + 0.06 * s ** 1.5
    pause = _lognormal(g, 1.0, 0.35, n) * (40.0 + 2600.0 * s ** 2)
    return stress, np.where(hit, pause, 0.0)


def _lognormal(g: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    """``n`` draws around ``median`` (always ``n`` normals, so the stream does not depend on the state)."""
    return np.asarray(median * np.exp(sigma * g.standard_normal(n)), dtype=np.float64)


def _simulate_tick(rng: _Rng, k: int, t: float, tl: Timeline) -> _Tick:
    g = rng.at(k, "lat")
    gl = rng.at(k, "level")
    f = tl.bad_fraction(t)
    hour = (t - tl.start) / HISTORY_S
    ramp = 1.0 + 0.12 * hour + 0.04 * math.sin(2 * math.pi * hour * 1.7)
    rps = {s: b * ramp * float(gl.normal(1.0, 0.035)) for s, b in _BASE_RPS.items()}
    rps["catalog"] = rps["frontend"] * 0.70 * float(gl.normal(1.0, 0.02))
    rps["cart"] = rps["frontend"] * 0.24 + rps["checkout"]
    rps["shipping"] = rps["checkout"]
    rps["payments-api"] = rps["checkout"]
    rps["redis"] = rps["cart"] * 2.6 * float(gl.normal(1.0, 0.02))
    n = 240

    # payments-api: own work, three queries, and on new pods the unindexed listing query
    own = _lognormal(g, 13.0, 0.35, n)
    q_merchant = _lognormal(g, 2.4, 0.45, n)
    q_insert = _lognormal(g, 3.8, 0.4, n)
    on_new = g.random(n) < f
    slow_median = 1300.0 + 700.0 * f  # more concurrent scans, slower each
    q_slow = np.where(on_new, _lognormal(g, slow_median, 0.32, n), 0.0)
    pool_wait = np.where(f > 0.5, _lognormal(g, 120.0 * f, 0.7, n), 0.0)
    pay_total = own + q_merchant + q_insert + q_slow + pool_wait
    pay_failed = pay_total > CLIENT_TIMEOUT_MS
    pay_obs = np.minimum(pay_total, CLIENT_TIMEOUT_MS + own)
    query_ms = np.concatenate([q_merchant, q_insert, np.minimum(q_slow[on_new], CLIENT_TIMEOUT_MS)])

    # checkout: its own work, cart, payments (up to the client timeout), shipping
    co_own = _lognormal(g, 21.0, 0.3, n)
    cart_ms = _lognormal(g, 4.2, 0.35, n) + _lognormal(g, 0.7, 0.3, n)
    ship_ms = _lognormal(g, 12.0, 0.3, n)
    co_total = co_own + cart_ms + np.where(pay_failed, CLIENT_TIMEOUT_MS, pay_total + ship_ms)
    stress: tuple[float, ...] = ()
    pauses = None
    if tl.leak is not None:
        stress, pauses = _gc_pauses(g, tl.leak, t, n)
        co_total = co_total + pauses

    # frontend: product pages, cart views, checkouts
    catalog_ms = _lognormal(g, 19.0 if t < tl.catalog_config else 16.5, 0.4, n)
    page = _lognormal(g, 7.0, 0.3, n) + catalog_ms
    cartview = _lognormal(g, 6.0, 0.3, n) + cart_ms
    mix = g.random(n)
    fe = np.where(mix < _SHOP_FRACTIONS[0], page,
                  np.where(mix < _SHOP_FRACTIONS[0] + _SHOP_FRACTIONS[1], cartview, co_total + _lognormal(g, 9.0, 0.3, n)))
    fe_failed_share = _SHOP_FRACTIONS[2] * float(pay_failed.mean())

    base_err = {s: max(0.0, float(gl.normal(0.0015, 0.0008))) for s in SERVICES}
    failed = {
        "payments-api": float(pay_failed.mean()) + base_err["payments-api"],
        "checkout": float(pay_failed.mean()) + base_err["checkout"],
        "frontend": fe_failed_share + base_err["frontend"],
        "catalog": base_err["catalog"],
        "cart": base_err["cart"] * 0.5,
        "shipping": base_err["shipping"] * 0.5,
        "redis": 0.0,
    }
    lat = {
        "frontend": fe,
        "catalog": catalog_ms,
        "cart": cart_ms,
        "checkout": co_total,
        "payments-api": pay_obs,
        "shipping": ship_ms,
        "redis": _lognormal(g, 0.32, 0.35, n),
    }
    in_flight = rps["payments-api"] * float(np.mean(pay_obs)) / 1000.0
    pool = min(20.0 * REPLICAS, 1.5 + in_flight * 1.1)
    db_qps = rps["payments-api"] * (2.0 + f) + 3.1
    db_conns = 9.0 + 2.0 * REPLICAS + pool
    return _Tick(t=t, f=f, rps=rps, lat=lat, failed=failed, query_ms=query_ms, pool_in_use=pool,
                 db_conns=db_conns, db_qps=db_qps, gc_stress=stress, gc_pauses=pauses)


def _restart_factor(t: float, restarts: Iterable[float], tau: float = 240.0) -> float:
    """Memory of a freshly started process is low and climbs back as caches and pools warm up."""
    factor = 1.0
    for r in restarts:
        if t >= r:
            factor = min(factor, 1.0 - 0.42 * math.exp(-(t - r) / tau))
    return factor


def _metrics_for(rng: _Rng, k: int, tick: _Tick, tl: Timeline, offsets: dict[str, int]) -> list[tuple[float, str, str, float]]:
    gc = rng.at(k, "cpu")
    gm = rng.at(k, "mem")
    rows: list[tuple[float, str, str, float]] = []
    pay_restarts = [*tl.pods_ready, *tl.pods_reverted]
    for svc in SERVICES:
        ts = tick.t + offsets[svc]
        if ts > tl.end and tl.leak is None:
            # The rollout scenario skips a sample past the end before drawing it, so the draws of the services
            # after it differ from a longer run's at the last tick (its bundles are kept as they were); the
            # drift scenario draws every sample and drops the late ones, so a longer run shares every sample.
            continue
        # cpu: follows traffic; JIT and cache warm-up after a restart; the database works harder on scans
        load = tick.rps.get(svc, _BASE_RPS.get(svc, 1.0)) / _BASE_RPS.get(svc, tick.rps.get(svc, 1.0))
        if svc == "redis":
            load = tick.rps["redis"] / (_BASE_RPS["cart"] * 2.6)
        cpu = _BASE_CPU[svc] * (0.55 + 0.45 * load) * float(gc.normal(1.0, 0.05))
        if svc == "payments-db":
            load = tick.db_qps / (_BASE_RPS["payments-api"] * 2.0 + 3.1)
            cpu = _BASE_CPU[svc] * (0.6 + 0.4 * load) * float(gc.normal(1.0, 0.05)) + 11.0 * tick.f
        restarts = pay_restarts if svc == "payments-api" else [tl.frontend_deploy] if svc == "frontend" else []
        if svc == SYMPTOM and tl.leak is not None:
            restarts = list(tl.leak.restarts)
            cpu += 14.0 * sum(s ** 3 for s in tick.gc_stress) / REPLICAS  # collections: more often, each longer
        for r in restarts:
            if 0 <= tick.t - r < 45:
                cpu += 9.0 * float(gc.uniform(0.6, 1.0)) / (REPLICAS if svc == "payments-api" else 1.0)
        if svc == "catalog" and 0 <= tick.t - tl.catalog_config < 60:
            cpu += 6.0
        cpu = max(0.3, cpu + float(gc.normal(0, 0.4)))
        rows.append((ts, svc, "cpu", round(cpu, 3)))

        wander = 1.0 + 0.015 * math.sin((tick.t - tl.start) / 700.0 + len(svc)) + float(gm.normal(0, 0.004))
        gc_saw = 1.0 + (0.06 * (((tick.t + 97 * len(svc)) % 420) / 420.0) if svc in ("catalog", "checkout") else 0.0)
        if svc == SYMPTOM and tl.leak is not None:
            # the live heap of each pod (a steady climb for days), plus what is allocated between collections
            live = sum(tl.leak.live_mb(tick.t, pod) for pod in range(REPLICAS)) / REPLICAS
            mem_f = live / _BASE_MEM_MB[svc]
        elif svc == "payments-api" and tl.pods_ready:
            # three pods restart one after another: each holds a third of the service's memory
            mem_f = sum(_restart_factor(tick.t, [tl.pods_ready[i], *tl.pods_reverted[i:i + 1]])
                        for i in range(REPLICAS)) / REPLICAS
        else:
            mem_f = _restart_factor(tick.t, restarts)
        mem = _BASE_MEM_MB[svc] * 1024 * 1024 * wander * gc_saw * mem_f
        if svc == "payments-api":
            mem *= 1.0 + 0.01 * tick.pool_in_use / REPLICAS  # buffers of requests in flight
        rows.append((ts, svc, "memory", float(round(mem))))

        if svc == "payments-db":
            rows.append((ts, svc, "db_connections", round(tick.db_conns + float(gm.normal(0, 0.6)), 1)))
            rows.append((ts, svc, "request_rate", round(tick.db_qps * float(gc.normal(1.0, 0.02)), 3)))
            continue
        rows.append((ts, svc, "request_rate", round(tick.rps[svc], 3)))
        rows.append((ts, svc, "error_rate", round(min(1.0, tick.failed[svc]), 5)))
        p50, p90, p99 = np.quantile(tick.lat[svc], [0.5, 0.9, 0.99]) / 1000.0
        rows.append((ts, svc, "latency_p50", round(float(p50), 5)))
        rows.append((ts, svc, "latency_p90", round(float(p90), 5)))
        rows.append((ts, svc, "latency_p99", round(float(p99), 5)))
        if svc == "payments-api":
            rows.append((ts, svc, "db_pool_in_use", round(tick.pool_in_use + float(gm.normal(0, 0.3)), 1)))
            rows.append((ts, svc, "db_query_duration_p99",
                         round(float(np.quantile(tick.query_ms, 0.99)) / 1000.0, 5)))
    return [r for r in rows if r[0] <= tl.end]


# ----------------------------------------------------------------------------- logs and traces


class _Ids:
    """Trace, span, order and charge ids from a per-tick Python generator (numpy is slow one scalar at a time)."""

    def __init__(self, seed: int, tick: int):
        self.r = random.Random(f"onwatch-demo:{seed}:{tick}")

    def _hex(self, nbytes: int) -> str:
        return f"{self.r.getrandbits(8 * nbytes):0{2 * nbytes}x}"

    def trace(self) -> str:
        return self._hex(16)

    def span(self) -> str:
        return self._hex(8)

    def order(self) -> str:
        return f"ord_{self._hex(5)}"

    def charge(self) -> str:
        return f"ch_{self._hex(6)}"

    def cart(self) -> str:
        return self._hex(4)

    def pod(self, svc: str, new: bool = False) -> str:
        return f"{svc}-{'7d9f5c' if new else '5b8c44'}-{self._hex(3)[:5]}"


_PRODUCTS = ("sku-1042", "sku-2291", "sku-0178", "sku-3307", "sku-0923", "sku-1555", "sku-4410")
_MERCHANTS = ("m_1021", "m_3340", "m_0918", "m_7712")


def _logs_and_spans(rng: _Rng, k: int, tick: _Tick, tl: Timeline
                    ) -> tuple[list[tuple[float, str, str, str, str]], list[tuple[str, str, str, str, str, float, float, str]]]:
    gl = rng.at(k, "logs")
    gt = rng.at(k, "traces")
    ids = _Ids(rng.seed, k)
    logs: list[tuple[float, str, str, str, str]] = []
    spans: list[tuple[str, str, str, str, str, float, float, str]] = []

    def at() -> float:
        return round(tick.t + gl.random() * STEP_S, 3)

    def log(t: float, svc: str, level: str, msg: str, tid: str = "") -> None:
        if t <= tl.end:
            logs.append((t, svc, level, msg, tid))

    # sampled access logs (1 % of requests) and background chatter
    for _ in range(int(gl.poisson(tick.rps["frontend"] * STEP_S * 0.01))):
        r = float(gl.random())
        if r < 0.70:
            log(at(), "frontend", "INFO", f"GET /product/{_pick(gl, _PRODUCTS)} 200 {int(gl.lognormal(math.log(27), 0.4))}ms")
        elif r < 0.94:
            log(at(), "frontend", "INFO", f"GET /cart 200 {int(gl.lognormal(math.log(12), 0.35))}ms")
        else:
            ms = int(gl.choice(tick.lat["checkout"])) + 9
            log(at(), "frontend", "INFO" if ms < CLIENT_TIMEOUT_MS else "WARN",
                f"POST /checkout {200 if ms < CLIENT_TIMEOUT_MS else 504} {ms}ms")
    for _ in range(int(gl.poisson(tick.rps["catalog"] * STEP_S * 0.01))):
        log(at(), "catalog", "INFO", f"served product {_pick(gl, _PRODUCTS)} from cache in {float(gl.lognormal(math.log(3.1), 0.3)):.1f}ms")
    for _ in range(int(gl.poisson(tick.rps["cart"] * STEP_S * 0.01))):
        log(at(), "cart", "INFO", f"cart {ids.cart()} updated: {int(gl.integers(1, 6))} items")
    for _ in range(int(gl.poisson(tick.rps["checkout"] * STEP_S * 0.1 * (1 - tick.failed["checkout"])))):
        log(at(), "checkout", "INFO", f"order {ids.order()} placed: {int(gl.integers(1, 5))} items, total {float(gl.uniform(12, 240)):.2f} EUR")
    for _ in range(int(gl.poisson(tick.rps["payments-api"] * STEP_S * 0.1 * (1 - tick.failed["payments-api"])))):
        log(at(), "payments-api", "INFO", f"charge {ids.charge()} authorized for merchant {_pick(gl, _MERCHANTS)}")
    for _ in range(int(gl.poisson(tick.rps["shipping"] * STEP_S * 0.05))):
        log(at(), "shipping", "INFO", f"quote for {int(gl.integers(1, 5))} parcels to zone {int(gl.integers(1, 9))}: {float(gl.uniform(3, 15)):.2f} EUR")
    if gl.random() < 0.25:
        log(at(), "redis", "INFO", f"{int(gl.integers(50, 400))} changes in 60 seconds. Saving...")
    # the usual background errors of a shop that works: card declines, an impatient client, a dropped link
    if gl.random() < 0.18:
        log(at(), "payments-api", "ERROR",
            f"charge {ids.charge()} declined by processor: {_pick(gl, ('insufficient_funds', 'card_expired', 'do_not_honor'))}")
    if gl.random() < 0.05:
        log(at(), "frontend", "WARN", "client closed connection before response was sent: GET /product")
    if gl.random() < 0.02:
        log(at(), "cart", "WARN", "redis: connection reset by peer, reconnecting")
    if gl.random() < 0.03:
        log(at(), "payments-db", "INFO", "checkpoint complete: wrote 412 buffers (2.5%)")

    # deploys and restarts, as the processes log them
    if tick.t <= tl.frontend_deploy < tick.t + STEP_S:
        log(tl.frontend_deploy + 4.2, "frontend", "INFO", "frontend v2.14.1 listening on :8080")
    if tick.t <= tl.catalog_config < tick.t + STEP_S:
        log(tl.catalog_config + 1.3, "catalog", "INFO", "configuration reloaded: product_cache_ttl=10m")
    for ready in tl.pods_ready:
        if tick.t <= ready < tick.t + STEP_S:
            pod = ids.pod("payments-api", new=True)
            log(ready - 3.1, "payments-api", "INFO", f"payments-api {_NEW_VERSION} starting on pod {pod}")
            log(ready - 1.4, "payments-api", "INFO", "connection pool to payments-db ready: max_conns=20")
    for rev in tl.pods_reverted:
        if tick.t <= rev < tick.t + STEP_S:
            pod = ids.pod("payments-api")
            log(rev - 3.1, "payments-api", "INFO", f"payments-api {_OLD_VERSION} starting on pod {pod}")
            log(rev - 1.4, "payments-api", "INFO", "connection pool to payments-db ready: max_conns=20")
    if tl.leak is not None:
        _gc_logs(tick, tl.leak, gl, ids, log)

    # every slow query and failed charge is logged (not only the sampled ones)
    slow = tick.query_ms[tick.query_ms > 1000.0]
    n_req = tick.rps["payments-api"] * STEP_S
    share_slow = len(slow) / 240.0
    for _ in range(int(gl.poisson(n_req * share_slow))):
        ms = int(gl.choice(slow)) if len(slow) else 1000
        log(at(), "payments-api", "WARN", f"slow query took {ms}ms: {_SLOW_SQL}", ids.trace())
        if gl.random() < 0.5:
            log(at(), "payments-db", "INFO", f"duration: {ms + float(gl.uniform(0, 3)):.3f} ms  execute <unnamed>: {_SLOW_SQL}")
    share_failed = tick.failed["payments-api"] - 0.0015
    for _ in range(int(gl.poisson(max(0.0, n_req * share_failed)))):
        tid, order = ids.trace(), ids.order()
        t0 = at()
        log(t0, "checkout", "ERROR", f"payment for order {order} failed: upstream payments-api timeout after 3000ms (POST /v1/charges)", tid)
        log(t0 + 0.002, "payments-api", "ERROR", "charge request canceled by client after 3000ms: context canceled while waiting for query", tid)
        if gl.random() < 0.4:
            log(t0 + 0.01, "frontend", "WARN", f"POST /checkout 504 {3000 + int(gl.integers(20, 60))}ms")
    if tick.pool_in_use > 0.8 * 20 * REPLICAS / 2:
        for _ in range(int(gl.poisson(2.0 * tick.f))):
            log(at(), "payments-api", "WARN",
                f"connection pool busy: waited {int(gl.uniform(200, 900))}ms for a connection (in use {min(20, int(tick.pool_in_use / REPLICAS) + 4)}/20)")

    # sampled traces: checkouts, product pages, cart views
    def span(tid: str, parent: str, svc: str, op: str, start: float, dur: float, status: str = "ok") -> str:
        sid = ids.span()
        if start <= tl.end:
            spans.append((tid, sid, parent, svc, op, round(start, 6), round(dur, 3), status))
        return sid

    for _ in range(int(gt.poisson(2.2))):
        tid = ids.trace()
        t0 = tick.t + float(gt.uniform(0, STEP_S))
        i = int(gt.integers(0, 240))
        new_pod = bool(gt.random() < tick.f)
        own, qm, qi = float(gt.lognormal(math.log(13), 0.35)), float(gt.lognormal(math.log(2.4), 0.45)), float(gt.lognormal(math.log(3.8), 0.4))
        qs = float(gt.lognormal(math.log(1300.0 + 700.0 * tick.f), 0.32)) if new_pod else 0.0
        pool = float(gt.lognormal(math.log(120.0 * tick.f), 0.7)) if (new_pod and tick.f > 0.5) else 0.0
        pay = own + qm + qi + qs + pool
        failed = pay > CLIENT_TIMEOUT_MS
        cart = float(tick.lat["cart"][i])
        ship = float(gt.lognormal(math.log(12), 0.3))
        co_own = float(gt.lognormal(math.log(21), 0.3))
        co = co_own + cart + (CLIENT_TIMEOUT_MS if failed else pay + ship)
        if tick.gc_pauses is not None:  # the drift scenario: this request may have waited out a collection
            co += float(tick.gc_pauses[int(gt.integers(0, len(tick.gc_pauses)))])
        fe = co + float(gt.lognormal(math.log(9), 0.3))
        st = "error" if failed else "ok"
        root = span(tid, "", "frontend", "POST /checkout", t0, fe, st)
        c = span(tid, root, "checkout", "PlaceOrder", t0 + 0.004, co, st)
        ca = span(tid, c, "cart", "GetCart", t0 + 0.006, cart)
        span(tid, ca, "cart", "redis HGETALL", t0 + 0.007, cart * 0.18)
        p_start = t0 + 0.006 + cart / 1000.0
        p = span(tid, c, "payments-api", "POST /v1/charges", p_start, min(pay, CLIENT_TIMEOUT_MS + 1.5), st)
        q0 = p_start + own / 2000.0
        span(tid, p, "payments-api", "pg SELECT merchants", q0, qm)
        q0 += qm / 1000.0
        if new_pod:
            span(tid, p, "payments-api", "pg SELECT payments", q0 + pool / 1000.0,
                 min(qs, CLIENT_TIMEOUT_MS - (q0 - p_start) * 1000.0 - pool) if failed else qs, st)
            q0 += (qs + pool) / 1000.0
        if not failed:
            span(tid, p, "payments-api", "pg INSERT payments", q0, qi)
            span(tid, c, "shipping", "Quote", p_start + pay / 1000.0 + 0.001, ship)
            log(t0 + fe / 1000.0, "checkout", "INFO", f"order {ids.order()} placed: {int(gt.integers(1, 5))} items, total {float(gt.uniform(12, 240)):.2f} EUR", tid)
        else:
            log(t0 + co / 1000.0, "checkout", "ERROR", f"payment for order {ids.order()} failed: upstream payments-api timeout after 3000ms (POST /v1/charges)", tid)
        if qs > 1000.0:
            log(q0, "payments-api", "WARN", f"slow query took {int(qs)}ms: {_SLOW_SQL}", tid)
    for _ in range(int(gt.poisson(3.0))):
        tid = ids.trace()
        t0 = tick.t + float(gt.uniform(0, STEP_S))
        i = int(gt.integers(0, 240))
        cat = float(tick.lat["catalog"][i])
        root = span(tid, "", "frontend", "GET /product/{id}", t0, cat + float(gt.lognormal(math.log(7), 0.3)))
        span(tid, root, "catalog", "GetProduct", t0 + 0.003, cat)
    for _ in range(int(gt.poisson(1.2))):
        tid = ids.trace()
        t0 = tick.t + float(gt.uniform(0, STEP_S))
        cart = float(tick.lat["cart"][int(gt.integers(0, 240))])
        root = span(tid, "", "frontend", "GET /cart", t0, cart + float(gt.lognormal(math.log(6), 0.3)))
        ca = span(tid, root, "cart", "GetCart", t0 + 0.003, cart)
        span(tid, ca, "cart", "redis HGETALL", t0 + 0.004, cart * 0.18)
    return logs, spans


def _gc_logs(tick: _Tick, leak: HeapLeak, gl: np.random.Generator, ids: _Ids,
             log: Callable[[float, str, str, str], None]) -> None:
    """What checkout's runtime logs in the drift scenario: restarts, and every collection pause over 200 ms."""
    for at in leak.restarts:
        if tick.t <= at < tick.t + STEP_S:
            version = _DRIFT_NEW if leak.restart is not None else _DRIFT_OLD
            log(at - 2.7, SYMPTOM, "INFO", f"checkout {version} starting on pod {ids.pod(SYMPTOM)}")
    assert tick.gc_pauses is not None
    long = tick.gc_pauses[tick.gc_pauses > 200.0]
    share = len(long) / len(tick.gc_pauses)
    for _ in range(int(gl.poisson(min(6.0, 40.0 * share)))):
        pod = int(gl.integers(0, REPLICAS))
        live = leak.live_mb(tick.t, pod)
        ms = float(gl.choice(long))
        before = min(HEAP_LIMIT_MB, live + float(gl.uniform(20, 60)))
        log(round(tick.t + float(gl.random()) * STEP_S, 3), SYMPTOM, "WARN",
            f"GC pause (G1 Evacuation Pause) {ms:.1f}ms: heap {before:.0f}M->{live:.0f}M ({HEAP_LIMIT_MB:.0f}M)")


# ----------------------------------------------------------------------------- alert, changes, bundle


def _detect(ticks: list[_Tick], offsets: dict[str, int]) -> float | None:
    """When a ``p99 > 2 s for 1m`` rule on checkout starts firing: four bad evaluations in a row."""
    run = 0
    for tick in ticks:
        p99 = float(np.quantile(tick.lat[SYMPTOM], 0.99)) / 1000.0
        run = run + 1 if p99 > ALERT_P99_S else 0
        if run == 5:
            return tick.t + offsets[SYMPTOM]
    return None


def _alert(case_id: str, detection: float) -> dict[str, Any]:
    labels = {"alertname": "CheckoutLatencyHigh", "severity": "critical", "service": SYMPTOM,
              "namespace": NAMESPACE, "system": SYSTEM}
    annotations = {
        "summary": "Checkout p99 latency is above 2s",
        "description": "The 99th percentile latency of checkout requests has been above 2 seconds for more than 1 minute.",
    }
    starts = rfc3339(detection)
    fp = hashlib.sha256((json.dumps(labels, sort_keys=True) + starts).encode()).hexdigest()[:16]
    return {
        "version": "4",
        "groupKey": '{}:{alertname="CheckoutLatencyHigh"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "rca-bot",
        "groupLabels": {"alertname": "CheckoutLatencyHigh"},
        "commonLabels": dict(labels),
        "commonAnnotations": dict(annotations),
        "externalURL": "",
        "alerts": [{
            "status": "firing",
            "labels": labels,
            "annotations": annotations,
            "startsAt": starts,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": fp,
        }],
    }


# What payments-api v1.8.4 changed, as the change source serves it to the LLM investigator's diff tool: a
# new query filters ``payments`` on (merchant_id, status), and no migration adds an index for it.
_PAYMENTS_DIFF: dict[str, Any] = {
    "commits": [["4f2c9e1a7b3d", "receipts: list a merchant's pending payments (#412)"],
                ["a81d05c3e6f2", "receipts: show pending payments on the receipts page"]],
    "files": [
        {"filename": "payments_api/receipts.py", "status": "modified", "patch": (
            "@@ -41,4 +41,9 @@ async def receipt(request: Request, payment_id: str) -> Response:\n"
            "     payment = await db.fetchrow(\"SELECT * FROM payments WHERE id = $1\", payment_id)\n"
            "     if payment is None:\n"
            "         raise NotFound(payment_id)\n"
            "+    # show the merchant's other pending payments next to the receipt (#412)\n"
            "+    pending = await db.fetch(\n"
            f"+        \"{_SLOW_SQL}\",\n"
            "+        payment[\"merchant_id\"], \"pending\",\n"
            "+    )\n"
            "+    return render(\"receipt.html\", payment=payment, pending=pending)\n"
            "-    return render(\"receipt.html\", payment=payment)\n")},
        {"filename": "payments_api/templates/receipt.html", "status": "modified", "patch": (
            "@@ -12,1 +12,3 @@\n"
            "   <p>Total: {{ payment.amount }} {{ payment.currency }}</p>\n"
            "+  {% if pending %}<h3>Pending payments</h3>\n"
            "+  <ul>{% for p in pending %}<li>{{ p.amount }} {{ p.currency }}</li>{% endfor %}</ul>{% endif %}\n")},
        {"filename": "migrations/0031_payments_status.sql", "status": "added", "patch": (
            "@@ -0,0 +1,3 @@\n"
            "+-- payments: a status column for the receipts page\n"
            "+ALTER TABLE payments ADD COLUMN IF NOT EXISTS status text;\n"
            "+UPDATE payments SET status = CASE WHEN settled_at IS NULL THEN 'pending' ELSE 'settled' END;\n")},
    ],
}


def _changes(tl: Timeline) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"service": "frontend", "time": tl.frontend_deploy, "kind": "deploy", "version": "v2.14.1",
         "previous_version": "v2.14.0", "description": "frontend v2.14.1: product page image lazy-loading (#881)",
         "url": f"{_REPO}/frontend/releases/tag/v2.14.1", "diff_url": f"{_REPO}/frontend/compare/v2.14.0...v2.14.1"},
        {"service": "catalog", "time": tl.catalog_config, "kind": "config", "version": "", "previous_version": "",
         "description": "catalog: product_cache_ttl 5m -> 10m", "url": f"{_REPO}/catalog-config/commit/9b1e04c",
         "diff_url": f"{_REPO}/catalog-config/commit/9b1e04c.diff"},
        {"service": "payments-api", "time": tl.deploy, "kind": "deploy", "version": _NEW_VERSION,
         "previous_version": _OLD_VERSION,
         "description": "payments-api v1.8.4: list a merchant's pending payments on the receipts page (#412)",
         "url": f"{_REPO}/payments-api/releases/tag/{_NEW_VERSION}",
         "diff_url": f"{_REPO}/payments-api/compare/{_OLD_VERSION}...{_NEW_VERSION}",
         "diff": _PAYMENTS_DIFF},
    ]
    if tl.rollback is not None:
        out.append({"service": "payments-api", "time": tl.rollback, "kind": "rollback", "version": _OLD_VERSION,
                    "previous_version": _NEW_VERSION, "description": "rollout undo of payments-api to v1.8.3",
                    "url": "", "diff_url": ""})
    return [c for c in out if c["time"] <= tl.end]


def _drift_changes(tl: Timeline) -> list[dict[str, Any]]:
    """The change log of the drift scenario: the two harmless changes, and checkout's release of two days ago."""
    out = [c for c in _changes(replace(tl, rollback=None)) if c["service"] != CULPRIT]
    out.append({"service": SYMPTOM, "time": tl.deploy, "kind": "deploy", "version": _DRIFT_NEW,
                "previous_version": _DRIFT_OLD,
                "description": "checkout v2.9.0: idempotency keys for order submission (#377)",
                "url": f"{_REPO}/checkout/releases/tag/{_DRIFT_NEW}",
                "diff_url": f"{_REPO}/checkout/compare/{_DRIFT_OLD}...{_DRIFT_NEW}"})
    if tl.rollback is not None:
        out.append({"service": SYMPTOM, "time": tl.rollback, "kind": "rollback", "version": _DRIFT_OLD,
                    "previous_version": _DRIFT_NEW, "description": "rollout undo of checkout to v2.8.6",
                    "url": "", "diff_url": ""})
    if tl.leak is not None and tl.leak.restart is not None:
        out.append({"service": SYMPTOM, "time": tl.leak.restart, "kind": "other", "version": _DRIFT_NEW,
                    "previous_version": _DRIFT_NEW, "description": "rollout restart of checkout",
                    "url": "", "diff_url": ""})
    return sorted((c for c in out if c["time"] <= tl.end), key=lambda c: float(c["time"]))


def simulate(seed: int = 7, *, anchor: float, until: float | None = None, rollback_at: float | None = None,
             scenario: Scenario | str = Scenario.ROLLOUT, restart_at: float | None = None) -> ShopCase:
    """Simulate the hour before ``anchor`` (Unix seconds; the demo passes the current time).

    ``until`` extends the run past the anchor (the shop goes on after the alert) and ``rollback_at``
    rolls payments-api back to v1.8.3 at that moment. The same arguments always give the same case.

    ``scenario`` ``drift`` simulates three hours instead, in which checkout's latency creeps up until it pages
    (see ``HeapLeak``); its ``rollback_at`` rolls checkout back and its ``restart_at`` restarts checkout's pods
    (either empties their heaps). An unknown scenario, or a restart in ``rollout``, is a ``ValueError``.
    """
    drift = Scenario(scenario) is Scenario.DRIFT
    if restart_at is not None and not drift:
        raise ValueError("restart_at: only the drift scenario models a restart")
    rng = _Rng(seed)
    tl = _drift_timeline(seed, anchor, rollback_at, until, restart_at) if drift else _timeline(
        seed, anchor, rollback_at, until)
    go = rng.fixed("misc")
    offsets = {s: int(go.integers(0, STEP_S)) for s in SERVICES}
    metrics: list[tuple[float, str, str, float]] = []
    logs: list[tuple[float, str, str, str, str]] = []
    spans: list[tuple[str, str, str, str, str, float, float, str]] = []
    ticks: list[_Tick] = []
    n_ticks = int((tl.end - tl.start) // STEP_S) + 1
    for k in range(n_ticks):
        t = tl.start + k * STEP_S
        tick = _simulate_tick(rng, k, t, tl)
        ticks.append(tick)
        metrics.extend(_metrics_for(rng, k, tick, tl, offsets))
        lg, sp = _logs_and_spans(rng, k, tick, tl)
        logs.extend(lg)
        spans.extend(sp)
    detection = _detect(ticks, offsets)
    if detection is None and tl.leak is not None:  # the seed gave a collector too lucky to page: page at the end
        detection = math.floor(tl.end / STEP_S) * STEP_S
    if detection is None:  # the seed gave a shop too quiet to page anyone: page at the full rollout
        detection = math.ceil((tl.pods_ready[-1] + 60) / STEP_S) * STEP_S
    tl = replace(tl, detection=detection)
    metrics.sort(key=lambda r: (r[0], r[1], r[2]))
    logs.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
    spans.sort(key=lambda r: (r[5], r[0], r[1]))
    case_id = f"{DATASET}-{seed % 1000:03d}"
    rng_start = float(min(tl.start, metrics[0][0] if metrics else tl.start))
    case = {
        "id": case_id,
        "system": SYSTEM,
        "dataset": DATASET,
        "description": (
            "A small web shop on Kubernetes (frontend, catalog, cart, checkout, payments-api, shipping, "
            "redis and a PostgreSQL database) under evening traffic. Metrics every 15 s for every service "
            "(CPU, memory, request rate, error rate, latency quantiles; connection and query signals on the "
            "payments path), 1 % sampled access logs with every warning and error, sampled traces, the "
            "service topology and the change log."
        ),
        "time_range": [int(rng_start), int(tl.end)],
    }
    return ShopCase(
        seed=seed, case_id=case_id, timeline=tl, case=case, alert=_alert(case_id, detection), metrics=metrics,
        logs=logs, spans=spans, edges=[{"from": a, "to": b} for a, b in EDGES],
        changes=_drift_changes(tl) if drift else _changes(tl),
        facts=_drift_facts(tl, detection) if drift else {
            "symptom": SYMPTOM, "culprit": CULPRIT, "deploy": tl.deploy, "detection": detection,
            "version": _NEW_VERSION, "previous_version": _OLD_VERSION},
    )


def _drift_facts(tl: Timeline, detection: float) -> dict[str, Any]:
    assert tl.leak is not None
    return {"symptom": SYMPTOM, "culprit": SYMPTOM, "deploy": tl.deploy, "detection": detection,
            "version": _DRIFT_NEW, "previous_version": _DRIFT_OLD, "drift_start": tl.leak.knee,
            "scenario": str(Scenario.DRIFT)}


def symptom_p99(case: ShopCase, since: float) -> list[tuple[float, float]]:
    """The checkout p99 samples from ``since`` on (the demo's before/after line)."""
    return [(t, v) for t, s, g, v in case.metrics if s == SYMPTOM and g == "latency_p99" and t >= since]
