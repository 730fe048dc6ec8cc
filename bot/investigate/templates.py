"""Log templates with drain3: which message shapes are new or more frequent since the baseline.

Lines of both windows go through one miner in time order (baseline first), so a template seen only
after the cut is new. Counts are compared as rates over the time each window actually covers, since
logs may cover only part of a window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from drain3 import TemplateMiner  # type: ignore[import-untyped]
from drain3.masking import MaskingInstruction  # type: ignore[import-untyped]
from drain3.template_miner_config import TemplateMinerConfig  # type: ignore[import-untyped]

from integrations.base import LogLine

# Used only for lines that carry no level of their own: whole words, so ids such as ``…-c594-…`` or
# ``ErrorHandlerConfig`` loaded at INFO do not read as failures.
_ERRORISH = re.compile(r"\b(error|errors|exception|failed|failure|fails|fatal|timeout|timed out|refused|unavailable|"
                       r"denied|panic|traceback|unable|reset by peer)\b|\b5\d\d\b(?!-)", re.IGNORECASE)
# exception and error classes as runtimes print them: java.lang.NullPointerException, ValueError, io.EOFError
_EXCEPTION_CLASS = re.compile(r"\b[A-Z][\w$]*(?:Exception|Error)\b")
ERROR_LEVELS = ("ERROR", "FATAL", "CRITICAL")


def is_errorish(level: str, text: str) -> bool:
    """Whether a log line (or template) says something failed.

    The record's own level decides when it has one: an INFO line that mentions "cannot" or an id with
    ``594`` in it is not an error, and a WARN line is a warning whatever its words. Only a line without
    a level is read by its words.
    """
    lvl = normal_level(level)
    if lvl:
        return lvl in ERROR_LEVELS or lvl == "WARN"
    return bool(_ERRORISH.search(text) or _EXCEPTION_CLASS.search(text))


_LEVEL_ALIASES = {"WARNING": "WARN", "ERR": "ERROR", "CRIT": "CRITICAL", "EMERG": "FATAL", "ALERT": "FATAL",
                  "PANIC": "FATAL", "E": "ERROR", "W": "WARN", "I": "INFO", "D": "DEBUG", "NOTICE": "INFO",
                  "INFORMATION": "INFO", "TRACE": "DEBUG"}


def normal_level(level: str) -> str:
    """A record's level in the upper-case vocabulary (DEBUG, INFO, WARN, ERROR, CRITICAL, FATAL)."""
    lvl = level.strip().upper()
    return _LEVEL_ALIASES.get(lvl, lvl)
_MAX_CHARS = 400


@dataclass(frozen=True, slots=True)
class TemplateShift:
    service: str
    template: str
    level: str
    before: int
    after: int
    before_rate: float  # per second of covered baseline
    after_rate: float
    z: float  # Poisson-style strength of the rise
    new: bool
    errorish: bool
    example: str


def _config() -> TemplateMinerConfig:
    cfg = TemplateMinerConfig()
    cfg.profiling_enabled = False
    cfg.drain_sim_th = 0.4
    cfg.drain_depth = 4
    cfg.drain_max_clusters = 2000
    cfg.masking_instructions = [
        MaskingInstruction(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "UUID"),
        MaskingInstruction(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b", "IP"),
        MaskingInstruction(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{16,}\b", "HEX"),
        MaskingInstruction(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d+)?(?![A-Za-z_])", "NUM"),
    ]
    return cfg


def covered_seconds(times: Sequence[float], max_gap_s: float = 60.0) -> float:
    """How long a set of records actually covers: the sum of the gaps between consecutive records,
    each gap counted up to ``max_gap_s``. Logs and traces may be kept only for a few separate minutes
    of a window; the silence between two kept stretches is not time in which nothing happened."""
    if not times:
        return 0.0
    ts = sorted(times)
    total = sum(min(b - a, max_gap_s) for a, b in zip(ts, ts[1:], strict=False))
    return max(1.0, total)


def coverage(lines: Sequence[LogLine]) -> float:
    return covered_seconds([ln.time for ln in lines])


def mine_shifts(
    before: Sequence[LogLine], after: Sequence[LogLine], min_after: int = 3
) -> list[TemplateShift]:
    """Templates per service whose rate rose from ``before`` to ``after``, strongest first."""
    miner = TemplateMiner(config=_config())
    ids_before: list[tuple[str, int, str]] = []
    ids_after: list[tuple[str, int, str]] = []
    examples: dict[tuple[str, int], str] = {}
    levels: dict[tuple[str, int], str] = {}
    for dest, lines in ((ids_before, before), (ids_after, after)):
        for ln in lines:
            msg = ln.message[:_MAX_CHARS]
            res = miner.add_log_message(msg)
            cid = int(res["cluster_id"])
            lvl = normal_level(ln.level)
            dest.append((ln.service, cid, lvl))
            key = (ln.service, cid)
            examples.setdefault(key, msg)
            if lvl in ERROR_LEVELS or (lvl == "WARN" and levels.get(key) not in ERROR_LEVELS):
                levels[key] = lvl
            else:
                levels.setdefault(key, lvl)
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    cb: dict[tuple[str, int], int] = {}
    ca: dict[tuple[str, int], int] = {}
    for svc, cid, _ in ids_before:
        cb[(svc, cid)] = cb.get((svc, cid), 0) + 1
    for svc, cid, _ in ids_after:
        ca[(svc, cid)] = ca.get((svc, cid), 0) + 1
    tb, ta = coverage(before), coverage(after)
    out: list[TemplateShift] = []
    for key in sorted(ca):
        n_after = ca[key]
        n_before = cb.get(key, 0)
        if n_after < min_after:
            continue
        rate_b = n_before / tb if tb > 0 else 0.0
        rate_a = n_after / ta
        expected = rate_b * ta
        z = (n_after - expected) / math.sqrt(expected + 1.0)
        if z <= 0:
            continue
        tpl = templates.get(key[1], examples[key])
        level = levels.get(key, "")
        errorish = is_errorish(level, tpl)
        out.append(TemplateShift(key[0], tpl, level, n_before, n_after, rate_b, rate_a, z,
                                 new=n_before == 0 and tb > 0, errorish=errorish, example=examples[key]))
    out.sort(key=lambda s: (-s.z, s.service, s.template))
    return out
