"""Assembles a running onwatch: context, job runner, leader scheduler, web server, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from bot import change_webhook
from bot.audit import Actor
from bot.audit import configure as configure_audit
from bot.chat import weekly as weekly_report
from bot.chat.checkpoints import write_checkpoint
from bot.chat.hub import ChatHub
from bot.chat.notes import incident_channels, post_to_channels
from bot.chat.outbox import HubRenderer
from bot.chat.seen import prune as prune_seen
from bot.chat.slack import routes as slack_routes
from bot.chat.slack.adapter import SlackAdapter
from bot.chat.slack.socket import SocketModeRunner
from bot.chat.teams import routes as teams_routes
from bot.chat.teams.adapter import TeamsAdapter, approvers_lookup
from bot.chat.teams.connection import build_cloud_adapter
from bot.chat.watch_posters import watch_posters
from bot.config import Settings, exposure_problems
from bot.context import AppContext
from bot.deadletter import DeadLetters
from bot.errors import ConfigError, ListenError
from bot.incidents.outbox import Outbox
from bot.intake import routes as intake_routes
from bot.investigate.service import handle_job
from bot.jobs import Handler, JobQueue, JobRunner, LostHook
from bot.memory.grade import grade_outcomes
from bot.memory.store import remember_resolved
from bot.proactive import run_degradation_scan, run_slo_check
from bot.remediate.preview_only import PreviewOnly
from bot.remediate.service import RemediationService
from bot.scheduler import LeaderScheduler
from bot.slo_check import CHECK_INTERVAL_S as SLO_CHECK_INTERVAL_S
from bot.store.db import Database, open_database
from bot.store.models import Job
from bot.triage.service import TriageService
from bot.triage.suppress import maintenance_windows
from bot.watch.service import WatchService
from bot.web import Installer, create_app
from bot.web_ui import views as web_ui
from integrations.executor_setup import build_registry
from integrations.executors import ExecutorRegistry
from integrations.kubernetes_write import SA_TOKEN
from integrations.registry import build_sources
from integrations.settings import KubernetesSettings

log = logging.getLogger(__name__)

OUTBOX_POLL_S = 5.0
# The job kinds that run approved runbooks: with runbooks.execute_in: worker only `onwatch worker` runs them.
EXECUTION_KINDS = ("execution", "verification")
JOB_KINDS = ("investigation", weekly_report.JOB_KIND, *EXECUTION_KINDS)

Role = Literal["server", "worker"]


def context_for(settings: Settings, db: Database) -> AppContext:
    """The context over an open database: the chat hub (no platform yet) rendering the lifecycle outbox, the
    dead-letter keeper and triage. ``build_context`` adds the sources, remediation and the chat platforms."""
    hub = ChatHub(db, public_url=settings.server.public_url)
    ctx = AppContext(settings=settings, db=db, jobs=JobQueue(db), chat=hub, outbox=Outbox(db))
    ctx.outbox.subscribe(HubRenderer(lambda: ctx.chat))  # the hub renders lifecycle events (tests swap ctx.chat)
    ctx.dead_letters = DeadLetters(db, ctx.metrics, settings.webhooks)
    ctx.triage = TriageService(ctx)
    return ctx


def executes_here(settings: Settings, role: Role) -> bool:
    """Whether a process of this role runs approved runbooks (and so holds the write credentials)."""
    return role == "worker" or settings.runbooks.execute_in == "server"


def preview_registry(settings: Settings) -> ExecutorRegistry:
    """The executors of a server that does not execute: previews only, Kubernetes through the READ credential
    (``sources.kubernetes.kubeconfig``/``context`` or the in-cluster service account), never ``write_*``."""
    k = settings.sources.kubernetes
    read: KubernetesSettings | None = None
    if k is not None:
        read = k.model_copy(update={"write_kubeconfig": k.kubeconfig, "write_context": k.context,
                                    "write_in_cluster_token_file": SA_TOKEN if k.in_cluster else None})
    return build_registry(read, settings.runbooks.secrets).wrapped(PreviewOnly)


async def build_context(settings: Settings, db: Database | None = None, *, role: Role = "server") -> AppContext:
    """Open the database (schema must be at head) and wire the domain services. A server with
    ``runbooks.execute_in: worker`` gets preview-only executors; ``role="worker"`` is ``onwatch worker``."""
    if db is None:
        db = await open_database(settings.database.url, echo=settings.database.echo,
                                 pool_size=settings.database.pool_size)
        await db.check_schema()
    key = settings.audit.chain_key
    configure_audit(key.get_secret_value() if key is not None else None)
    if key is None:
        log.warning("audit.chain_key is not set: the audit chain is plain SHA-256, so whoever can write the database "
                    "can rewrite it undetected after the last checkpoint (docs/security.md)")
    ctx = context_for(settings, db)
    ctx.sources_factory = lambda: build_sources(settings.sources, db=db)
    executors = (build_registry(settings.sources.kubernetes, settings.runbooks.secrets)
                 if executes_here(settings, role) else preview_registry(settings))
    ctx.remediation = RemediationService(ctx, executors=executors)
    add_chat_adapters(ctx)
    ctx.watch = WatchService(settings.watch, db, posters=watch_posters(ctx.chat.adapters, settings),
                             sources_factory=ctx.sources_factory, memory=settings.memory,
                             maintenance=maintenance_windows(settings.triage))
    return ctx


def add_chat_adapters(ctx: AppContext) -> None:
    """The Slack and Teams adapters the settings enable, added to ``ctx.chat``."""
    settings, db = ctx.settings, ctx.db
    if settings.slack.enabled:
        ctx.chat.add(SlackAdapter(settings, db))
    if settings.teams.enabled:
        ctx.chat.add(TeamsAdapter(db, settings.teams, build_cloud_adapter(settings.teams),
                                  approvers=approvers_lookup(ctx)))


@asynccontextmanager
async def operator_chat(settings: Settings, db: Database) -> AsyncIterator[AppContext]:
    """A context with the chat adapters ``serve`` uses, for an operator command that speaks in chat; the
    adapters are closed after."""
    ctx = context_for(settings, db)
    add_chat_adapters(ctx)
    try:
        yield ctx
    finally:
        for adapter in ctx.chat.adapters:
            close = getattr(adapter, "aclose", None)
            if close is not None:
                await close()


async def post_incident_note(settings: Settings, db: Database, text: str) -> list[str]:
    """A visible note from an operator command (``onwatch silences add|remove``) in the incident channels
    (``slack.incident_channel``, ``teams.channel``), through the adapters ``serve`` uses; the platforms
    it reached (none when chat is not configured)."""
    async with operator_chat(settings, db) as ctx:
        return await post_to_channels(ctx.chat.adapters, incident_channels(settings), text)


async def close_watch_item(settings: Settings, db: Database, item_id: int, reason: str, actor: Actor) -> bool:
    """``onwatch watch close``: end a live early warning by hand, with a reply under its post; False when no
    live item has that id."""
    async with operator_chat(settings, db) as ctx:
        watch = WatchService(settings.watch, db, posters=watch_posters(ctx.chat.adapters, settings))
        return await watch.close_by_hand(item_id, reason, actor) is not None


def feature_installers() -> list[Installer]:
    """The routes of each feature, each owning its paths: the change and alert webhooks, Slack's
    /slack/events (when Slack is configured), Teams' /api/messages (teams.enabled), the web view's /ui/
    (web.enabled)."""
    return [change_webhook.install, intake_routes.install, slack_routes.install, teams_routes.install,
            web_ui.install]


def web_app(ctx: AppContext) -> web.Application:
    """The one aiohttp application with every feature's routes."""
    return create_app(ctx, feature_installers())


def server_kinds(settings: Settings) -> tuple[str, ...]:
    """The job kinds ``onwatch serve`` runs: all of them, less the execution kinds when a worker runs those."""
    if executes_here(settings, "server"):
        return JOB_KINDS
    return tuple(k for k in JOB_KINDS if k not in EXECUTION_KINDS)


def build_runner(ctx: AppContext, extra_handlers: dict[str, Handler] | None = None,
                 kinds: Collection[str] | None = None) -> JobRunner:
    """A job runner with every durable job kind the process knows how to run, or only ``kinds`` of them (it
    claims only the kinds it has handlers for). Lost-job hooks stay for every kind: whichever process reaps an
    expired lease records the loss."""
    handlers: dict[str, Handler] = {}
    on_lost: dict[str, LostHook] = {}

    async def investigation(job: Job) -> None:
        started = time.perf_counter()
        try:
            await handle_job(ctx, job.payload, early_warnings=ctx.watch.escalate if ctx.watch is not None else None)
        finally:
            ctx.metrics.investigation_seconds.observe(time.perf_counter() - started)

    handlers["investigation"] = investigation

    async def weekly(job: Job) -> None:
        await weekly_report.handle_job(ctx, job)

    handlers[weekly_report.JOB_KIND] = weekly
    if ctx.remediation is not None:
        handlers["execution"] = ctx.remediation.run_execution
        handlers["verification"] = ctx.remediation.run_verification
        on_lost["execution"] = ctx.remediation.on_execution_lost
    if kinds is not None:
        handlers = {k: h for k, h in handlers.items() if k in kinds}
    handlers.update(extra_handlers or {})
    return JobRunner(
        db=ctx.db, queue=ctx.jobs, handlers=handlers, on_lost=on_lost,
        concurrency=ctx.settings.server.workers, lease_s=ctx.settings.server.lease_s,
        on_state=ctx.metrics.job_state,
    )


def build_scheduler(ctx: AppContext, runner: JobRunner) -> LeaderScheduler:
    sched = LeaderScheduler(ctx.db)
    sched.every(max(5.0, ctx.settings.server.lease_s / 2), "reap-leases", runner.reap_expired)
    sched.every(60.0, "remember-resolved", lambda: remember_resolved(ctx.db))
    sched.every(300.0, "grade-memories", lambda: grade_outcomes(ctx.db, ctx.settings.memory.verify_quiet_s))
    if ctx.remediation is not None:
        sched.every(30.0, "expire-proposals", ctx.remediation.expire_due)
    sched.every(600.0, "prune-seen-commands", lambda: prune_seen(ctx.db))
    sched.every(3600.0, "prune-lifecycle-events", ctx.outbox.prune)
    if ctx.settings.audit.checkpoint_every_s:
        sched.every(float(ctx.settings.audit.checkpoint_every_s), "audit-checkpoint", lambda: write_checkpoint(ctx))
    if ctx.watch is not None and ctx.settings.sources.metrics is not None:
        watch = ctx.watch
        if ctx.settings.detect.enabled:
            sched.every(float(ctx.settings.detect.every_s), "degradation-scan", lambda: run_degradation_scan(ctx, watch))
        # also with no slos: left, so a removed SLO's firing page is still resolved
        sched.every(SLO_CHECK_INTERVAL_S, "slo-check", lambda: run_slo_check(ctx, watch))
    rs = ctx.settings.reports
    if rs.weekly:
        sched.weekly(weekly_report.JOB_KIND, rs.weekly_day, rs.weekly_time, rs.timezone,
                     lambda: weekly_report.enqueue_weekly_report(ctx))
    return sched


@dataclass
class Running:
    ctx: AppContext
    runner: JobRunner
    scheduler: LeaderScheduler
    site: web.TCPSite
    runnable: web.AppRunner

    @property
    def port(self) -> int:
        server = self.site._server  # aiohttp keeps the bound socket here
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else 0


@asynccontextmanager
async def running(
    ctx: AppContext, host: str | None = None, port: int | None = None,
    extra_handlers: dict[str, Handler] | None = None,
) -> AsyncIterator[Running]:
    """Start the server, workers and scheduler; stop them in reverse order, letting jobs finish."""
    s = ctx.settings
    runner = build_runner(ctx, extra_handlers, kinds=server_kinds(s))
    app = web_app(ctx)
    web_runner = web.AppRunner(app, access_log=None)
    await web_runner.setup()
    bind_host, bind_port = host or s.server.host, s.server.port if port is None else port
    site = web.TCPSite(web_runner, bind_host, bind_port)
    try:
        await site.start()
    except OSError as exc:
        await web_runner.cleanup()
        raise ListenError(f"cannot listen on {bind_host}:{bind_port}: {exc.strerror or exc}") from None
    runner.start()
    sched = build_scheduler(ctx, runner)
    sched.start()
    # Lifecycle events are published right after the commit that wrote them; this loop also picks up those another
    # replica wrote and did not publish (it stopped first) and retries renders that failed.
    outbox_loop = asyncio.create_task(ctx.outbox.run(OUTBOX_POLL_S), name="onwatch-outbox")
    slack_socket = None
    if s.slack.enabled and s.slack.app_token is not None:  # Socket Mode: no public URL needed
        slack_socket = SocketModeRunner(ctx)
        await slack_socket.start()
    try:
        yield Running(ctx, runner, sched, site, web_runner)
    finally:
        if slack_socket is not None:
            await slack_socket.stop()
        await sched.stop()
        await _stop_work(ctx, runner, outbox_loop, web_runner)


async def _stop_work(ctx: AppContext, runner: JobRunner, outbox_loop: asyncio.Task[None],
                     web_runner: web.AppRunner | None = None) -> None:
    """Let in-flight jobs finish (up to the grace), stop taking requests, then close what the jobs used."""
    await runner.stop(grace_s=ctx.settings.server.shutdown_grace_s)
    if web_runner is not None:
        await web_runner.cleanup()
    if ctx.remediation is not None:
        await ctx.remediation.aclose()
    if ctx.triage is not None:
        await ctx.triage.aclose()
    outbox_loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await outbox_loop


async def serve(settings: Settings) -> None:
    problems = exposure_problems(settings)
    if problems:
        raise ConfigError(problems)
    ctx = await build_context(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running(ctx) as r:
            log.info("onwatch listening on %s:%s (database: %s)", settings.server.host, r.port,
                     "postgresql" if ctx.db.is_postgres else "sqlite")
            await stop.wait()
            log.info("shutting down: letting in-flight jobs finish (up to %ss)", settings.server.shutdown_grace_s)
    finally:
        await ctx.db.dispose()


@asynccontextmanager
async def working(ctx: AppContext, kinds: Collection[str]) -> AsyncIterator[JobRunner]:
    """``onwatch worker``: the durable job runner for ``kinds`` only, with leases, lost-job hooks and the lifecycle
    outbox (results reach the thread through the chat adapters); no HTTP server, no chat routes, no leader
    scheduler (the runner's own loop reaps expired leases, a conditional update any process may run)."""
    runner = build_runner(ctx, kinds=kinds)
    runner.start()
    outbox_loop = asyncio.create_task(ctx.outbox.run(OUTBOX_POLL_S), name="onwatch-outbox")
    try:
        yield runner
    finally:
        await _stop_work(ctx, runner, outbox_loop)


async def work(settings: Settings, kinds: Collection[str]) -> None:
    """Run ``onwatch worker`` until SIGINT/SIGTERM."""
    if settings.runbooks.execute_in == "server" and set(kinds) & set(EXECUTION_KINDS):
        log.warning("runbooks.execute_in is server: `onwatch serve` runs executions too (each job still runs once)")
    ctx = await build_context(settings, role="worker")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with working(ctx, kinds):
            log.info("onwatch worker running %s (database: %s)", ", ".join(sorted(kinds)),
                     "postgresql" if ctx.db.is_postgres else "sqlite")
            await stop.wait()
            log.info("shutting down: letting in-flight jobs finish (up to %ss)", settings.server.shutdown_grace_s)
    finally:
        await ctx.db.dispose()
