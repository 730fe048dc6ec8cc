"""The triage service: alerts in, incidents out, one committed transaction per group of batches.

Batches that arrive while a transaction runs are committed together by the next one (group commit), in
arrival order, and each caller is answered with its own outcome only after that commit. The transaction
itself is one synchronous triage pass (``txn.py``) run by a store runner (``store.py``): on the embedded
SQLite default a thread with its own connection, on PostgreSQL the async engine's sync bridge, under a
transaction-scoped advisory lock that serialises triage across replicas (SQLite's BEGIN IMMEDIATE already
does), so two deliveries of one storm can never open two incidents for the same group.

After the commit, opened incidents are announced through the chat hub (skipped when no adapter is
configured); flapping alerts are reported once in their incident's thread.

Webhooks on the SQLite default take another way in (``enqueue``): the prepared batch is journaled and the
sender acknowledged, and a grouper process runs the same pass over the backlog (``journaled.py``,
``grouper.py``); its reports come back to ``_announce_report``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import configure_mappers

from bot.audit import BOT, Actor
from bot.chat.hub import ThreadOrigin
from bot.errors import ConfigError, DatabaseError
from bot.triage.alert import AlertIn
from bot.triage.prepared import Prepared, prepare
from bot.triage.store import TriageRunner, TriageStore, runner_for
from bot.triage.txn import Batch, IngestOutcome, InvestigationRows, PassResult, TriagePass

if TYPE_CHECKING:
    from bot.triage.grouper import Report
    from bot.triage.journaled import JournaledIntake

log = logging.getLogger(__name__)

_GROUP_ALERTS = 5000  # the most alerts one group commit takes (one webhook batch may be larger: it goes alone)
_GATHER_TURNS = 3  # event-loop turns a new leader waits for more batches (see ``ingest``)

__all__ = ["IngestOutcome", "TriageService"]


@dataclass
class _Pending(Batch):
    """One caller's batch waiting for (or inside) a group commit."""

    origin: ThreadOrigin | None = None
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class TriageService:
    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.db = ctx.db
        self.settings = ctx.settings.triage
        self.clock: Callable[[], float] = time.time  # injectable for window and cool-off tests
        # Group commit: batches that arrive while a transaction runs wait here (instead of spinning on the
        # database's write lock, whose SQLite busy handler sleeps up to 100 ms per retry); the next leader
        # triages all of them in one transaction and answers each caller once that transaction commits.
        # Replicas still serialise in the database.
        self._queue: list[_Pending] = []
        self._leader: asyncio.Future[None] | None = None
        self.runner: TriageRunner = runner_for(self.db)
        # Resolved at start-up, not inside the first storm's transaction: importing the engine (numpy,
        # matplotlib) takes a third of a second, which would otherwise hold the write lock the first time.
        self._investigation_rows: InvestigationRows | None
        try:
            from bot.investigate.service import investigation_rows
        except ImportError:
            self._investigation_rows = None
        else:
            self._investigation_rows = investigation_rows
        configure_mappers()  # once here, not in the first pass (building the first model row configures them)
        self.journal: JournaledIntake | None = None
        journal_dir = self._journal_dir()
        if journal_dir is not None:
            from bot.triage.journaled import JournaledIntake

            self.journal = JournaledIntake(self.db.sqlite_file, journal_dir, self.settings, self._announce_report)

    def _journal_dir(self) -> Path | None:
        """Where webhooks are journaled, or None when they are triaged before the acknowledgement."""
        mode, db_file = self.settings.journal, self.db.sqlite_file
        if mode == "off" or (mode == "auto" and db_file is None):
            return None
        if db_file is None:
            raise ConfigError(["triage.journal is on, but the journal needs the database to be a SQLite file "
                               "(PostgreSQL and in-memory SQLite acknowledge webhooks after the commit)"])
        return Path(self.settings.journal_dir or f"{db_file}.journal")

    async def start(self) -> None:
        """Start what runs beside the server: the grouper process when webhooks are journaled."""
        if self.journal is not None:
            await self.journal.start()

    async def enqueue(self, alerts: list[Prepared], *, source: str, actor: Actor) -> int:
        """Journal a webhook's prepared batch for the grouper; return its ticket (``JournalError`` if it cannot be
        written). The caller acknowledges once this returns: the batch is on disk and will be triaged exactly once."""
        assert self.journal is not None
        if not self.journal.started:
            await self.journal.start(wait_ready=False)
        ticket = self.journal.append(source, actor, alerts)
        self.ctx.metrics.alerts.labels(source).inc(len(alerts))
        self.ctx.metrics.intake_backlog.set(self.journal.backlog)
        return ticket

    async def drained(self) -> None:
        """Wait until every journaled batch is triaged (at once when nothing is journaled; bound it with
        ``asyncio.timeout``)."""
        if self.journal is not None and self.journal.started:
            await self.journal.drained()

    async def aclose(self) -> None:
        if self.journal is not None:
            await self.journal.aclose()
        await self.runner.aclose()

    # ------------------------------------------------------------------ public

    async def ingest(self, alerts: Sequence[AlertIn], *, origin: ThreadOrigin | None = None,
                     actor: Actor | None = None) -> IngestOutcome:
        """Store, dedup, suppress and group one batch; open/reopen/resolve incidents; then announce.

        Returns once the batch is committed. Batches that arrive while another transaction runs are
        committed together in the next one (in arrival order, so dedup and grouping see them exactly as if
        they had come one after the other); each caller still gets its own outcome.
        """
        out = IngestOutcome(received=len(alerts))
        if not alerts:
            return out
        loop = asyncio.get_running_loop()
        me = _Pending([prepare(a) for a in alerts], actor or BOT, out, origin=origin)
        self._queue.append(me)
        while not me.done.done():
            if self._leader is not None:
                await asyncio.wait([me.done, self._leader], return_when=asyncio.FIRST_COMPLETED)
                continue
            self._leader = loop.create_future()
            after: list[Callable[[], Awaitable[None]]] = []
            try:
                # Let requests already being read and validated on this loop join the group first: without
                # it, four senders settle into groups of one and three batches, and a one-batch transaction
                # pays the same per-group costs (candidates, incident rewrites, commit) for a quarter of the
                # alerts. A few loop turns cost microseconds when nothing else is waiting.
                for _ in range(_GATHER_TURNS):
                    await asyncio.sleep(0)
                group: list[_Pending] = []
                size = 0
                while self._queue and (not group or size + len(self._queue[0].alerts) <= _GROUP_ALERTS):
                    group.append(self._queue.pop(0))
                    size += len(group[-1].alerts)
                await self._commit_group(group, after)
            finally:
                self._leader.set_result(None)
                self._leader = None
            # Chat runs after the next group may start: posting to Slack never holds up the storage path.
            for announce in after:
                await announce()
        me.done.result()
        return me.out

    async def _commit_group(self, group: list[_Pending], after: list[Callable[[], Awaitable[None]]]) -> None:
        """Triage ``group`` in one transaction; if that fails and several batches shared it, retry each alone
        so that one bad batch cannot fail the others."""
        try:
            try:
                await self._run_group(group, after)
            except Exception:
                if len(group) == 1:
                    raise
                log.warning("a group commit of %d batches failed; retrying them one by one", len(group))
                for p in group:
                    p.out = IngestOutcome(received=len(p.alerts))
                    p.touched.clear()
                    try:
                        await self._run_group([p], after)
                    except Exception as exc:  # noqa: BLE001 - handed to that batch's caller, who answers 503
                        p.done.set_exception(exc)
        except BaseException as exc:
            for p in group:
                if not p.done.done():
                    p.done.set_exception(exc if isinstance(exc, Exception) else DatabaseError("triage was cancelled"))
            if not isinstance(exc, Exception):
                raise

    async def _run_group(self, group: list[_Pending], after: list[Callable[[], Awaitable[None]]]) -> None:
        now = self.clock()
        result = await self.runner.run(functools.partial(self._pass, group, now))
        if any(p.out.opened for p in group):
            if self._investigation_rows is None:
                log.warning("investigation engine not installed; incidents %s are not investigated",
                            [i for p in group for i in p.out.opened])
            self.ctx.jobs.wakeup.set()
        for source, n in Counter(a.source for p in group for a in p.alerts).items():
            self.ctx.metrics.alerts.labels(source).inc(n)
        for p in group:
            p.done.set_result(None)
        after.append(functools.partial(self._after_commit, group, result))

    def _pass(self, group: list[_Pending], now: float, store: TriageStore) -> PassResult:
        """The transaction's body (runs in the runner's thread or SQLAlchemy's sync bridge, off the event loop)."""
        return TriagePass(store, self.settings, group, now, self._investigation_rows).run()

    async def open_adhoc(self, text_: str, actor: Actor, origin: ThreadOrigin | None) -> str | None:
        from bot.triage.adhoc import open_adhoc

        return await open_adhoc(self, text_, actor, origin)

    # ------------------------------------------------------------------ after the commit

    async def _after_commit(self, group: list[_Pending], result: PassResult) -> None:
        """Tell the chat. The investigations were queued in the batch's transaction already."""
        await self._announce([(inc_id, p.origin) for p in group for inc_id in p.out.opened], result.updated,
                             result.flap_notes)

    async def _announce_report(self, report: Report, outcomes: list[IngestOutcome]) -> None:
        """A group the grouper committed: wake the job runner for its investigations, then tell the chat."""
        self.ctx.metrics.triage_pass_seconds.observe(report.seconds)
        if self.journal is not None:
            self.ctx.metrics.intake_backlog.set(self.journal.backlog)
        opened: list[tuple[str, ThreadOrigin | None]] = [(inc_id, None) for out in outcomes for inc_id in out.opened]
        if opened:
            self.ctx.jobs.wakeup.set()
        await self._announce(opened, report.updated, report.flap_notes)

    async def _announce(self, opened: list[tuple[str, ThreadOrigin | None]], updated: list[str],
                        flap_notes: list[tuple[str, str]]) -> None:
        """With no chat adapter configured the hub would only load each incident to post it nowhere, so that is
        skipped; with adapters, announcements run here, in order (see docs/triage.md)."""
        chat = self.ctx.chat
        adapters = getattr(chat, "adapters", None)
        if adapters is None or adapters:
            for inc_id, origin in opened:
                await chat.incident_opened(inc_id, origin)
        if adapters:
            for inc_id in updated:
                await chat.incident_updated(inc_id)
            for fp, inc_id in flap_notes:
                if inc_id:
                    await chat.notify(inc_id, f"Alert {fp} is flapping; onwatch suppresses it until it settles.")

    async def start_incident(self, incident_id: str, origin: ThreadOrigin | None, requested_by: Actor) -> None:
        """Request the investigation (a durable job) and announce the incident."""
        try:
            from bot.investigate.service import request_investigation
        except ImportError:
            log.warning("investigation engine not installed; incident %s is not investigated", incident_id)
        else:
            await request_investigation(self.ctx, incident_id, requested_by)
        await self.ctx.chat.incident_opened(incident_id, origin)
