"""Journaled intake, the server's side: append prepared batches, run the grouper process, hear its reports.

``append`` writes a batch to the intake journal and nudges the grouper; the webhook is answered right after
(202). The grouper process (``bot.triage.grouper``) triages the backlog and reports each committed group;
the reports resolve ``outcome`` / ``drained`` waiters and go to ``on_report`` (chat announcements). If the
grouper dies it is started again and resumes at the cursor it committed; nothing journaled is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from bot.audit import Actor
from bot.config import TriageSettings
from bot.intake.journal import JournalWriter
from bot.triage.grouper import Report, encode_record
from bot.triage.prepared import Prepared
from bot.triage.txn import IngestOutcome

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 60.0  # how long ``aclose`` lets the grouper finish the backlog
RESTART_PAUSES_S = (0.2, 1.0, 5.0)
RECENT_OUTCOMES = 4096  # outcomes kept for callers that ask after the report came


class TriageFailed(Exception):
    """The grouper could not triage a journaled batch (it is kept in ``dead_letter``)."""


def _project_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def outcome_from(d: dict[str, Any]) -> IngestOutcome:
    return IngestOutcome(**{k: d[k] for k in IngestOutcome.__dataclass_fields__ if k in d})


class JournaledIntake:
    def __init__(self, db_file: str, journal_dir: Path, settings: TriageSettings,
                 on_report: Callable[[Report, list[IngestOutcome]], Awaitable[None]]):
        self.db_file = db_file
        self.writer = JournalWriter(journal_dir)
        self.settings = settings
        self.on_report = on_report
        self.through = -1  # the grouper's cursor as last reported (-1: not heard yet)
        self.backlog = 0  # batches this process journaled that no report has covered yet
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._progress = asyncio.Condition()
        self._recent: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._opened = False
        self._closing = False
        self._closed = asyncio.Event()  # set by ``aclose``: a restart pause ends at once
        self._restarts = 0

    @property
    def started(self) -> bool:
        return self._proc is not None

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: whether the grouper runs, and how many acknowledged batches wait for it."""
        if self._proc is None:
            state = "restarting" if self._restarts and not self._closing else "not started"
        elif self._proc.returncode is not None:
            state = "restarting"
        elif self._ready is None or not self._ready.done():
            state = "starting"
        else:
            state = "running"
        return {"grouper": state, "backlog_batches": self.backlog, "restarts": self._restarts}

    async def start(self, wait_ready: bool = True) -> None:
        """Open the journal and start the grouper (which first triages whatever a crash left journaled)."""
        self._closing = False
        self._closed.clear()
        if not self._opened:
            self.writer.open()
            self._opened = True
        if self._proc is None:
            await self._spawn()
        if wait_ready and self._ready is not None:
            await asyncio.wait_for(asyncio.shield(self._ready), READY_TIMEOUT_S)

    async def _spawn(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_project_root(), os.environ.get("PYTHONPATH"))
                                                           if p)}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.triage.grouper", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env=env, limit=1 << 24)
        assert self._proc.stdin is not None
        config = {"db": self.db_file, "journal": str(self.writer.directory), "triage": self.settings.model_dump(mode="json")}
        self._proc.stdin.write(json.dumps(config).encode() + b"\n")
        self._ready = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_reports(self._proc, self._ready), name="onwatch-grouper-reports")

    def append(self, source: str, actor: Actor, alerts: list[Prepared]) -> int:
        """Journal one batch (raises ``JournalError``); returns its ticket. Blocking for one ``write`` only."""
        ticket = self.writer.append(encode_record(source, actor, time.time(), alerts))
        self.backlog += 1
        self._nudge()
        return ticket

    async def _read_reports(self, proc: asyncio.subprocess.Process, ready: asyncio.Future[None]) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                msg = orjson.loads(line)
                if not isinstance(msg, dict):
                    raise TypeError(type(msg).__name__)
            except (orjson.JSONDecodeError, TypeError) as exc:  # something in the grouper printed to stdout
                log.warning("ignoring a line from the grouper that is not a report (%s): %r", exc, line[:200])
                continue
            if msg.get("ready"):
                if not ready.done():
                    ready.set_result(None)
                self._restarts = 0
                continue
            try:
                if "idle" in msg:
                    await self._advance(int(msg["idle"]))
                    continue
                report = Report(int(msg["through"]), [(int(t), o) for t, o in msg["outcomes"]], list(msg["updated"]),
                                [(fp, i) for fp, i in msg["flap_notes"]], float(msg.get("seconds", 0.0)))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring a malformed report from the grouper (%s): %r", exc, line[:200])
                continue
            await self._heard(report)
        rc = await proc.wait()
        if not ready.done():
            ready.set_exception(RuntimeError(f"the grouper process exited ({rc}) before it was ready"))
            ready.exception()  # retrieved here: a lazy start does not wait for it
        await self._restart(rc)

    async def _restart(self, rc: int) -> None:
        """Start the grouper again after it died, pausing longer each time it dies before it is ready."""
        while not self._closing:
            pause = RESTART_PAUSES_S[min(self._restarts, len(RESTART_PAUSES_S) - 1)]
            self._restarts += 1
            log.error("the grouper process exited (%s); starting it again in %ss (journaled alerts wait for it)",
                      rc, pause)
            with contextlib.suppress(TimeoutError):  # ``aclose`` ends the pause
                await asyncio.wait_for(self._closed.wait(), pause)
            if self._closing:
                return
            self._proc = None
            try:
                await self._spawn()
            except OSError as exc:
                log.error("cannot start the grouper process: %s", exc)
                continue
            self._nudge()
            return

    def _nudge(self) -> None:
        """Tell the grouper there is more to read (a byte on its stdin; it reads all pending ones at once)."""
        proc = self._proc
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(b".")

    async def _heard(self, report: Report) -> None:
        outcomes = []
        self.backlog = max(0, self.backlog - len(report.outcomes))
        for ticket, d in report.outcomes:
            self._recent[ticket] = d
            if "error" not in d:
                outcomes.append(outcome_from(d))
        while len(self._recent) > RECENT_OUTCOMES:
            self._recent.popitem(last=False)
        try:
            await self.on_report(report, outcomes)
        except Exception:  # noqa: BLE001 - chat trouble must not stop the reports (the incidents are committed)
            log.exception("announcing a triaged group failed")
        await self._advance(report.through)  # after the announcements: a waiter sees the incident posted

    async def _advance(self, through: int) -> None:
        async with self._progress:
            self.through = max(self.through, through)
            self._progress.notify_all()

    async def _until(self, ticket: int) -> None:
        async with self._progress:
            await self._progress.wait_for(lambda: self.through >= ticket)

    async def outcome(self, ticket: int) -> IngestOutcome:
        """The outcome of the batch journaled at ``ticket``, once triaged (``TriageFailed`` if it could not be).

        Waits as long as it takes: bound it with ``asyncio.timeout``."""
        await self._until(ticket)
        d = self._recent.get(ticket)
        if d is None:
            raise LookupError(f"the outcome of journal ticket {ticket} is no longer kept")
        if "error" in d:
            raise TriageFailed(d["error"])
        return outcome_from(d)

    async def drained(self) -> None:
        """Wait until everything journaled so far is triaged (bound it with ``asyncio.timeout``)."""
        await self._until(self.writer.position)

    async def aclose(self) -> None:
        """Let the grouper finish the backlog (up to ``EXIT_TIMEOUT_S``), then stop it and close the journal."""
        self._closing = True
        self._closed.set()
        proc = self._proc
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), EXIT_TIMEOUT_S)
            except TimeoutError:
                log.error("the grouper did not finish within %ss; stopping it (the rest stays journaled)",
                          EXIT_TIMEOUT_S)
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            await self._reader  # the last reports, read to the end of the grouper's output
        self.writer.close()
        self._opened = False
        self._proc = None
