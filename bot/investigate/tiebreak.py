"""Memory as a tie-break: where the evidence cannot separate the leading causes, a confirmed look-alike orders them.

A prior should decide only what the evidence leaves open. When the engine abstained because its leading causes
score within ``min_separation`` of each other, they are equally likely on this evidence; a past incident that
looked like this one (recalled after the investigation, over its evidence and suspects) and whose cause a person
confirmed, or whose fix held, names one of them: that one is listed first. The report still abstains — the
evidence did not change — and says why the order changed. A clearly separated answer is never overturned, and
an unconfirmed memory (the engine's own old guess) never reorders anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bot.investigate.engine import PRIOR_GRADES, EngineConfig, PastIncident
from bot.investigate.report import Report, Step


def tie_broken(report: Report, recalled: Sequence[PastIncident], min_separation: float | None = None) -> Report:
    """``report`` with a confirmed look-alike's cause first among the causes the evidence leaves tied."""
    if min_separation is None:
        min_separation = EngineConfig().min_separation
    causes = report.causes
    if not report.abstained or len(causes) < 2 or report.separation >= min_separation or causes[0].score <= 0:
        return report
    tied = [c for c in causes if c.score >= (1.0 - min_separation) * causes[0].score]
    for past in recalled:
        if past.grade not in PRIOR_GRADES or not past.cause_service:
            continue
        pick = next((c for c in tied if c.service == past.cause_service), None)
        if pick is None:
            continue
        if pick is causes[0]:
            return report  # the best look-alike agrees with the leader: nothing to reorder
        order = [pick] + [c for c in causes if c is not pick]
        step = Step(len(report.steps) + 1, f"Memory: {past.incident_id} ({past.grade}) was caused in {pick.service}",
                    f"the evidence does not separate {causes[0].service} and {pick.service}; "
                    f"{pick.service} is listed first", "concluded")
        return replace(report, causes=order, ranked_services=[c.service for c in order],
                       steps=[*report.steps, step])
    return report
