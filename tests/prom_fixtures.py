"""OpenMetrics writers for the tests that backfill a real Prometheus with promtool (``tests.integrations_fixtures``
starts it): request counters with a chosen error share, gauges, and the event SLO those counters answer."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REQUESTS = "http_requests_total"


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def request_counter_rows(job: str, times: Sequence[int], per_step: float,
                         error_share: Callable[[int], float]) -> list[str]:
    """``http_requests_total{code="200"|"500",job=...}`` at ``times``: ``per_step`` requests between two samples,
    ``error_share(t)`` of those ending at ``t`` failed (the first sample is the zero the counters start from)."""
    good = bad = 0.0
    ok_rows, bad_rows = [], []
    for i, t in enumerate(times):
        if i:
            share = error_share(t)
            bad += per_step * share
            good += per_step * (1 - share)
        ok_rows.append(f'{REQUESTS}{{code="200",job="{job}"}} {good!r} {t}\n')
        bad_rows.append(f'{REQUESTS}{{code="500",job="{job}"}} {bad!r} {t}\n')
    return ok_rows + bad_rows


def gauge_rows(metric: str, labels: Mapping[str, str], points: Iterable[tuple[int, float]]) -> list[str]:
    sel = _labels(labels)
    return [f"{metric}{{{sel}}} {v!r} {t}\n" for t, v in points]


def write_openmetrics(path: Path, families: Mapping[str, Sequence[str]]) -> Path:
    """One OpenMetrics file of gauge families (a family's rows as the writers above give them)."""
    lines: list[str] = []
    for name, rows in families.items():
        lines.append(f"# TYPE {name} gauge\n")
        lines += rows
    lines.append("# EOF\n")
    path.write_text("".join(lines))
    return path


def event_slo(job: str, objective: float = 0.999) -> dict[str, Any]:
    """An availability SLO over ``request_counter_rows``: good is every answer but a 5xx."""
    return {"name": f"{job}-availability", "service": job, "objective": objective, "period": "30d",
            "good": f'{REQUESTS}{{job="{job}",code!~"5.."}}', "total": f'{REQUESTS}{{job="{job}"}}'}
