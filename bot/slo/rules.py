"""Prometheus recording and alerting rules for one SLO, so Prometheus itself can watch the burn (as YAML text).

Recording rules store the error ratio over every window the policy reads (``slo:sli_error:ratio_rate<w>``,
labelled ``slo`` and ``service``); one alerting rule per window pair fires when both windows reach
``factor × (1 - objective)``, the same ``>=`` test as :func:`bot.slo.burn.evaluate`.

An event-ratio SLI gives ``1 - sum(rate(good[w])) / sum(rate(total[w]))``: ``good`` and ``total`` must be
series selectors, since a range is appended to them. A signal SLI is a name in the metrics catalog, so
its PromQL comes from whoever resolves the catalog (``signal_query``); its error ratio is the share of time the
signal sat on the wrong side of the threshold (any of its series there makes the moment bad), as a subquery
sampled at least once a minute.
"""

from __future__ import annotations

import yaml

from bot.slo.burn import Window, windows_for
from bot.slo.model import SLO

RECORD_PREFIX = "slo:sli_error:ratio_rate"
ALERT_NAME = "SLOErrorBudgetBurn"
_UNITS_MS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
# A subquery's step: ten samples per window, but never finer than 1 s nor coarser than a usual scrape.
_MIN_STEP_MS, _MAX_STEP_MS = 1000, 60_000


def prom_duration(seconds: float) -> str:
    """A Prometheus duration for ``seconds`` rounded to the millisecond, as ``1h10m`` or ``22s500ms``."""
    left = round(seconds * 1000)
    if left <= 0:
        raise ValueError(f"{seconds!r} s rounds to no duration")
    parts = []
    for unit, size in _UNITS_MS:
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _labels(slo: SLO) -> str:
    return f'{{slo="{slo.name}", service="{slo.service}"}}'


def _threshold(window: Window, slo: SLO) -> str:
    # Rounded so 14.4 × (1 - 0.999) is written 0.0144, not 0.014400000000000013.
    return repr(round(window.factor * slo.error_budget, 12))


def error_ratio_expr(slo: SLO, window_s: float, signal_query: str | None = None) -> str:
    """The PromQL of ``slo``'s error ratio (bad / all) over the last ``window_s``: one builder for the recording
    rules and for onwatch's own evaluation (``bot.slo.evaluate``), so both read the same number."""
    w = prom_duration(window_s)
    if slo.is_event_ratio:
        return f"1 - (sum(rate({slo.good}[{w}])) / sum(rate({slo.total}[{w}])))"
    if signal_query is None:
        raise ValueError(f"SLO {slo.name}: signal {slo.signal!r} is a catalog name; pass its PromQL as signal_query")
    # Bad when the signal is on the wrong side: good below the threshold means bad at or above it.
    op = ">=" if slo.good_when == "below" else "<="
    step = prom_duration(min(max(round(window_s * 100), _MIN_STEP_MS), _MAX_STEP_MS) / 1000)
    return f"avg_over_time((max(({signal_query}) {op} bool {slo.threshold!r}))[{w}:{step}])"


def rules(slo: SLO, signal_query: str | None = None) -> str:
    """The rule file (one group) for ``slo``; ``signal_query`` is required for a signal SLI."""
    pairs = windows_for(slo.period_seconds)
    windows = sorted({w for pair in pairs for w in (pair.long, pair.short)})
    labels = {"slo": slo.name, "service": slo.service}
    recording = [{"record": RECORD_PREFIX + prom_duration(w), "expr": error_ratio_expr(slo, w, signal_query),
                  "labels": dict(labels)} for w in windows]
    alerting = []
    for pair in pairs:
        long_d, short_d, limit = prom_duration(pair.long), prom_duration(pair.short), _threshold(pair, slo)
        alerting.append({
            "alert": ALERT_NAME,
            "expr": (f"{RECORD_PREFIX}{long_d}{_labels(slo)} >= {limit}"
                     f" and {RECORD_PREFIX}{short_d}{_labels(slo)} >= {limit}"),
            "labels": {**labels, "severity": pair.severity, "long_window": long_d, "short_window": short_d},
            "annotations": {"summary": (f"SLO {slo.name} of {slo.service} burns its {slo.period} error budget at "
                                        f"{pair.factor:g}x or more over {long_d} and {short_d}")},
        })
    group = {"name": f"slo:{slo.name}", "rules": recording + alerting}
    return yaml.safe_dump({"groups": [group]}, sort_keys=False, width=1000)
