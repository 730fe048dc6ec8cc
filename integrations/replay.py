"""Replay: a read-only telemetry source over one case bundle (``../shared/datasets/FORMAT.md``).

A case folder holds the alert and the telemetry around one incident. ``ReplayCase`` reads it lazily
(each file on first use, metrics into numpy arrays) and serves it through the same interfaces as the
live sources: metrics, logs, traces, topology and changes. Its clock stands at the end of the case's
``time_range``, so an investigation sees what a person running it at that moment would see.

``labels.json`` (the ground truth, one folder up) is never opened here.

The optional onwatch extension ``changes.json`` (``docs/bundle-extensions.md``) lists deploys and
config changes: ``{"changes": [{"service", "time", "kind", "version", ...}]}``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

from integrations.base import (
    ChangeEvent,
    ChangeKind,
    Edge,
    LogLine,
    Series,
    SourceBadResponse,
    Sources,
    SourceTooLarge,
    Span,
    TimeWindow,
    keep_whole_traces,
    parse_rfc3339,
)
from integrations.diffs import (
    MAX_FILE_CHARS,
    MAX_TOTAL_CHARS,
    ChangeDiff,
    FileDiff,
    cap_patches,
    patch_counts,
)

__all__ = [
    "BundleError",
    "ReplayCase",
    "ReplayChanges",
    "ReplayLogs",
    "ReplayMetrics",
    "ReplayTopology",
    "ReplayTraces",
    "parse_time",
    "replay_sources",
]

parse_time = parse_rfc3339  # the name the bundle readers and scope use

_CHANGE_KINDS: frozenset[str] = frozenset(get_args(ChangeKind))
_LEVELS = frozenset({"DEBUG", "INFO", "WARN", "ERROR", "FATAL", ""})
ERROR_LEVELS = frozenset({"ERROR", "FATAL"})


class BundleError(SourceBadResponse):
    """A case file is missing or malformed. The message names the file and, when known, the line."""

    def __init__(self, path: Path | str, message: str):
        self.path = str(path)
        super().__init__("replay", f"{path}: {message}")


def _float(path: Path, line: int, field: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise BundleError(path, f"line {line}: {field} is not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise BundleError(path, f"line {line}: {field} is not finite: {raw!r}")
    return value


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(path, f"cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BundleError(path, f"not valid JSON: {exc}") from None


def _csv_rows(path: Path, header: Sequence[str]) -> tuple[list[list[str]], int]:
    """All data rows of a CSV with exactly ``header``; returns (rows, first data line number)."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            try:
                got = next(reader)
            except StopIteration:
                raise BundleError(path, "empty file (no header row)") from None
            if [h.strip() for h in got] != list(header):
                raise BundleError(path, f"header is {got}, expected {list(header)}")
            rows = list(reader)
    except FileNotFoundError:
        raise BundleError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BundleError(path, f"cannot read: {exc}") from None
    width = len(header)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise BundleError(path, f"line {i + 2}: {len(row)} fields, expected {width}")
    return rows, 2


@dataclass(frozen=True, slots=True)
class _SeriesData:
    times: np.ndarray  # float64, sorted
    values: np.ndarray  # float64


class ReplayCase:
    """One case folder, loaded lazily. Raises ``BundleError`` on malformed input."""

    def __init__(self, path: str | Path, *, max_log_lines: int = 50_000, max_spans: int = 200_000):
        self.path = Path(path)
        if not self.path.is_dir():
            raise BundleError(self.path, "not a case folder")
        self.max_log_lines = max_log_lines
        self.max_spans = max_spans
        self._case: dict[str, Any] | None = None
        self._alert: dict[str, Any] | None = None
        self._metrics: dict[tuple[str, str], _SeriesData] | None = None
        self._logs: tuple[np.ndarray, list[LogLine]] | None = None
        self._spans: tuple[np.ndarray, list[Span]] | None = None
        self._edges: list[Edge] | None = None
        self._changes: list[ChangeEvent] | None = None

    # ------------------------------------------------------------ case.json / alert.json

    @property
    def case(self) -> dict[str, Any]:
        if self._case is None:
            p = self.path / "case.json"
            data = _read_json(p)
            if not isinstance(data, dict):
                raise BundleError(p, "expected a JSON object")
            tr = data.get("time_range")
            if (
                not isinstance(tr, list)
                or len(tr) != 2
                or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in tr)
                or tr[1] < tr[0]
            ):
                raise BundleError(p, f"time_range must be [start, end] with start <= end, got {tr!r}")
            self._case = data
        return self._case

    @property
    def id(self) -> str:
        return str(self.case.get("id") or self.path.name)

    @property
    def time_range(self) -> tuple[float, float]:
        tr = self.case["time_range"]
        return float(tr[0]), float(tr[1])

    @property
    def now(self) -> float:
        """The replay clock: the end of the case's time range."""
        return self.time_range[1]

    @property
    def alert_payload(self) -> dict[str, Any]:
        if self._alert is None:
            p = self.path / "alert.json"
            data = _read_json(p)
            alerts = data.get("alerts") if isinstance(data, dict) else None
            if not isinstance(alerts, list) or not alerts or not all(isinstance(a, dict) for a in alerts):
                raise BundleError(p, "expected an Alertmanager webhook payload with at least one alert")
            for i, a in enumerate(alerts):
                if not isinstance(a.get("labels"), dict) or not isinstance(a.get("startsAt"), str):
                    raise BundleError(p, f"alerts[{i}] needs labels and startsAt")
                try:
                    parse_time(a["startsAt"])
                except ValueError:
                    raise BundleError(p, f"alerts[{i}].startsAt is not RFC 3339: {a['startsAt']!r}") from None
            self._alert = data
        return self._alert

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return list(self.alert_payload["alerts"])

    @property
    def detection_time(self) -> float:
        return min(parse_time(a["startsAt"]) for a in self.alerts)

    # ------------------------------------------------------------ metrics.csv

    def metrics(self) -> dict[tuple[str, str], _SeriesData]:
        if self._metrics is None:
            self._metrics = self._load_metrics()
        return self._metrics

    def _load_metrics(self) -> dict[tuple[str, str], _SeriesData]:
        p = self.path / "metrics.csv"
        rows, first = _csv_rows(p, ("time", "service", "signal", "value"))
        n = len(rows)
        if n == 0:
            return {}
        cols = list(zip(*rows, strict=True))
        try:
            times = np.asarray(cols[0], dtype=np.float64)
            values = np.asarray(cols[3], dtype=np.float64)
        except ValueError:
            # find the offending line for a useful message
            for i, r in enumerate(rows):
                _float(p, i + first, "time", r[0])
                _float(p, i + first, "value", r[3])
            raise BundleError(p, "unparseable number") from None
        bad = ~np.isfinite(times) | ~np.isfinite(values)
        if bad.any():
            i = int(np.argmax(bad))
            raise BundleError(p, f"line {i + first}: time or value is not a finite number")
        keys: dict[tuple[str, str], int] = {}
        codes = np.empty(n, dtype=np.int64)
        for i, (svc, sig) in enumerate(zip(cols[1], cols[2], strict=True)):
            if not svc or not sig:
                raise BundleError(p, f"line {i + first}: empty service or signal")
            k = (svc, sig)
            code = keys.get(k)
            if code is None:
                code = keys[k] = len(keys)
            codes[i] = code
        order = np.lexsort((times, codes))
        codes_s, times_s, values_s = codes[order], times[order], values[order]
        bounds = np.flatnonzero(np.diff(codes_s)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [n]))
        by_code = {code: k for k, code in keys.items()}
        out: dict[tuple[str, str], _SeriesData] = {}
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            out[by_code[int(codes_s[s])]] = _SeriesData(times_s[s:e], values_s[s:e])
        return dict(sorted(out.items()))

    def signals(self) -> list[str]:
        return sorted({sig for _, sig in self.metrics()})

    def services(self) -> list[str]:
        return sorted({svc for svc, _ in self.metrics()})

    def series(self, signal: str, window: TimeWindow, services: Sequence[str] | None = None) -> list[Series]:
        """Step-function series in ``window``: the value holding at ``window.start`` is carried in."""
        wanted = set(services) if services is not None else None
        end = min(window.end, self.now)
        out: list[Series] = []
        for (svc, sig), data in self.metrics().items():
            if sig != signal or (wanted is not None and svc not in wanted):
                continue
            lo = int(np.searchsorted(data.times, window.start, side="left"))
            hi = int(np.searchsorted(data.times, end, side="right"))
            pts: list[tuple[float, float]] = []
            if lo > 0 and (lo >= len(data.times) or data.times[lo] > window.start):
                pts.append((window.start, float(data.values[lo - 1])))
            pts.extend(zip(data.times[lo:hi].tolist(), data.values[lo:hi].tolist(), strict=True))
            if pts:
                out.append(Series(svc, sig, pts, query=f'{signal}{{service="{svc}"}}'))
        return out

    # ------------------------------------------------------------ logs.csv

    @property
    def has_logs(self) -> bool:
        return (self.path / "logs.csv").is_file()

    def logs(self) -> tuple[np.ndarray, list[LogLine]]:
        if self._logs is None:
            self._logs = self._load_logs()
        return self._logs

    def _load_logs(self) -> tuple[np.ndarray, list[LogLine]]:
        p = self.path / "logs.csv"
        rows, first = _csv_rows(p, ("time", "service", "level", "message", "trace_id"))
        lines: list[LogLine] = []
        for i, (t, svc, level, msg, tid) in enumerate(rows):
            lvl = level.strip().upper()
            if lvl == "WARNING":
                lvl = "WARN"
            if lvl not in _LEVELS:
                raise BundleError(p, f"line {i + first}: unknown level {level!r}")
            lines.append(LogLine(_float(p, i + first, "time", t), svc, lvl, msg, tid))
        lines.sort(key=lambda ln: (ln.time, ln.service))
        return np.asarray([ln.time for ln in lines], dtype=np.float64), lines

    # ------------------------------------------------------------ traces.csv

    @property
    def has_traces(self) -> bool:
        return (self.path / "traces.csv").is_file()

    def spans(self) -> tuple[np.ndarray, list[Span]]:
        if self._spans is None:
            self._spans = self._load_spans()
        return self._spans

    def _load_spans(self) -> tuple[np.ndarray, list[Span]]:
        p = self.path / "traces.csv"
        header = ("trace_id", "span_id", "parent_span_id", "service", "operation", "start_time", "duration_ms", "status")
        rows, first = _csv_rows(p, header)
        spans: list[Span] = []
        for i, (tid, sid, pid, svc, op, start, dur, status) in enumerate(rows):
            st = status.strip().lower()
            if st not in ("ok", "error", ""):
                raise BundleError(p, f"line {i + first}: status must be ok, error or empty, got {status!r}")
            spans.append(
                Span(tid, sid, pid, svc, op, _float(p, i + first, "start_time", start),
                     _float(p, i + first, "duration_ms", dur), st)  # type: ignore[arg-type]
            )
        spans.sort(key=lambda s: (s.start_time, s.trace_id, s.span_id))
        return np.asarray([s.start_time for s in spans], dtype=np.float64), spans

    # ------------------------------------------------------------ topology.json / changes.json

    @property
    def has_topology(self) -> bool:
        return (self.path / "topology.json").is_file()

    def edges(self) -> list[Edge]:
        if self._edges is None:
            p = self.path / "topology.json"
            data = _read_json(p)
            raw = data.get("edges") if isinstance(data, dict) else None
            if not isinstance(raw, list):
                raise BundleError(p, 'expected {"edges": [{"from": ..., "to": ...}, ...]}')
            edges: set[Edge] = set()
            for i, e in enumerate(raw):
                if not isinstance(e, dict) or not isinstance(e.get("from"), str) or not isinstance(e.get("to"), str):
                    raise BundleError(p, f"edges[{i}] needs string 'from' and 'to'")
                edges.add(Edge(e["from"], e["to"]))
            self._edges = sorted(edges, key=lambda e: (e.caller, e.callee))
        return self._edges

    @property
    def has_changes(self) -> bool:
        return (self.path / "changes.json").is_file()

    def change_events(self) -> list[ChangeEvent]:
        if self._changes is None:
            p = self.path / "changes.json"
            data = _read_json(p)
            raw = data.get("changes") if isinstance(data, dict) else None
            if not isinstance(raw, list):
                raise BundleError(p, 'expected {"changes": [...]}')
            out: list[ChangeEvent] = []
            for i, c in enumerate(raw):
                if not isinstance(c, dict) or not isinstance(c.get("service"), str) or not c["service"]:
                    raise BundleError(p, f"changes[{i}] needs a service")
                t = c.get("time")
                if isinstance(t, str):
                    try:
                        when = parse_time(t)
                    except ValueError:
                        raise BundleError(p, f"changes[{i}].time is not RFC 3339: {t!r}") from None
                elif isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t):
                    when = float(t)
                else:
                    raise BundleError(p, f"changes[{i}].time must be Unix seconds or RFC 3339")
                kind = c.get("kind", "deploy")
                if kind not in _CHANGE_KINDS:
                    raise BundleError(p, f"changes[{i}].kind must be one of {sorted(_CHANGE_KINDS)}, got {kind!r}")
                extra = {k: c.get(k, "") for k in ("version", "previous_version", "description", "url", "diff_url")}
                for k, v in extra.items():
                    if not isinstance(v, str):
                        raise BundleError(p, f"changes[{i}].{k} must be a string")
                out.append(ChangeEvent(service=c["service"], time=when, kind=kind, source="replay", **extra))
            out.sort(key=lambda ch: (ch.time, ch.service, ch.kind, ch.version))
            self._changes = out
        return self._changes

    def change_diff(self, change: ChangeEvent) -> ChangeDiff | None:
        """The optional ``diff`` of a ``changes.json`` entry (``{"commits": [[sha, title]], "files": [{"filename",
        "status", "patch"}]}``), matched by service, version and time."""
        p = self.path / "changes.json"
        data = _read_json(p)
        for i, c in enumerate(data.get("changes") or [] if isinstance(data, dict) else []):
            if not isinstance(c, dict) or c.get("service") != change.service or c.get("version", "") != change.version:
                continue
            if (t := c.get("time")) is not None and isinstance(t, int | float) and abs(float(t) - change.time) > 1:
                continue
            d = c.get("diff")
            if d is None:
                return None
            try:
                files = [FileDiff(str(f["filename"]), str(f.get("status", "modified")), *patch_counts(str(f["patch"])),
                                  str(f["patch"])) for f in d.get("files") or []]
                commits = [(str(a), str(b)) for a, b in d.get("commits") or []]
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise BundleError(p, f"changes[{i}].diff is malformed: {exc!r}") from None
            return ChangeDiff(change.service, change.previous_version, change.version, change.diff_url, commits, files)
        return None

    def link(self, what: str, **params: Any) -> str:
        query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        return f"replay://{self.id}/{what}" + (f"?{query}" if query else "")


# ---------------------------------------------------------------- the source adapters


async def _in_thread(fn: Any, *args: Any) -> Any:
    """File parsing can take a few hundred ms on large cases: keep it off the event loop."""
    return await asyncio.to_thread(fn, *args)


class _Base:
    def __init__(self, case: ReplayCase, name: str):
        self.case = case
        self.name = name
        self._lock = asyncio.Lock()

    def _window(self, window: TimeWindow) -> TimeWindow:
        return TimeWindow(window.start, max(window.start, min(window.end, self.case.now)))


class ReplayMetrics(_Base):
    def __init__(self, case: ReplayCase):
        super().__init__(case, "replay-metrics")

    async def _ensure(self) -> None:
        async with self._lock:
            if self.case._metrics is None:
                await _in_thread(self.case.metrics)

    async def signal(self, signal: str, window: TimeWindow, services: Sequence[str] | None = None) -> list[Series]:
        await self._ensure()
        return self.case.series(signal, self._window(window), services)

    async def available_signals(self) -> list[str]:
        await self._ensure()
        return self.case.signals()

    def link(self, signal: str, window: TimeWindow) -> str:
        return self.case.link("metrics", signal=signal, start=f"{window.start:.0f}", end=f"{window.end:.0f}")


class ReplayLogs(_Base):
    def __init__(self, case: ReplayCase, error_step_s: float = 10.0):
        super().__init__(case, "replay-logs")
        self.error_step_s = error_step_s

    async def _slice(self, window: TimeWindow) -> list[LogLine]:
        async with self._lock:
            if self.case._logs is None:
                await _in_thread(self.case.logs)
        times, lines = self.case.logs()
        w = self._window(window)
        lo = int(np.searchsorted(times, w.start, side="left"))
        hi = int(np.searchsorted(times, w.end, side="right"))
        return lines[lo:hi]

    async def error_counts(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[Series]:
        wanted = set(services) if services is not None else None
        step = self.error_step_s
        w = self._window(window)
        nbins = max(1, int(math.ceil(w.seconds / step)))
        counts: dict[str, np.ndarray] = {}
        for ln in await self._slice(w):
            if ln.level not in ERROR_LEVELS or (wanted is not None and ln.service not in wanted):
                continue
            arr = counts.setdefault(ln.service, np.zeros(nbins))
            arr[min(nbins - 1, int((ln.time - w.start) // step))] += 1
        grid = [w.start + i * step for i in range(nbins)]
        return [
            Series(svc, "log_errors", list(zip(grid, arr.tolist(), strict=True)),
                   query=f'count errors {{service="{svc}"}} by {step:g}s')
            for svc, arr in sorted(counts.items())
        ]

    async def lines(self, window: TimeWindow, services: Sequence[str] | None = None, limit: int = 1000) -> list[LogLine]:
        wanted = set(services) if services is not None else None
        got = [ln for ln in await self._slice(window) if wanted is None or ln.service in wanted]
        if len(got) > max(limit, self.case.max_log_lines):
            raise SourceTooLarge(self.name, f"{len(got)} lines in the window, over the cap of {limit}")
        if len(got) > limit:
            # an even, deterministic thinning keeps the shape of the window
            idx = np.linspace(0, len(got) - 1, limit).round().astype(int)
            got = [got[i] for i in sorted(set(idx.tolist()))]
        return got

    def link(self, service: str, window: TimeWindow) -> str:
        return self.case.link("logs", service=service, start=f"{window.start:.0f}", end=f"{window.end:.0f}")


class ReplayTraces(_Base):
    def __init__(self, case: ReplayCase):
        super().__init__(case, "replay-traces")

    async def _all(self) -> tuple[np.ndarray, list[Span]]:
        async with self._lock:
            if self.case._spans is None:
                await _in_thread(self.case.spans)
        return self.case.spans()

    async def spans(self, window: TimeWindow, services: Sequence[str] | None = None, limit: int = 5000) -> list[Span]:
        times, spans = await self._all()
        w = self._window(window)
        lo = int(np.searchsorted(times, w.start, side="left"))
        hi = int(np.searchsorted(times, w.end, side="right"))
        got = spans[lo:hi]
        if services is not None:
            wanted = set(services)
            got = [s for s in got if s.service in wanted]
        if len(got) > self.case.max_spans:
            raise SourceTooLarge(self.name, f"{len(got)} spans in the window, over the cap of {self.case.max_spans}")
        # trace ids are random, so keeping whole traces in id order is a fair, repeatable sample
        return keep_whole_traces(got, limit)

    async def trace(self, trace_id: str) -> list[Span]:
        _, spans = await self._all()
        return [s for s in spans if s.trace_id == trace_id]

    def link(self, trace_id: str) -> str:
        return self.case.link("traces", trace_id=trace_id)


class ReplayTopology(_Base):
    def __init__(self, case: ReplayCase):
        super().__init__(case, "replay-topology")

    async def edges(self) -> list[Edge]:
        return self.case.edges()


class ReplayChanges(_Base):
    def __init__(self, case: ReplayCase):
        super().__init__(case, "replay-changes")

    async def changes(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[ChangeEvent]:
        wanted = set(services) if services is not None else None
        w = self._window(window)
        return [
            c for c in self.case.change_events()
            if w.start <= c.time <= w.end and (wanted is None or c.service in wanted)
        ]

    async def diff(self, change: ChangeEvent, *, max_file_chars: int = MAX_FILE_CHARS,
                   max_total_chars: int = MAX_TOTAL_CHARS) -> ChangeDiff | None:
        if change.source != "replay" or change.time > self.case.now:
            return None
        d = await _in_thread(self.case.change_diff, change)
        if d is None:
            return None
        files, omitted = cap_patches(d.files, max_file_chars, max_total_chars)
        return ChangeDiff(d.service, d.base, d.head, d.url, d.commits, files, omitted, self.name)


def replay_sources(case: ReplayCase | str | Path) -> Sources:
    """The ``Sources`` bundle of one case: only what the folder holds, clock at the end of its range."""
    if not isinstance(case, ReplayCase):
        case = ReplayCase(case)
    return Sources(
        metrics=ReplayMetrics(case),
        logs=ReplayLogs(case) if case.has_logs else None,
        traces=ReplayTraces(case) if case.has_traces else None,
        changes=[ReplayChanges(case)] if case.has_changes else [],
        topology=[ReplayTopology(case)] if case.has_topology else [],
        cluster=None,
        now=case.now,
    )

