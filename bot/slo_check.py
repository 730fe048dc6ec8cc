"""The scheduled SLO check: every configured SLO evaluated, fast burns paged through triage, slow burns warned.

A page (the workbook's 14.4x or 6x pairs) is an alert like any other: ``SLOErrorBudgetBurn`` from source
``slo``, with one fingerprint per SLO, ingested through ``ctx.triage.ingest`` so deduplication, grouping,
incidents and investigation all apply, and a repeated check lands in the same alert and the same incident.
What fired before is read back from the stored alerts (source ``slo``, status firing), not from memory, so a
restart or another replica resolves it when the burn stops.

A ticket (the 1x pair: the budget will run out before the period ends) is not an incident: ``warn`` receives a
``bot.slo.check.SloWarning`` on every check while it holds, ``clear`` the SLO's name on every check that sees
the SLO plainly ok (both idempotent for the receiver, so no state is kept here either). A page keeps the
warning (its incident escalates it); a check whose queries failed or found no data says nothing either way:
an unknown state neither resolves a page nor clears a warning.

This module sits beside ``bot.slo`` rather than in it: it reaches triage, the store and the context, which
import the settings, which import ``bot.slo.model``; inside the package that would be an import cycle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sqlmodel import col, select

from bot.context import AppContext
from bot.slo.check import Clear, Warn, fmt_budget, fmt_burn, pair_text, warning_of
from bot.slo.evaluate import SliPort, SloState, SloStatus, evaluate_slo
from bot.slo.model import SLO
from bot.slo.rules import ALERT_NAME, prom_duration
from bot.store.db import Database
from bot.store.models import Alert
from bot.triage.alert import AlertIn
from bot.triage.severity import normalise_severity

log = logging.getLogger(__name__)

SOURCE: Final = "slo"
CHECK_INTERVAL_S = 60.0  # the 14.4x page's short window is 5 min: a check a minute sees it within its first fifth


@dataclass(frozen=True)
class FiredAlert:
    """An SLO page stored as firing: what resolving it repeats."""

    slo: str
    service: str
    severity: str
    labels: dict[str, str]
    starts_at: float


def fingerprint_of(slo_name: str) -> str:
    """The alert's own fingerprint: one per SLO, whichever pair fires, so every check lands in the same alert."""
    return f"{ALERT_NAME}:{slo_name}"


def page_alert(status: SloStatus, starts_at: float) -> AlertIn:
    """The firing alert for a page decision (``starts_at``: when this page began, kept across checks)."""
    slo, window = status.slo, status.decision.window
    assert window is not None and status.decision.severity == "page"
    pair = next(p for p in status.decision.pairs if p.window == window)
    burns = ", ".join(f"{prom_duration(w)}: {fmt_burn(b)}x" for w, b in sorted(status.burns.items())
                      if w != slo.period_seconds)
    return AlertIn(
        source=SOURCE,
        name=ALERT_NAME,
        status="firing",
        severity=normalise_severity("page"),
        service=slo.service,
        labels={"alertname": ALERT_NAME, "slo": slo.name, "service": slo.service, "severity": "page",
                "long_window": prom_duration(window.long), "short_window": prom_duration(window.short)},
        annotations={
            "summary": (f"SLO {slo.name} of {slo.service} burns its {slo.period} error budget at "
                        f"{pair_text(pair)} (page at {window.factor:g}x)"),
            "burn_rates": burns,
            "budget_left": fmt_budget(status.budget_left),
            "objective": f"{slo.objective:g} over {slo.period}",
        },
        starts_at=starts_at,
        fingerprint=fingerprint_of(slo.name),
    )


def resolved_alert(fired: FiredAlert, now: float, why: str) -> AlertIn:
    """The same alert, resolved: same fingerprint and labels, so triage resolves what it opened."""
    return AlertIn(
        source=SOURCE,
        name=ALERT_NAME,
        status="resolved",
        severity=fired.severity,
        service=fired.service,
        labels=fired.labels,
        annotations={"summary": f"SLO {fired.slo}: {why}"},
        starts_at=fired.starts_at,
        ends_at=now,
        fingerprint=fingerprint_of(fired.slo),
    )


async def fired_alerts(db: Database) -> dict[str, FiredAlert]:
    """The SLO pages stored as firing, by SLO name: what earlier checks (of any replica) opened."""
    q = select(col(Alert.labels), col(Alert.severity), col(Alert.service), col(Alert.starts_at)).where(
        col(Alert.source) == SOURCE, col(Alert.status) == "firing", col(Alert.name) == ALERT_NAME)
    async with db.session() as s:
        rows = (await s.execute(q)).all()
    return {labels["slo"]: FiredAlert(labels["slo"], service, severity, dict(labels), starts_at)
            for labels, severity, service, starts_at in rows if labels.get("slo")}


def alerts_for(statuses: Sequence[SloStatus], fired: Mapping[str, FiredAlert], slos: Sequence[SLO],
               now: float) -> list[AlertIn]:
    """What to ingest: a firing alert per page, a resolved one per stored page whose burn stopped (or whose
    SLO is no longer configured). An SLO in an unknown state (a query failed) keeps what it had."""
    out: list[AlertIn] = []
    for st in statuses:
        before = fired.get(st.slo.name)
        if st.state == SloState.PAGE:
            out.append(page_alert(st, before.starts_at if before is not None else now))
        elif before is not None and st.state not in (SloState.ERROR, SloState.NO_DATA):  # unknown is not health
            out.append(resolved_alert(before, now, "the error budget burn is back under the page rates"))
    configured = {s.name for s in slos}
    out.extend(resolved_alert(f, now, "the SLO is no longer configured")
               for name, f in sorted(fired.items()) if name not in configured)
    return out


async def _tell(what: str, call: Awaitable[object]) -> None:
    # The receiver is another component (watch items): its failure must not stop the other SLOs' signals.
    try:
        await call
    except Exception:
        log.exception("SLO check: %s failed", what)


async def check_slos(ctx: AppContext, sli: SliPort, *, now: float, warn: Warn, clear: Clear) -> list[SloStatus]:
    """Evaluate ``ctx.settings.slos`` at ``now``; page through triage, warn or clear slow burns; the statuses."""
    if ctx.triage is None:
        raise RuntimeError("check_slos needs the triage service (ctx.triage): build the context with context_for")
    slos = ctx.settings.slos
    statuses = list(await asyncio.gather(*(evaluate_slo(s, sli, now) for s in slos)))
    alerts = alerts_for(statuses, await fired_alerts(ctx.db), slos, now)
    if alerts:
        await ctx.triage.ingest(alerts)
    for st in statuses:
        if st.errors:
            windows = ", ".join(prom_duration(w) for w in st.errors)
            log.warning("SLO %s: could not read %s: %s", st.slo.name, windows, next(iter(st.errors.values())))
        if st.state == SloState.TICKET:
            await _tell(f"warn({st.slo.name})", warn(warning_of(st)))
        elif st.state == SloState.OK:  # a page: its incident takes the warning over; no data is not health
            await _tell(f"clear({st.slo.name})", clear(st.slo.name))
    return statuses
