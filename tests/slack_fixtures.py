"""Helpers for the chat tests: minimal domain rows written straight to the database, Slack settings, waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.store.db import Database
from bot.store.models import Evidence, Finding, Incident, Investigation, Proposal
from tests.fakes.slack_api import BOT_TOKEN

ROOT = Path(__file__).resolve().parents[1]
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
INCIDENT_CHANNEL = "CINCIDENTS"
ALERT_CHANNEL = "CALERTS"

T0 = 1_700_000_000.0

REPORT: dict[str, Any] = {
    "abstained": False,
    "ranked_services": ["checkout", "payments"],
    "causes": [
        {"service": "checkout", "kind": "deploy regression", "confidence": 0.82, "evidence": ["e1", "e2", "e3"],
         "summary": "error rate rose right after deploy v2.3.1"},
        {"service": "payments", "kind": "latency", "confidence": 0.31, "evidence": ["e4"], "summary": ""},
    ],
    "evidence": [
        {"id": "e1", "source": "prometheus", "kind": "metric", "service": "checkout", "signal": "error_rate",
         "query": 'sum(rate(http_requests_total{service="checkout",code=~"5.."}[5m]))',
         "summary": "5xx rate up 40x", "before": 0.01, "after": 0.4, "z": 12.0, "onset": T0 + 600,
         "link": "http://prometheus.local/graph?g0.expr=x"},
        {"id": "e2", "source": "loki", "kind": "logs", "service": "checkout", "signal": "log_errors", "query": "{app=\"checkout\"}",
         "summary": "new error template", "before": 0.0, "after": 120.0,
         "excerpt": "ERROR NullPointerException at CartService.total <!channel> <http://evil|click>"},
        {"id": "e3", "source": "github", "kind": "change", "service": "checkout", "signal": "deploy", "query": "",
         "summary": "deploy v2.3.1", "onset": T0 + 540, "diff_link": "https://github.com/acme/checkout/compare/v2.3.0...v2.3.1",
         "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
        {"id": "e4", "source": "prometheus", "kind": "metric", "service": "payments", "signal": "latency_p99",
         "query": "histogram_quantile(0.99, ...)", "summary": "p99 up", "before": 0.2, "after": 0.5},
    ],
    "steps": [
        {"n": 1, "looked_at": "error rate of checkout, payments", "concluded": "checkout errors up at 10:10"},
        {"n": 2, "looked_at": "deploys in the window", "concluded": "checkout v2.3.1 at 10:09"},
        {"n": 3, "looked_at": "logs of checkout", "concluded": "a new NullPointerException template"},
    ],
    "missing": ["tempo: timed out after 10s"],
}


def slack_settings(sqlite_url: str, api_url: str, **slack: Any) -> Settings:
    conf: dict[str, Any] = {"bot_token": BOT_TOKEN, "signing_secret": SECRET, "api_url": api_url,
                            "incident_channel": INCIDENT_CHANNEL, "alert_channels": [ALERT_CHANNEL],
                            "usergroup_cache_s": 300}
    conf.update(slack)
    return Settings(database={"url": sqlite_url}, runbooks={"dir": ROOT / "runbooks"},  # type: ignore[arg-type]
                    slack=conf, approvals={"groups": {"sre-oncall": ["slack:UALICE", "slack:SONCALL"]}})  # type: ignore[arg-type]


async def make_incident(db: Database, **kw: Any) -> Incident:
    inc = Incident(title=kw.pop("title", "checkout 5xx errors"), severity=kw.pop("severity", "critical"),
                   services=kw.pop("services", ["checkout"]), owner=kw.pop("owner", "team-shop"), **kw)
    async with db.begin() as s:
        s.add(inc)
    return inc


async def make_investigation(db: Database, incident_id: str, report: dict[str, Any] | None = None,
                             status: str = "done", rows: bool = False) -> Investigation:
    report = REPORT if report is None else report
    inv = Investigation(incident_id=incident_id, status=status, started_at=time.time(), finished_at=time.time(),
                        abstained=bool(report.get("abstained")), report={} if rows else report,
                        missing=list(report.get("missing") or []))
    async with db.begin() as s:
        s.add(inv)
        await s.flush()
        if rows:
            for e in report["evidence"]:
                s.add(Evidence(investigation_id=inv.id, key=e["id"], source=e["source"], kind=e["kind"],
                               service=e["service"], query=e["query"], summary=e["summary"], before=e.get("before"),
                               after=e.get("after"), link=e.get("link", ""),
                               data={k: v for k, v in e.items() if k in ("excerpt", "trace_id", "diff_link")}))
            for i, c in enumerate(report["causes"], 1):
                s.add(Finding(investigation_id=inv.id, rank=i, service=c["service"], kind=c["kind"],
                              confidence=c["confidence"], evidence_keys=c["evidence"], summary=c["summary"]))
    return inv


async def make_proposal(db: Database, incident_id: str, risk: str = "medium", **kw: Any) -> Proposal:
    p = Proposal(incident_id=incident_id, runbook_id=kw.pop("runbook_id", "rollout-restart"),
                 title=kw.pop("title", "Restart checkout"), service=kw.pop("service", "checkout"),
                 params=kw.pop("params", {"namespace": "shop", "deployment": "checkout"}),
                 preview=kw.pop("preview", {"command": "kubectl rollout restart deploy/checkout -n shop"}),
                 risk=risk, expires_at=time.time() + 3600, **kw)
    async with db.begin() as s:
        s.add(p)
    return p


async def eventually(check: Callable[[], Any | Awaitable[Any]], within: float = 10.0, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (listeners run after the ack)."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {within}s (last value: {last!r})")
