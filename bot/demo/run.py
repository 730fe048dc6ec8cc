"""``onwatch demo``: watch onwatch handle a simulated incident end to end, on one machine, with no network.

What runs is the real product, wired the way ``onwatch serve`` wires it; only the world around it is
simulated:

1. the database is the one in ``ONWATCH_DATABASE__URL`` or a fresh temporary SQLite file (we say which),
   migrated to head;
2. a small shop is simulated (``bot.demo.simulate``) and written as a case bundle; the replay source
   (``sources.replay.path``) serves it to the engine as metrics, logs, traces, topology and changes;
3. the shop's alert is POSTed to the real webhook endpoint on a loopback port (bearer token), so intake,
   triage and the durable investigation job run as in production;
4. the incident thread is rendered in the terminal by ``TerminalAdapter`` (a chat adapter like Slack's);
5. an on-call approver clicks Approve on the top proposal (``RemediationService.decide``); the runbook is
   an ``http`` runbook pointed at a tiny loopback "deploy controller" that rolls the simulated
   payments-api back, after which the simulated shop is fast-forwarded a few minutes so verification
   has fresh telemetry to read;
6. the audit chain is verified and a summary printed.

With ``--serve`` the same server then stays up with the read-only web view (docs/web.md) switched on and a fresh
viewer token: the demo ends by printing the incident page's URL and the token, and serves until Ctrl-C.

A step that has nothing to act on (no runbook proposed) is skipped with a note.

``--scenario drift`` simulates three hours in which checkout's latency creeps up for half an hour before it
pages. Before the alert, the demo steps a simulated scheduler clock through those hours: every
``detect.every_s`` of simulated time the leader's degradation scan (``scan_and_watch``) runs over the replay
sources with their clock at that tick, feeding ``ctx.watch``, whose poster shows the early warning in the
terminal when it is raised. The investigation then starts from that warning (escalation), and the rest
(approval, rollback of checkout, verification, audit) runs as in the default ``rollout`` scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import col, select

from bot.app import build_context, build_runner, web_app
from bot.audit import BOT, Actor, verify_chain
from bot.config import Settings
from bot.context import AppContext
from bot.demo.simulate import NAMESPACE, SERVICES, Scenario, ShopCase, simulate
from bot.demo.terminal import Palette, TerminalAdapter, TerminalWatchPoster, use_colour
from bot.detect.scan import scan_and_watch
from bot.messages.format import utc_clock
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import Execution, Finding, Investigation, Job, Proposal, WatchItem
from bot.watch.model import WatchFinding, WatchOutcome
from bot.watch.service import WatchService
from integrations.base import Sources
from integrations.replay import ReplayCase, replay_sources

log = logging.getLogger(__name__)

APPROVER = Actor("slack", "U0DEMOONCALL", "dana (on call)")
APPROVER_GROUP = "payments-oncall"
FAST_FORWARD_S = 240.0  # how far the simulated shop runs on after the rollback, for verification
DELAYED_JOB_WAIT_S = 20.0  # a job due within this long (e.g. a verification poll) is waited for
OWNERS = {"frontend": "web-team", "catalog": "web-team", "cart": "shop-team", "checkout": "shop-team",
          "payments-api": "payments-team", "payments-db": "payments-team", "shipping": "logistics-team",
          "redis": "platform-team"}
DEPLOYMENTS = tuple(s for s in SERVICES if s not in ("payments-db", "redis"))  # the shop's stateless Deployments
# The degradation scan of the drift scenario: every simulated minute, the last two hours, an hour of baseline.
DRIFT_DETECT = {"every_s": 60, "lookback_s": 7200, "baseline_s": 3600}


@dataclass
class DemoResult:
    """What happened, for the summary and the tests."""

    database: str = ""
    workdir: Path | None = None
    incident_id: str | None = None
    investigation_id: str | None = None
    investigation_s: float | None = None
    top_cause: dict[str, Any] | None = None
    proposal_title: str = ""
    decision: str = ""
    execution: str = ""
    verification: str = ""
    audit_ok: bool = False
    audit_rows: int = 0
    skipped: list[str] = field(default_factory=list)
    rollbacks: int = 0
    page_url: str = ""  # with --serve: the incident's web page
    scenario: str = str(Scenario.ROLLOUT)
    alert_at: float | None = None  # the alert's startsAt
    scans: int = 0  # drift: scheduler ticks before the alert
    outcomes: dict[str, int] = field(default_factory=dict)  # drift: what the watch did with each finding
    warnings: list[WatchItem] = field(default_factory=list)  # drift: the watch items opened before the alert
    early_warnings: list[dict[str, Any]] = field(default_factory=list)  # the investigation's report["early_warnings"]


# ----------------------------------------------------------------------------- the simulated deploy controller


class ShopController:
    """The target of the demo's rollback runbook: a loopback HTTP endpoint that "rolls back" the simulated
    payments-api, then fast-forwards the simulation so the replay source holds the minutes after."""

    def __init__(self, seed: int, anchor: float, case_dir: Path, narrator: Narrator | None = None,
                 scenario: Scenario = Scenario.ROLLOUT, culprit: str = "payments-api"):
        self.narrator = narrator
        self.seed = seed
        self.anchor = anchor
        self.case_dir = case_dir
        self.scenario = scenario
        self.culprit = culprit
        self.calls: list[dict[str, Any]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _rollback(self, request: web.Request) -> web.Response:
        return await self._act(request, "rollback")

    async def _restart(self, request: web.Request) -> web.Response:
        return await self._act(request, "restart")

    async def _act(self, request: web.Request, action: str) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        try:
            body = await request.json()
        except (ValueError, aiohttp.ContentTypeError):
            body = {}
        if ns != NAMESPACE or name not in DEPLOYMENTS:
            return web.json_response({"error": f"no deployment {ns}/{name} in the simulated shop"}, status=404)
        at = time.time()
        self.calls.append({"at": at, "deployment": f"{ns}/{name}", "body": body, "action": action})
        # only the culprit behaves differently once rolled back (or, in the drift scenario, restarted); any other
        # rollback or restart changes nothing
        hit = at if name == self.culprit else None
        if action == "restart" and self.scenario is not Scenario.DRIFT:
            hit = None  # a restart of the rollout scenario's new version keeps the same query: nothing changes
        shop = await asyncio.to_thread(simulate, self.seed, anchor=self.anchor, scenario=self.scenario,
                                       rollback_at=hit if action == "rollback" else None,
                                       restart_at=hit if action == "restart" else None, until=at + FAST_FORWARD_S)
        await asyncio.to_thread(_replace_bundle, shop, self.case_dir)
        what = "rolling it back" if action == "rollback" else "restarting it"
        if self.narrator is not None:
            self.narrator.note(
                f"⚙ the shop's deploy controller got POST {request.path}: {what}, pod by pod; the simulated shop "
                f"runs {FAST_FORWARD_S / 60:.0f} more minutes so there is telemetry after it")
        done = "rolled back" if action == "rollback" else "restarted"
        return web.json_response({"status": done, "deployment": f"{ns}/{name}"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/deployments/{namespace}/{name}/rollback", self._rollback)
        app.router.add_post("/deployments/{namespace}/{name}/restart", self._restart)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = _bound_port(site)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _bound_port(site: web.TCPSite) -> int:
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1])


def _replace_bundle(shop: ShopCase, case_dir: Path) -> None:
    """Write the longer run next to the bundle, then move each file over its old self (each move is atomic)."""
    staging = case_dir.parent / f".staging-{secrets.token_hex(4)}"
    written = shop.write(staging)
    for f in sorted(written.iterdir()):
        os.replace(f, case_dir / f.name)
    shutil.rmtree(staging, ignore_errors=True)


# What both demo runbooks share: the shop's scope, a confidence floor, approval, and verification on checkout's p99.
RUNBOOK_POLICY = """\
scope:
  services: [%(services)s]
  hosts: ["127.0.0.1"]
preconditions:
  - check: min_confidence
    value: 0.3
risk: medium
approval:
  groups: [%(group)s]
verify:
  signal: latency_p99
  below: 0.5
  deadline_s: 60
  poll_s: 0.5
  consecutive: 2
  lookback_s: 120
"""


RUNBOOK = """\
# Generated by `onwatch demo`: roll the simulated payments-api back through its loopback deploy controller.
id: demo-rollback-deploy
title: Roll back {service} to its previous version
description: >-
  Undo the most recent rollout of {service} ({namespace}/{deployment}) through the shop's deploy
  controller. Use when a deploy shortly before the symptoms is the likely cause.
match:
  # a deploy, or the failing service itself (the engine may name it either way when a rollout preceded it)
  kinds: [deploy, dependency_failure]
  services: ["*"]
action:
  executor: http
  method: POST
  url: http://127.0.0.1:%(port)d/deployments/{namespace}/{deployment}/rollback
  body:
    service: "{service}"
    incident: "{incident_id}"
""" + RUNBOOK_POLICY


RESTART_RUNBOOK = """\
# Generated by `onwatch demo --scenario drift`: restart a simulated service's pods through the deploy controller.
id: demo-restart-deployment
title: Restart {service}, pod by pod
description: >-
  Restart the pods of {service} ({namespace}/{deployment}) one at a time through the shop's deploy
  controller. Use when the service itself runs out of CPU or memory: fresh pods buy time to find why.
match:
  kinds: [cpu_saturation, memory_saturation]
  services: ["*"]
action:
  executor: http
  method: POST
  url: http://127.0.0.1:%(port)d/deployments/{namespace}/{deployment}/restart
  body:
    service: "{service}"
    incident: "{incident_id}"
""" + RUNBOOK_POLICY


def write_runbooks(folder: Path, port: int, scenario: Scenario = Scenario.ROLLOUT) -> Path:
    """The demo's runbooks: the rollback, and for the drift scenario a restart too."""
    folder.mkdir(parents=True, exist_ok=True)
    values = {"port": port, "group": APPROVER_GROUP, "services": ", ".join(DEPLOYMENTS)}
    (folder / "demo-rollback-deploy.yaml").write_text(RUNBOOK % values)
    if scenario is Scenario.DRIFT:
        (folder / "demo-restart-deployment.yaml").write_text(RESTART_RUNBOOK % values)
    return folder


# ----------------------------------------------------------------------------- set-up


def pick_database(workdir: Path) -> tuple[str, str]:
    """(url, sentence saying which database the demo uses)."""
    configured = os.environ.get("ONWATCH_DATABASE__URL")
    if configured:
        try:
            shown = make_url(configured).render_as_string(hide_password=True)
        except (ArgumentError, ValueError):  # Database() reports the details later
            shown = "(unparseable URL)"
        return configured, f"the configured database {shown} (from ONWATCH_DATABASE__URL)"
    path = workdir / "onwatch.db"
    return f"sqlite:///{path}", f"a fresh temporary SQLite file {path} (set ONWATCH_DATABASE__URL to use yours)"


def demo_settings(db_url: str, case_dir: Path, runbook_dir: Path, token: str,
                  viewer_token: str | None = None, scenario: Scenario = Scenario.ROLLOUT) -> Settings:
    """Settings of the demo only: nothing is read from ONWATCH_* (no Slack, no LLM, no live sources). With a
    ``viewer_token`` (``--serve``) the web view is on, behind that token. The drift scenario's scan
    (``DRIFT_DETECT``) fits its three simulated hours."""
    web_view = {"enabled": True, "viewer_token": viewer_token} if viewer_token else {}
    detect = DRIFT_DETECT if scenario is Scenario.DRIFT else {}
    return Settings(  # type: ignore[call-arg]
        _env_prefix="ONWATCH_DEMO_UNUSED_",
        web=web_view,
        detect=detect,
        database={"url": db_url},
        server={"host": "127.0.0.1", "port": 0, "workers": 1, "log_level": "WARNING"},
        webhooks={"token": token},
        runbooks={"dir": runbook_dir, "deployments": {svc: f"{NAMESPACE}/{svc}" for svc in DEPLOYMENTS}},
        approvals={"groups": {APPROVER_GROUP: [f"{APPROVER.platform}:{APPROVER.id}"]}},
        sources={"replay": {"path": case_dir}},
        triage={"owners": OWNERS},
    )


@contextlib.asynccontextmanager
async def serving(ctx: AppContext, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[int]:
    """The real aiohttp application (webhooks included, and the web view when it is on) on ``host:port``."""
    runner = web.AppRunner(web_app(ctx), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise DemoError(f"cannot serve the web view on {host}:{port}: {exc.strerror or exc} "
                        "(choose another with --port)") from None
    try:
        yield _bound_port(site)
    finally:
        await runner.cleanup()


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """``onwatch demo --serve``: where the web view listens, and what ends it (Ctrl-C by default)."""

    host: str = "127.0.0.1"
    port: int = 8080
    stop: asyncio.Event | None = None


async def _serve_web(ctx: AppContext, res: DemoResult, viewer_token: str, opts: ServeOptions, say: Narrator) -> None:
    """Keep the server up with the web view on; print the incident page's URL and the viewer token."""
    stop = opts.stop or asyncio.Event()
    async with serving(ctx, opts.host, opts.port) as port:
        shown_host = "127.0.0.1" if opts.host in ("0.0.0.0", "::", "") else opts.host
        base = f"http://{shown_host}:{port}"
        res.page_url = f"{base}/ui/incidents/{res.incident_id}" if res.incident_id else f"{base}/ui/"
        say.step("The web view")
        say.say(f"incident page: {say.p.bold(res.page_url)}")
        say.say(f"viewer token:  {viewer_token}")
        say.note("paste the token into the login form (or send it as Authorization: Bearer …); "
                 "serving until Ctrl-C")
        await stop.wait()


# ----------------------------------------------------------------------------- the story


class Narrator:
    def __init__(self, out: TextIO, palette: Palette):
        self.out = out
        self.p = palette
        self.n = 0

    def step(self, text: str) -> None:
        self.n += 1
        self.out.write("\n" + self.p.bold(self.p.cyan(f"[{self.n}] ")) + self.p.bold(text) + "\n")
        self.out.flush()

    def say(self, text: str) -> None:
        self.out.write("    " + text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.out.write("    " + self.p.dim(text) + "\n")
        self.out.flush()


async def run_jobs(ctx: AppContext, runner: Any) -> int:
    """Run durable jobs until none is due; wait for jobs due shortly (a scheduled verification poll)."""
    total = 0
    while True:
        total += await runner.run_until_idle()
        async with ctx.db.session() as s:
            nxt = (await s.exec(select(Job).where(Job.status == "queued").order_by(col(Job.available_at)))).first()
        if nxt is None:
            return total
        wait = nxt.available_at - time.time()
        if wait > DELAYED_JOB_WAIT_S:
            return total
        await asyncio.sleep(max(0.0, wait) + 0.05)


async def _post_alert(port: int, token: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.post(
        f"http://127.0.0.1:{port}/webhooks/alertmanager", json=payload,
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        try:
            body = await resp.json()
        except (aiohttp.ContentTypeError, ValueError):
            body = {"error": (await resp.text())[:300]}
        return resp.status, body


async def _ingest(ctx: AppContext, token: str, payload: dict[str, Any], say: Narrator) -> str | None:
    """The alert through the real intake: the Alertmanager webhook of the served application."""
    async with serving(ctx) as port:
        status, body = await _post_alert(port, token, payload)
    if status == 200 and ctx.triage is not None:
        await ctx.triage.drained()  # the incident's thread is posted before the story goes on
    if status == 200:
        say.note(f"POST /webhooks/alertmanager → 200 {body.get('status', '')}: "
                 f"opened {', '.join(body.get('opened') or []) or 'nothing'}")
    if status != 200:
        raise DemoError(f"the webhook refused the demo alert ({status}): {body.get('error', body)}")
    ids = list(body.get("opened") or body.get("incident_ids") or [])
    return ids[0] if ids else None


class DemoError(Exception):
    """The demo could not go on; the message says why."""


# ----------------------------------------------------------------------------- the scheduler, simulated


class SimulatedClock:
    """The watch's clock: the scheduler tick while the demo steps through the simulated hours, else wall time."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self) -> float:
        return self.at if self.at is not None else time.time()


class TalliedWatch:
    """``ctx.watch`` as the scan sees it, counting what it did with each finding (the narration says so)."""

    def __init__(self, watch: WatchService):
        self.watch = watch
        self.outcomes: Counter[str] = Counter()
        self.held: Counter[str] = Counter()  # finding key -> times it was seen again and held, rate-limited...

    async def observe(self, finding: WatchFinding) -> WatchOutcome:
        outcome = await self.watch.observe(finding)
        self.outcomes[str(outcome)] += 1
        if outcome is not WatchOutcome.OPENED:
            self.held[f"{finding.key} {outcome}"] += 1
        return outcome

    async def recover(self, keys_still_holding: Iterable[str], kind: str,
                      judged: Iterable[str] | None = None) -> list[str]:
        return await self.watch.recover(keys_still_holding, kind, judged)

    async def close(self, key: str, reason: str = "recovered", actor: Actor = BOT) -> bool:
        return await self.watch.close(key, reason, actor)

    async def escalate(self, incident_id: str, services: Sequence[str]) -> list[dict[str, Any]]:
        return await self.watch.escalate(incident_id, services)


def scan_ticks(shop: ShopCase, every_s: float, lookback_s: float) -> list[float]:
    """The scheduler's ticks before the alert: every ``every_s`` from the first one with a full lookback."""
    tl = shop.timeline
    first = math.ceil((tl.start + lookback_s) / every_s) * every_s
    alert = float(shop.facts["detection"])
    return [first + i * every_s for i in range(max(0, math.ceil((alert - first) / every_s)))]


async def _watch_the_shop(ctx: AppContext, shop: ShopCase, case_dir: Path, poster: TerminalWatchPoster,
                          clock: SimulatedClock, res: DemoResult, say: Narrator) -> None:
    """Step the leader's degradation scan through the simulated hours before the alert, as ``onwatch serve``
    runs it every ``detect.every_s``: the replay sources' clock at each tick, findings into ``ctx.watch``."""
    if not isinstance(ctx.watch, WatchService):
        raise DemoError("the watch is not wired (bot.app.build_context sets ctx.watch)")
    watch = TalliedWatch(ctx.watch)
    ctx.watch.posters.append(poster)
    ctx.watch.clock = clock
    detect = ctx.settings.detect
    case = ReplayCase(case_dir)  # one parse of the bundle for every tick
    alert = float(shop.facts["detection"])
    ticks = scan_ticks(shop, detect.every_s, detect.lookback_s)
    say.say(f"the leader's degradation scan every {detect.every_s} s over the last {detect.lookback_s // 3600} h "
            f"({detect.baseline_s // 60} min of baseline), {len(ticks)} ticks of simulated time from "
            f"{utc_clock(ticks[0]) if ticks else '–'} to the alert")
    for n, tick in enumerate(ticks, 1):
        clock.at = tick

        def sources(at: float = tick) -> Sources:
            src = replay_sources(case)
            src.now = at  # the scan reads what had happened by this tick, and nothing after it
            return src

        posted = len(poster.started)
        result = await scan_and_watch(sources, detect, watch)
        res.scans += 1
        if len(poster.started) > posted:
            for f in result.findings:
                item = await _live_item(ctx.db, f.key)
                if item is None or item.opened_at != tick:
                    continue
                res.warnings.append(item)
                say.say(say.p.yellow(
                    f"⚠ onwatch noticed {f.service}'s {_signal_words(f.signal)} drifting up at {utc_clock(tick)} "
                    f"(since {utc_clock(f.started_at)}), {(alert - tick) / 60:.0f} minutes before the alert would "
                    "fire; no one has been paged"))
        elif n % 10 == 0 or n == len(ticks):
            words = ", ".join(sorted({f"{f.service} {f.signal}" for f in result.findings})) or "nothing drifting"
            say.note(f"{utc_clock(tick)} scan {n}: {result.series} series read; {words}")
    clock.at = None
    res.outcomes = dict(watch.outcomes)
    again = "; ".join(f"{k} ×{v}" for k, v in sorted(watch.held.items())) or "none"
    say.note(f"{res.scans} scans; {len(res.warnings)} early warning(s) posted; findings seen again: {again}")


def _signal_words(signal: str) -> str:
    return {"latency_p99": "p99 latency", "error_rate": "error rate", "cpu": "CPU", "memory": "memory"}.get(
        signal, signal)


async def _live_item(db: Database, key: str) -> WatchItem | None:
    async with db.session() as s:
        return (await s.exec(select(WatchItem).where(WatchItem.key == key)
                             .order_by(col(WatchItem.id).desc()))).first()


async def _latest_investigation(db: Database, incident_id: str) -> Investigation | None:
    async with db.session() as s:
        return (await s.exec(select(Investigation).where(Investigation.incident_id == incident_id)
                             .order_by(col(Investigation.started_at).desc()))).first()


async def _proposals(db: Database, incident_id: str) -> list[Proposal]:
    async with db.session() as s:
        rows = (await s.exec(select(Proposal).where(Proposal.incident_id == incident_id)
                             .order_by(col(Proposal.created_at)))).all()
    return list(rows)


async def _top_proposal(db: Database, incident_id: str) -> Proposal | None:
    """The pending proposal for the best-ranked cause."""
    props = [p for p in await _proposals(db, incident_id) if p.status == "pending"]
    if not props:
        return None
    async with db.session() as s:
        ranks = {f.id: f.rank for f in (await s.exec(select(Finding))).all()}
    return min(props, key=lambda p: (ranks.get(p.finding_id, 99) if p.finding_id is not None else 99, p.created_at))


async def run_demo(seed: int, *, out: TextIO, keep: bool = False, colour: bool | None = None,
                   workdir: Path | None = None, serve: ServeOptions | None = None,
                   scenario: Scenario = Scenario.ROLLOUT) -> DemoResult:
    palette = Palette(use_colour(out) if colour is None else colour)
    say = Narrator(out, palette)
    started = time.perf_counter()
    work = workdir or Path(tempfile.mkdtemp(prefix="onwatch-demo-"))
    res = DemoResult(workdir=work, scenario=str(scenario))
    drift = scenario is Scenario.DRIFT
    shown = f", scenario {scenario}" if drift else ""
    out.write(palette.bold("onwatch demo") + palette.dim(f" — seed {seed}{shown}, everything local, no network\n"))

    db_url, which = pick_database(work)
    res.database = which
    say.step("Database")
    say.say(f"Using {which}.")
    try:
        await asyncio.to_thread(upgrade, db_url)
    except Exception as exc:  # noqa: BLE001 - Alembic/driver errors vary; one line for the newcomer
        raise DemoError(f"could not migrate the database: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    say.note("schema migrated to head")

    say.step("Simulating a small shop")
    anchor = time.time()
    shop = await asyncio.to_thread(simulate, seed, anchor=anchor, scenario=scenario)
    case_dir = await asyncio.to_thread(shop.write, work / "bundle")
    tl = shop.timeline
    res.alert_at = tl.detection
    hours = (tl.end - tl.start) / 3600
    say.say("frontend → catalog, cart, checkout; checkout → cart, payments-api, shipping; "
            "payments-api → payments-db; cart → redis")
    say.say(f"{'one hour' if hours <= 1 else f'{hours:.0f} hours'} of telemetry: {len(shop.metrics):,} metric "
            f"samples (15 s), {len(shop.logs):,} log lines, {len(shop.spans):,} spans, "
            f"{len(shop.changes)} change events")
    say.note(f"case bundle: {case_dir} (FORMAT.md layout + changes.json); onwatch reads it through the replay source")
    if drift:
        say.note(f"CheckoutLatencyHigh will fire at {utc_clock(tl.detection)}. Before that, nobody is paged: "
                 "what onwatch sees in the meantime is up to its scheduled degradation scan.")
    else:
        say.note(f"the alert fires at {utc_clock(tl.detection)}: CheckoutLatencyHigh on checkout. What caused it is "
                 "for onwatch to find.")

    controller = ShopController(seed, anchor, case_dir, say, scenario, str(shop.facts["culprit"]))
    await controller.start()
    runbook_dir = write_runbooks(work / "runbooks", controller.port, scenario)
    token = secrets.token_urlsafe(24)
    viewer_token = secrets.token_urlsafe(24) if serve is not None else None
    settings = demo_settings(db_url, case_dir, runbook_dir, token, viewer_token, scenario)

    db = Database(db_url)
    adapter = TerminalAdapter(out=out, chart_dir=work / "charts", colour=palette.on)
    ctx: AppContext | None = None
    try:
        ctx = await build_context(settings, db)
        ctx.chat.add(adapter)
        runner = build_runner(ctx)

        if drift:
            say.step("The scheduler watches the shop, before anyone is paged")
            await _watch_the_shop(ctx, shop, case_dir, TerminalWatchPoster(adapter), SimulatedClock(), res, say)

        say.step("The alert arrives")
        incident_id = await _ingest(ctx, token, shop.alert, say)
        res.incident_id = incident_id
        if incident_id is None:
            raise DemoError("triage opened no incident for the demo alert")

        say.step("onwatch investigates (durable job)")
        t0 = time.perf_counter()
        await run_jobs(ctx, runner)
        inv = await _latest_investigation(db, incident_id)
        if inv is None:
            raise DemoError(f"no investigation was requested for {incident_id}")
        res.investigation_id = inv.id
        res.investigation_s = (inv.finished_at - inv.started_at) if inv.finished_at and inv.started_at \
            else time.perf_counter() - t0
        causes = (inv.report or {}).get("causes") or []
        res.early_warnings = list((inv.report or {}).get("early_warnings") or [])
        if drift:
            _say_escalation(res, say)
        res.top_cause = dict(causes[0]) if causes and not inv.abstained else None
        if inv.status != "done":
            raise DemoError(f"the investigation {inv.id} ended {inv.status}: {inv.error}")
        await _remediate(ctx, runner, res, say, controller)

        say.step("Audit trail")
        chain = await verify_chain(db)
        res.audit_ok, res.audit_rows = chain.ok, chain.checked
        if chain.ok:
            say.say(palette.green(f"audit chain intact: {chain.checked} rows"))
        else:
            say.say(palette.red(f"audit chain BROKEN at row seq={chain.bad_seq}: {chain.reason}"))
        if serve is not None and viewer_token is not None:
            _summary(say, res, shop, adapter, time.perf_counter() - started, keep)
            await _serve_web(ctx, res, viewer_token, serve, say)
    finally:
        if ctx is not None and ctx.triage is not None:
            await ctx.triage.aclose()
        await controller.stop()
        await db.dispose()

    if serve is None:
        _summary(say, res, shop, adapter, time.perf_counter() - started, keep)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return res


async def _remediate(ctx: AppContext, runner: Any, res: DemoResult, say: Narrator, controller: ShopController) -> None:
    assert res.incident_id is not None
    if ctx.remediation is None:
        raise DemoError("remediation is not wired (bot.app.build_context sets it)")
    proposal = await _top_proposal(ctx.db, res.incident_id)
    say.step("An on-call engineer approves")
    if proposal is None:
        res.skipped.append("approval (no runbook was proposed)")
        say.say("No runbook was proposed for this incident, so there is nothing to approve.")
        return
    res.proposal_title = proposal.title or proposal.runbook_id
    say.say(f"{APPROVER.name} clicks [Approve] on “{res.proposal_title}”")
    outcome = await ctx.remediation.decide(proposal.id, APPROVER, "approve",
                                           frozenset({f"{APPROVER.platform}:{APPROVER.id}"}))
    res.decision = str(outcome.status)
    say.note(f"decision: {outcome.status} — {outcome.message}")
    if outcome.status != "approved":
        return
    say.step("The runbook runs, then onwatch verifies the symptom")
    await run_jobs(ctx, runner)
    res.rollbacks = len(controller.calls)
    async with ctx.db.session() as s:
        ex = (await s.exec(select(Execution).where(Execution.proposal_id == proposal.id))).first()
    if ex is not None:
        res.execution = ex.status
        res.verification = ex.verification


def _say_escalation(res: DemoResult, say: Narrator) -> None:
    for w in res.early_warnings:
        say.say(say.p.yellow(f"the investigation started from watch item {w.get('watch_item')} "
                             f"({w.get('service')} {w.get('signal')}, open since "
                             f"{utc_clock(float(w.get('opened_at') or 0))}) as evidence [{w.get('id')}]"))
    if res.warnings and not res.early_warnings:
        say.note("the early warning was not escalated into the investigation")


def _summary(say: Narrator, res: DemoResult, shop: ShopCase, adapter: TerminalAdapter, total_s: float,
             keep: bool) -> None:
    p = say.p
    say.step("Summary")
    for item in res.warnings:
        lead = f", {(res.alert_at - item.opened_at) / 60:.0f} minutes before the alert" if res.alert_at else ""
        say.say(f"early warning: {item.title} at {utc_clock(item.opened_at)}{lead} (watch item {item.id}, "
                f"posted once in {res.scans} scans)")
    if res.incident_id:
        say.say(f"incident {res.incident_id} opened from CheckoutLatencyHigh (checkout)")
    if res.top_cause:
        c = res.top_cause
        took = f" in {res.investigation_s:.1f} s" if res.investigation_s is not None else ""
        say.say(f"likely cause{took}: {p.bold(str(c.get('service')))} — {c.get('kind')} "
                f"(confidence {float(c.get('confidence') or 0):.0%})")
    elif res.investigation_id:
        say.say("the investigation did not name a cause (not enough evidence)")
    if res.proposal_title:
        line = f"runbook “{res.proposal_title}”: {res.decision or 'not decided'}"
        if res.execution:
            line += f", execution {res.execution}"
        if res.verification:
            line += f", verification {res.verification}"
        say.say(line)
    say.say(f"audit: {'chain intact' if res.audit_ok else 'chain BROKEN'}, {res.audit_rows} rows")
    for s in res.skipped:
        say.note(f"skipped: {s}")
    if shop.timeline.leak is not None:
        say.note(f"what the simulation did (never shown to onwatch): {shop.facts['culprit']} {shop.facts['version']}, "
                 "deployed two days earlier, keeps memory it never frees; from "
                 f"{utc_clock(shop.facts['drift_start'])} its heap neared the limit and collection pauses grew")
    else:
        say.note(f"what the simulation did (never shown to onwatch): {shop.facts['culprit']} "
                 f"{shop.facts['version']} rolled out at {utc_clock(shop.facts['deploy'])} with a query the "
                 "payments table has no index for")
    say.say(f"demo took {total_s:.1f} s")
    if keep:
        kept = (["database"] if res.database.startswith("a fresh temporary SQLite") else []) + ["bundle", "runbooks"]
        kept += ["charts"] if adapter.charts else []
        say.say(f"kept: {res.workdir} ({', '.join(kept)})")
    else:
        say.note("temporary files removed; run `onwatch demo --keep` to keep the database, the bundle and the charts")


def main(args: argparse.Namespace) -> int:
    seed = int(getattr(args, "seed", 7))
    keep = bool(getattr(args, "keep", False))
    try:
        scenario = Scenario(getattr(args, "scenario", Scenario.ROLLOUT))
    except ValueError:
        print(f"onwatch demo: unknown scenario {str(getattr(args, 'scenario', ''))[:80]!r}; choose one of "
              f"{', '.join(Scenario)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    async def go() -> DemoResult:
        serve = None
        if getattr(args, "serve", False):
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            serve = ServeOptions(host=str(args.host), port=int(args.port), stop=stop)
        return await run_demo(seed, out=sys.stdout, keep=keep, serve=serve, scenario=scenario)

    try:
        res = asyncio.run(go())
    except DemoError as exc:
        print(f"onwatch demo: {exc}", file=sys.stderr)
        return 1
    return 0 if res.audit_ok else 1
