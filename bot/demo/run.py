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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import col, select

from bot.app import build_context, build_runner, web_app
from bot.audit import Actor, verify_chain
from bot.config import Settings
from bot.context import AppContext
from bot.demo.simulate import CULPRIT, NAMESPACE, SERVICES, ShopCase, simulate
from bot.demo.terminal import Palette, TerminalAdapter, use_colour
from bot.messages.format import utc_clock
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import Execution, Finding, Investigation, Job, Proposal

log = logging.getLogger(__name__)

APPROVER = Actor("slack", "U0DEMOONCALL", "dana (on call)")
APPROVER_GROUP = "payments-oncall"
FAST_FORWARD_S = 240.0  # how far the simulated shop runs on after the rollback, for verification
DELAYED_JOB_WAIT_S = 20.0
OWNERS = {"frontend": "web-team", "catalog": "web-team", "cart": "shop-team", "checkout": "shop-team",
          "payments-api": "payments-team", "payments-db": "payments-team", "shipping": "logistics-team",
          "redis": "platform-team"}
DEPLOYMENTS = tuple(s for s in SERVICES if s not in ("payments-db", "redis"))  # the shop's stateless Deployments  # a job due within this long (e.g. a verification poll) is waited for


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


# ----------------------------------------------------------------------------- the simulated deploy controller


class ShopController:
    """The target of the demo's rollback runbook: a loopback HTTP endpoint that "rolls back" the simulated
    payments-api, then fast-forwards the simulation so the replay source holds the minutes after."""

    def __init__(self, seed: int, anchor: float, case_dir: Path, narrator: Narrator | None = None):
        self.narrator = narrator
        self.seed = seed
        self.anchor = anchor
        self.case_dir = case_dir
        self.calls: list[dict[str, Any]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _rollback(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        try:
            body = await request.json()
        except (ValueError, aiohttp.ContentTypeError):
            body = {}
        if ns != NAMESPACE or name not in DEPLOYMENTS:
            return web.json_response({"error": f"no deployment {ns}/{name} in the simulated shop"}, status=404)
        at = time.time()
        self.calls.append({"at": at, "deployment": f"{ns}/{name}", "body": body})
        # only payments-api has a previous version that behaves differently; any other rollback changes nothing
        shop = await asyncio.to_thread(simulate, self.seed, anchor=self.anchor,
                                       rollback_at=at if name == CULPRIT else None, until=at + FAST_FORWARD_S)
        await asyncio.to_thread(_replace_bundle, shop, self.case_dir)
        if self.narrator is not None:
            self.narrator.note(
                f"⚙ the shop's deploy controller got POST {request.path}: rolling {name} back, pod by pod; "
                f"the simulated shop runs "
                f"{FAST_FORWARD_S / 60:.0f} more minutes so there is telemetry after the rollback")
        return web.json_response({"status": "rolled back", "deployment": f"{ns}/{name}"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/deployments/{namespace}/{name}/rollback", self._rollback)
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


def write_runbooks(folder: Path, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demo-rollback-deploy.yaml").write_text(RUNBOOK % {"port": port, "group": APPROVER_GROUP,
                                                                 "services": ", ".join(DEPLOYMENTS)})
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
                  viewer_token: str | None = None) -> Settings:
    """Settings of the demo only: nothing is read from ONWATCH_* (no Slack, no LLM, no live sources). With a
    ``viewer_token`` (``--serve``) the web view is on, behind that token."""
    web_view = {"enabled": True, "viewer_token": viewer_token} if viewer_token else {}
    return Settings(  # type: ignore[call-arg]
        _env_prefix="ONWATCH_DEMO_UNUSED_",
        web=web_view,
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
                   workdir: Path | None = None, serve: ServeOptions | None = None) -> DemoResult:
    palette = Palette(use_colour(out) if colour is None else colour)
    say = Narrator(out, palette)
    started = time.perf_counter()
    work = workdir or Path(tempfile.mkdtemp(prefix="onwatch-demo-"))
    res = DemoResult(workdir=work)
    out.write(palette.bold("onwatch demo") + palette.dim(f" — seed {seed}, everything local, no network\n"))

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
    shop = await asyncio.to_thread(simulate, seed, anchor=anchor)
    case_dir = await asyncio.to_thread(shop.write, work / "bundle")
    tl = shop.timeline
    say.say("frontend → catalog, cart, checkout; checkout → cart, payments-api, shipping; "
            "payments-api → payments-db; cart → redis")
    say.say(f"one hour of telemetry: {len(shop.metrics):,} metric samples (15 s), {len(shop.logs):,} log lines, "
            f"{len(shop.spans):,} spans, {len(shop.changes)} change events")
    say.note(f"case bundle: {case_dir} (FORMAT.md layout + changes.json); onwatch reads it through the replay source")
    say.note(f"the alert fires at {utc_clock(tl.detection)}: CheckoutLatencyHigh on checkout. What caused it is for "
             "onwatch to find.")

    controller = ShopController(seed, anchor, case_dir, say)
    await controller.start()
    runbook_dir = write_runbooks(work / "runbooks", controller.port)
    token = secrets.token_urlsafe(24)
    viewer_token = secrets.token_urlsafe(24) if serve is not None else None
    settings = demo_settings(db_url, case_dir, runbook_dir, token, viewer_token)

    db = Database(db_url)
    adapter = TerminalAdapter(out=out, chart_dir=work / "charts", colour=palette.on)
    ctx: AppContext | None = None
    try:
        ctx = await build_context(settings, db)
        ctx.chat.add(adapter)
        runner = build_runner(ctx)

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


def _summary(say: Narrator, res: DemoResult, shop: ShopCase, adapter: TerminalAdapter, total_s: float,
             keep: bool) -> None:
    p = say.p
    say.step("Summary")
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
    say.note(f"what the simulation did (never shown to onwatch): {shop.facts['culprit']} "
             f"{shop.facts['version']} rolled out at {utc_clock(shop.facts['deploy'])} with a query the payments "
             "table has no index for")
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
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    async def go() -> DemoResult:
        serve = None
        if getattr(args, "serve", False):
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            serve = ServeOptions(host=str(args.host), port=int(args.port), stop=stop)
        return await run_demo(seed, out=sys.stdout, keep=keep, serve=serve)

    try:
        res = asyncio.run(go())
    except DemoError as exc:
        print(f"onwatch demo: {exc}", file=sys.stderr)
        return 1
    return 0 if res.audit_ok else 1
