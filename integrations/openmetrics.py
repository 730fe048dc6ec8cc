"""Write a case bundle's metrics as OpenMetrics text, so ``promtool tsdb create-blocks-from openmetrics`` can
load the case into a real Prometheus (``onwatch replay export-openmetrics CASE_DIR [-o FILE]``).

Each signal becomes a gauge named after the signal with one label, ``service``. A case series is a step
function that may record only its changes; Prometheus forgets a value 5 minutes after its last sample
(the lookback), so every series is written on a regular grid (every original sample plus each grid point
between its first and last sample, carrying the value in force). Queried at any instant inside the series,
Prometheus then returns exactly the value of the case's step function.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from integrations.base import SourceError
from integrations.replay import ReplayCase

MAX_GRID_STEP_S = 60.0  # well under Prometheus' 5-minute lookback


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _ts(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else repr(float(t))


def grid_step(case: ReplayCase) -> float:
    """The case's sampling step: the commonest gap between consecutive samples, between 1 s and 60 s."""
    gaps: list[np.ndarray] = []
    for data in case.metrics().values():
        if len(data.times) > 1:
            d = np.diff(data.times)
            gaps.append(d[d > 0])
    if not gaps:
        return MAX_GRID_STEP_S
    allgaps = np.round(np.concatenate(gaps), 3)
    if allgaps.size == 0:
        return MAX_GRID_STEP_S
    values, counts = np.unique(allgaps, return_counts=True)
    common = float(values[int(np.argmax(counts))])
    return float(min(MAX_GRID_STEP_S, max(1.0, common)))


def gridded(times: np.ndarray, values: np.ndarray, origin: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Samples at every original time and every grid point ``origin + k*step`` inside the series' span."""
    if len(times) == 0:
        return times, values
    # Duplicate timestamps: the last row wins, as a later scrape would.
    keep = np.append(np.diff(times) > 0, True)
    times, values = times[keep], values[keep]
    k0 = math.ceil((times[0] - origin) / step)
    k1 = math.floor((times[-1] - origin) / step)
    grid = origin + step * np.arange(k0, k1 + 1, dtype=np.float64) if k1 >= k0 else np.empty(0)
    points = np.union1d(times, grid)
    idx = np.searchsorted(times, points, side="right") - 1
    return points, values[idx]


def lines(case: ReplayCase, step: float | None = None) -> Iterator[str]:
    """The OpenMetrics exposition of the case, one line at a time (families are contiguous, as required)."""
    metrics = case.metrics()
    step = step or grid_step(case)
    origin = case.time_range[0]
    by_signal: dict[str, list[str]] = {}
    for service, signal in metrics:
        by_signal.setdefault(signal, []).append(service)
    for signal in sorted(by_signal):
        yield f"# TYPE {signal} gauge\n"
        for service in sorted(by_signal[signal]):
            data = metrics[(service, signal)]
            times, values = gridded(data.times, data.values, origin, step)
            head = f'{signal}{{service="{_escape_label(service)}"}} '
            for t, v in zip(times.tolist(), values.tolist(), strict=True):
                yield f"{head}{_num(v)} {_ts(t)}\n"
    yield "# EOF\n"


def write(case: ReplayCase, out: TextIO, step: float | None = None) -> int:
    """Write the exposition to ``out``; return the number of samples written."""
    n = 0
    buf: list[str] = []
    for line in lines(case, step):
        buf.append(line)
        if len(buf) >= 10_000:
            out.write("".join(buf))
            n += len(buf)
            buf.clear()
    out.write("".join(buf))
    n += len(buf)
    return n - 1 - len({sig for _, sig in case.metrics()})  # minus "# EOF" and the TYPE lines


def main_export_openmetrics(args: argparse.Namespace) -> int:
    """``onwatch replay export-openmetrics CASE_DIR [-o FILE]``: 0 on success, 1 on a bad case or output."""
    step = getattr(args, "step", None)
    try:
        case = ReplayCase(Path(args.case_dir))
        output = getattr(args, "output", None)
        if output:
            path = Path(output)
            tmp = path.with_name(path.name + ".tmp")
            with tmp.open("w", encoding="utf-8") as fh:
                n = write(case, fh, step)
            tmp.replace(path)
            print(f"wrote {n} samples of case {case.id} to {path}", file=sys.stderr)
        else:
            write(case, sys.stdout, step)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write the output: {exc}", file=sys.stderr)
        return 1
    return 0
