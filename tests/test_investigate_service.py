"""Investigations as durable work: request -> job -> run -> stored report, evidence, findings, audit."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlmodel import select

from bot.audit import Actor, verify_chain
from bot.chat.outbox import HubRenderer
from bot.config import Settings
from bot.incidents.outbox import Outbox
from bot.investigate import service
from bot.investigate.report import Cause, Report
from bot.investigate.requests import request_investigation
from bot.investigate.service import run_investigation
from bot.jobs import JobQueue
from bot.memory.feedback import set_cause
from bot.memory.store import remember
from bot.messages.model import steps_key
from bot.store.models import Alert, AuditEvent, Evidence, Finding, Incident, Investigation, Job
from integrations.base import SourceUnavailable
from integrations.replay import ReplayMetrics, replay_sources
from tests.fakes.openai_tools import Turn, answer, serve_scripted
from tests.investigate_fixtures import ALERT, INJECT, T0, add_on, chain, make_case, up_on


class _Chat:
    """Stands for the chat hub: records the domain events the service emits, in order."""

    def __init__(self) -> None:
        self.finished: list[tuple[str, str]] = []
        self.events: list[tuple[str, str]] = []

    async def investigation_finished(self, incident_id: str, investigation_id: str) -> None:
        self.finished.append((incident_id, investigation_id))
        self.events.append(("finished", incident_id))

    async def incident_updated(self, incident_id: str) -> None:
        self.events.append(("card", incident_id))

    async def post(self, incident_id: str, message) -> None:
        self.events.append(("post", message.key))

    async def replace(self, incident_id: str, key: str, message) -> None:
        self.events.append(("replace", key))


class _Remediation:
    def __init__(self) -> None:
        self.proposed: list[tuple[str, str]] = []

    async def propose(self, incident_id: str, investigation_id: str) -> None:
        self.proposed.append((incident_id, investigation_id))


async def _setup(db, tmp_path: Path, effect) -> SimpleNamespace:
    case = make_case(tmp_path, effect)
    ctx = SimpleNamespace(db=db, jobs=JobQueue(db), chat=_Chat(), remediation=_Remediation(), memory=None,
                          settings=SimpleNamespace(triage=None), sources_factory=lambda: replay_sources(case),
                          outbox=Outbox(db))
    ctx.outbox.subscribe(HubRenderer(lambda: ctx.chat))  # chat hears the service through the outbox, as served
    async with db.begin() as s:
        s.add(Incident(id="INC-T1", title="storefront slow", services=["frontend"]))
        await s.flush()
        s.add(Alert(fingerprint="f" * 16, source="alertmanager", name="Crafted", status="firing",
                    service="frontend", starts_at=float(ALERT), incident_id="INC-T1"))
    return ctx


async def test_request_then_run(db, tmp_path: Path) -> None:
    effect = chain(add_on("payment", "cpu", 70.0), add_on("frontend", "latency_p90", 0.2, INJECT + 30))
    ctx = await _setup(db, tmp_path, effect)
    inv_id = await request_investigation(ctx, "INC-T1", Actor("slack", "U1", "ana"))
    assert await request_investigation(ctx, "INC-T1", Actor("slack", "U1", "ana")) != inv_id
    async with db.session() as s:
        jobs = (await s.exec(select(Job).where(Job.kind == "investigation"))).all()
        assert {"investigation_id": inv_id} in [j.payload for j in jobs]
        assert (await s.get(Investigation, inv_id)).status == "queued"
    await run_investigation(ctx, inv_id)
    async with db.session() as s:
        inv = await s.get(Investigation, inv_id)
        assert inv.status == "done" and not inv.abstained
        assert inv.report["ranked_services"][0] == "payment"
        findings = (await s.exec(select(Finding).where(Finding.investigation_id == inv_id))).all()
        assert sorted(f.rank for f in findings)[0] == 1
        top = next(f for f in findings if f.rank == 1)
        assert (top.service, top.kind) == ("payment", "cpu_saturation")
        keys = {e.key for e in (await s.exec(select(Evidence).where(Evidence.investigation_id == inv_id))).all()}
        assert set(top.evidence_keys) <= keys
        actions = [a.action for a in (await s.exec(select(AuditEvent).order_by(AuditEvent.seq))).all()]
        assert actions.count("investigation.step") == len(inv.report["steps"])
        assert "investigation.requested" in actions and actions[-1] == "investigation.result"
        assert (await s.get(Incident, "INC-T1")).phase == "cause_found"
    assert ctx.chat.finished == [("INC-T1", inv_id)]
    assert ctx.chat.events[0] == ("card", "INC-T1") and ctx.chat.events[-1] == ("finished", "INC-T1")
    # the reasoning is one message: posted with the first step, edited with each next one
    n_steps = len(inv.report["steps"])
    live = [(e, k) for e, k in ctx.chat.events if e in ("post", "replace")]
    assert live == [("post", steps_key(inv_id))] + [("replace", steps_key(inv_id))] * (n_steps - 1)
    assert ctx.remediation.proposed == [("INC-T1", inv_id)]
    assert (await verify_chain(db)).ok
    # a redelivered job does nothing twice
    await run_investigation(ctx, inv_id)
    assert ctx.chat.finished == [("INC-T1", inv_id)]


async def test_inconclusive(db, tmp_path: Path) -> None:
    ctx = await _setup(db, tmp_path, None)
    inv_id = await request_investigation(ctx, "INC-T1", Actor("cli", "op"))
    await run_investigation(ctx, inv_id)
    async with db.session() as s:
        inv = await s.get(Investigation, inv_id)
        assert inv.abstained and inv.status == "done"
        assert (await s.get(Incident, "INC-T1")).phase == "inconclusive"
    assert ctx.remediation.proposed == []
    assert ctx.chat.finished == [("INC-T1", inv_id)]


async def test_cpu_effect_helper_is_used(tmp_path: Path) -> None:
    # keeps the helper honest: the effect changes only the named series after the injection
    import numpy as np

    fx = up_on("payment", "cpu", 2.0)
    t = np.array([INJECT - 10.0, INJECT + 10.0])
    assert list(fx("payment", "cpu", t, np.array([1.0, 1.0]))) == [1.0, 2.0]
    assert list(fx("orders", "cpu", t, np.array([1.0, 1.0]))) == [1.0, 1.0]


# ---------------------------------------------------------------- live steps, the card, the chart, the LLM


class _RecordingAdapter:
    """A chat adapter added to a real ChatHub: records what reaches the platform, in order, and the
    incident's phase at the moment each card update arrives."""

    platform = "recording"

    def __init__(self, db) -> None:
        self.db = db
        self.log: list[tuple[str, object]] = []

    async def announce(self, card, origin) -> None:
        self.log.append(("announce", card.phase))

    async def update_card(self, card) -> None:
        self.log.append(("card", card.phase))

    async def post(self, incident_id: str, message) -> None:
        self.log.append(("post", message))

    async def replace(self, incident_id: str, key: str, message) -> None:
        self.log.append(("replace", key))


async def _hub_ctx(db, tmp_path: Path, effect, llm=None) -> tuple[SimpleNamespace, _RecordingAdapter]:
    from bot.chat.hub import ChatHub

    ctx = await _setup(db, tmp_path, effect)
    rec = _RecordingAdapter(db)
    ctx.chat = ChatHub(db, [rec])
    ctx.settings = SimpleNamespace(triage=None, llm=llm)
    return ctx, rec


async def test_steps_are_posted_as_they_happen(db, tmp_path: Path) -> None:
    from bot.messages.model import Step as ChatStep
    from bot.messages.model import Text, steps_key

    effect = chain(add_on("payment", "cpu", 70.0), add_on("frontend", "latency_p90", 0.2, INJECT + 30))
    ctx, rec = await _hub_ctx(db, tmp_path, effect)
    inv_id = await request_investigation(ctx, "INC-T1", Actor("cli", "op"))
    await run_investigation(ctx, inv_id)
    # the card moves to Investigating before anything else is said
    assert rec.log[0] == ("card", "investigating")
    async with db.session() as s:
        report = (await s.get(Investigation, inv_id)).report
    key = steps_key(inv_id)
    live = [(i, m) for i, (kind, m) in enumerate(rec.log) if kind in ("post", "replace") and getattr(m, "key", m) == key]
    # posted once with the first step, then edited in place with each next step, each edit holding all so far
    assert rec.log[live[0][0]][0] == "post" and len(live) >= len(report["steps"])
    first = live[0][1]
    heading, step = first.blocks
    assert isinstance(heading, Text) and isinstance(step, ChatStep) and step.index == report["steps"][0]["n"]
    assert report["steps"][0]["looked_at"] in step.text and first.fallback
    # the final summary replaces the live message under the same key, after the last live edit
    final = [m for kind, m in rec.log if kind == "post" and getattr(m, "key", "") == key][-1]
    shown = [b for b in final.blocks if isinstance(b, ChatStep)]
    assert [b.index for b in shown] == [st["n"] for st in report["steps"]][: len(shown)]
    assert shown[-1].kind == "concluded" and {b.kind for b in shown} >= {"looked", "hypothesised", "concluded"}
    last_live = max(i for i, (k, m) in enumerate(rec.log) if k == "replace" and m == key)
    first_other = next(i for i, (k, m) in enumerate(rec.log) if k == "post" and getattr(m, "key", "") != key)
    assert last_live < first_other
    assert ("card", "cause_found") in rec.log[last_live:]


async def test_chart_is_present_and_bounded(db, tmp_path: Path) -> None:
    effect = chain(add_on("payment", "cpu", 70.0), add_on("frontend", "latency_p90", 0.2, INJECT + 30))
    ctx, _ = await _hub_ctx(db, tmp_path, effect)
    inv_id = await request_investigation(ctx, "INC-T1", Actor("cli", "op"))
    await run_investigation(ctx, inv_id)
    async with db.session() as s:
        report = (await s.get(Investigation, inv_id)).report
    chart = report["chart"]
    assert set(chart) >= {"title", "unit", "onset", "series", "markers"}
    names = [s["name"] for s in chart["series"]]
    assert names[0] == "cpu of payment" and any("frontend" in n for n in names)
    scope = report["scope"]
    for s in chart["series"]:
        assert 2 <= len(s["t"]) == len(s["v"]) <= 300
        assert scope["baseline"][0] <= s["t"][0] and s["t"][-1] <= scope["now"]
        assert s["t"] == sorted(s["t"])
    assert chart["onset"] == scope["onset"]
    assert len(json.dumps(chart)) < 40_000
    # the chat renders it as a time series, not the before/after fallback
    from bot.messages.chart import spec_from_report

    spec = spec_from_report(report)
    assert spec is not None and spec.series and not spec.bars


def _cite_top(body: dict[str, Any]) -> Turn:
    ids = re.findall(r"^\[(e\d+)\] \S+ payment ", body["messages"][1]["content"], re.M)
    tool = [json.loads(m["content"].split("\n", 1)[1])["evidence_id"] for m in body["messages"] if m["role"] == "tool"]
    return answer(service="payment", kind="saturation", mechanism="payment's CPU rose before frontend slowed",
                  evidence=ids[:1] + tool, next=["payment's CPU limits"])


async def test_llm_investigator_reading_is_stored(db, tmp_path: Path) -> None:
    from bot.config import LlmSettings
    from bot.messages.model import Text

    script = [Turn(tool_calls=[("metrics", {"service": "payment", "signal": "cpu"})]), _cite_top]
    async with serve_scripted(script) as fake:
        llm = LlmSettings(enabled=True, base_url=fake.url, api_key="sk-test", model="local", timeout_s=5)
        effect = chain(add_on("payment", "cpu", 70.0), add_on("frontend", "latency_p90", 0.2, INJECT + 30))
        ctx, rec = await _hub_ctx(db, tmp_path, effect, llm=llm)
        replaced: list[Any] = []
        record = rec.replace

        async def keep(incident_id: str, key: str, message: Any) -> None:
            replaced.append(message)
            await record(incident_id, key, message)

        rec.replace = keep  # type: ignore[method-assign]
        inv_id = await request_investigation(ctx, "INC-T1", Actor("cli", "op"))
        await run_investigation(ctx, inv_id)
    assert len(fake.seen) == 2 and fake.seen[0]["model"] == "local"
    async with db.session() as s:
        report = (await s.get(Investigation, inv_id)).report
        calls = (await s.exec(select(AuditEvent).where(AuditEvent.action == "llm.call"))).all()
    got = report["llm"]
    assert got["status"] == "accepted" and got["answer"]["service"] == "payment"
    assert got["answer"]["evidence"][-1] == "t1" and got["tool_calls"][0]["name"] == "metrics"
    assert set(got["answer"]["evidence"][:1]) <= {e["id"] for e in report["evidence"]}
    assert [c.result for c in calls] == ["tool_calls", "accepted"]
    assert all(c.params["model"] == "local" and len(c.params["prompt_sha256"]) == 64 and c.params["prompt_tokens"] > 0
               for c in calls)
    assert calls[0].params["tools_called"] == ["metrics"] and calls[0].params["investigation_id"] == inv_id
    assert not any(m.startswith("llm") for m in report["missing"])
    assert report["ranked_services"][0] == "payment"  # the engine's ranking, untouched
    # the thread: the model's own message, posted with its first step, replaced by its reading
    mine = [(k, m) for k, m in rec.log if k in ("post", "replace") and getattr(m, "key", m) == f"llm:{inv_id}"]
    assert [k for k, _ in mine] == ["post", "replace"]
    final = [m for m in replaced if m.key == f"llm:{inv_id}"][-1]
    heading = final.blocks[0]
    assert isinstance(heading, Text) and "model's reading" in heading.text
    assert any("payment (saturation)" in getattr(b, "text", "") for b in final.blocks)


async def test_llm_failure_is_missing_evidence_not_a_crash(db, tmp_path: Path) -> None:
    from bot.config import LlmSettings

    async with serve_scripted([Turn(status=400)]) as fake:  # a client error: not retried, reported at once
        llm = LlmSettings(enabled=True, base_url=fake.url, model="local", timeout_s=5)
        effect = chain(add_on("payment", "cpu", 70.0), add_on("frontend", "latency_p90", 0.2, INJECT + 30))
        ctx, _ = await _hub_ctx(db, tmp_path, effect, llm=llm)
        inv_id = await request_investigation(ctx, "INC-T1", Actor("cli", "op"))
        await run_investigation(ctx, inv_id)
    assert fake.seen
    async with db.session() as s:
        inv = await s.get(Investigation, inv_id)
        calls = (await s.exec(select(AuditEvent).where(AuditEvent.action == "llm.call"))).all()
    assert inv.status == "done" and inv.report["llm"]["status"] == "error" and inv.report["llm"]["answer"] is None
    assert any(m.startswith("llm: ") for m in inv.report["missing"]) and inv.missing == inv.report["missing"]
    assert [c.result.split(":")[0] for c in calls] == ["error"]
    assert inv.report["ranked_services"][0] == "payment"


async def test_a_late_job_investigates_the_alerts_time_not_the_clocks(db, tmp_path: Path) -> None:
    """The window ends at the alert's start plus the lookahead, as for --case and --alert: a job run long
    after the alert (a backlog, a re-run) looks at what happened then, never at whatever is latest."""
    ctx = await _setup(db, tmp_path, chain(add_on("payment", "cpu", 70.0)))
    async with db.begin() as s:
        alert = (await s.exec(select(Alert))).one()
        alert.starts_at = float(T0 + 600)  # the case's clock (its end) is 1,200 s after this alert
        s.add(alert)
    inv_id = await request_investigation(ctx, "INC-T1", Actor("slack", "U1", "ana"))
    await run_investigation(ctx, inv_id)
    async with db.session() as s:
        inv = await s.get(Investigation, inv_id)
    assert inv.report["scope"]["now"] == T0 + 600 + 900


async def test_a_served_investigation_asks_since_when_the_alerts_rule_held(db, tmp_path: Path) -> None:
    """The stored alert's labels go to the metrics source (Prometheus' ALERTS_FOR_STATE in production): a rule
    that held ten minutes before it fired starts the incident a minute before that, not before the alert."""
    ctx = await _setup(db, tmp_path, chain(add_on("payment", "cpu", 70.0)))
    late = float(INJECT + 600)
    asked: list[tuple[dict[str, str], float]] = []

    class RuleState(ReplayMetrics):
        async def pending_since(self, labels: Any, at: float) -> float | None:
            asked.append((dict(labels), at))
            return float(INJECT + 10)

    def sources() -> Any:
        src = ctx.sources_factory_replay()
        src.metrics = RuleState(src.metrics.case)
        return src

    ctx.sources_factory_replay, ctx.sources_factory = ctx.sources_factory, sources
    async with db.begin() as s:
        alert = (await s.exec(select(Alert))).one()
        alert.starts_at, alert.labels = late, {"alertname": "Crafted", "service": "frontend"}
        s.add(alert)
    inv_id = await request_investigation(ctx, "INC-T1", Actor("slack", "U1", "ana"))
    await run_investigation(ctx, inv_id)
    async with db.session() as s:
        inv = await s.get(Investigation, inv_id)
    assert asked == [({"alertname": "Crafted", "service": "frontend"}, late)]
    assert inv.report["scope"]["incident"][0] == INJECT + 10 - 60
    assert inv.report["ranked_services"][0] == "payment"


async def test_a_failed_rule_state_query_is_named_and_the_assumed_start_stands(db, tmp_path: Path) -> None:
    ctx = await _setup(db, tmp_path, chain(add_on("payment", "cpu", 70.0)))

    class Down(ReplayMetrics):
        async def pending_since(self, labels: Any, at: float) -> float | None:
            raise SourceUnavailable("prometheus", "connection refused")

    def sources() -> Any:
        src = replay_sources(ctx.case)
        src.metrics = Down(src.metrics.case)
        return src

    ctx.case, ctx.sources_factory = tmp_path / "crafted-001", sources
    async with db.begin() as s:
        alert = (await s.exec(select(Alert))).one()
        alert.labels = {"alertname": "Crafted", "service": "frontend"}
        s.add(alert)
    inv_id = await request_investigation(ctx, "INC-T1", Actor("slack", "U1", "ana"))
    await run_investigation(ctx, inv_id)
    async with db.session() as s:
        inv = await s.get(Investigation, inv_id)
    assert inv.report["scope"]["incident"][0] == ALERT - 60 and inv.report["ranked_services"][0] == "payment"
    assert any("connection refused" in m and "assumed 60 s before it" in m for m in inv.report["missing"])


async def test_a_confirmed_look_alike_orders_causes_the_evidence_left_tied(db, tmp_path: Path, monkeypatch) -> None:
    """The served path: after the investigation the recall over its report finds a past incident whose cause a
    person confirmed; the engine's tie between two causes is broken in its favour, and stored that way."""
    ctx = await _setup(db, tmp_path, chain(add_on("payment", "cpu", 70.0)))
    ctx.settings = Settings(approvals={"groups": {"oncall": ["slack:U1"]}})
    async with db.begin() as s:
        s.add(Incident(id="INC-OLD1", title="storefront slow", services=["frontend"], status="resolved",
                       resolved_at=time.time()))
        await s.flush()
        s.add(Alert(fingerprint="o" * 16, source="alertmanager", name="Crafted", status="resolved",
                    service="frontend", starts_at=float(T0), incident_id="INC-OLD1"))
    await set_cause(db, ctx.settings, "INC-OLD1", Actor("slack", "U1", "ana"), service="catalog",
                    kind="dependency_failure")
    await remember(db, "INC-OLD1")
    causes = [Cause("payment", "dependency_failure", 0.22, [], "slow payment", 1.0),
              Cause("catalog", "dependency_failure", 0.2, [], "slow catalog", 0.9)]

    async def tied(*_: Any, **__: Any) -> Report:
        return Report(abstained=True, ranked_services=["payment", "catalog"], causes=causes, evidence=[], steps=[],
                      missing=[], reason="not separated", separation=0.1)

    monkeypatch.setattr(service, "investigate", tied)
    inv_id = await request_investigation(ctx, "INC-T1", Actor("slack", "U1", "ana"))
    await run_investigation(ctx, inv_id)
    async with db.session() as s:
        inv = await s.get(Investigation, inv_id)
        ranks = (await s.exec(select(Finding).where(Finding.investigation_id == inv_id))).all()
    assert inv.report["ranked_services"] == ["catalog", "payment"] and inv.abstained
    assert inv.report["steps"][-1]["looked_at"] == "Memory: INC-OLD1 (confirmed) was caused in catalog"
    assert sorted((f.rank, f.service) for f in ranks) == [(1, "catalog"), (2, "payment")]
