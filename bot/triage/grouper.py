"""The grouper: triages the intake journal's backlog, one transaction per group of batches.

Webhooks on the SQLite default are acknowledged once their prepared batch is journaled
(``bot.intake.journal``); this runs the same triage pass as the acknowledge-after-commit path (``txn.py``)
over what the journal holds past ``intake_cursor``, and moves the cursor in that transaction. It runs as a
process of its own (``python -m bot.triage.grouper``, started and supervised by ``bot.triage.journaled``),
so triage has a core to itself while the server reads and validates the next requests.

Protocol with the parent: the first stdin line is the JSON configuration; every later byte on stdin is a
nudge (new records), and end of input means finish the backlog and exit. Each committed group is reported
as one JSON line on stdout (``Report``).

A group whose pass fails for a reason other than the database is retried batch by batch, and a batch that
fails alone is kept in ``dead_letter`` with the reason (the cursor passes it), so one bad batch cannot stall
the journal. A database failure (locked, full disk) is retried with a pause: the batch stays journaled.
"""

from __future__ import annotations

import functools
import gc
import io
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import orjson
from sqlalchemy.orm import configure_mappers

from bot.audit import Actor
from bot.config import TriageSettings
from bot.errors import DatabaseError
from bot.intake.journal import JournalReader
from bot.triage.prepared import Prepared
from bot.triage.store import SqliteStore, SqliteWriter
from bot.triage.txn import Batch, IngestOutcome, InvestigationRows, StateCache, TriagePass

log = logging.getLogger(__name__)

RECORD_VERSION = 1
GROUP_RECORDS = 64  # batches one transaction takes at most
GROUP_ALERTS = 5000  # ... and alerts (one larger batch goes alone)
JOURNALED_ALERT_BYTES = 700  # about what one alert of a storm takes in a record
RETRY_PAUSE_S = 1.0
COLLECT_EVERY = 64  # passes between collections of cyclic garbage while a storm keeps the grouper busy


class BadRecord(ValueError):
    """A journal record this version cannot read."""


def encode_record(source: str, actor: Actor, received_at: float, alerts: list[Prepared]) -> bytes:
    """A journal record: MessagePack, a stable format that holds the alerts' JSON texts without escaping them
    (with JSON the grouper spent twice as long reading records back). A ``Prepared`` goes as its fields."""
    return msgpack.packb([RECORD_VERSION, source, [actor.platform, actor.id, actor.name], received_at, alerts])


@dataclass
class Record:
    ticket: int  # journal position just past the record
    source: str
    actor: Actor
    received_at: float
    alerts: list[Prepared]

    @classmethod
    def decode(cls, ticket: int, payload: bytes) -> Record:
        try:
            version, source, actor, received_at, alerts = msgpack.unpackb(payload, use_list=False)
            if version != RECORD_VERSION:
                raise BadRecord(f"journal record version {version} is not {RECORD_VERSION}")
            if type(alerts) is not tuple or not all(type(a) is tuple for a in alerts):
                raise BadRecord("journal record alerts are not arrays of fields")
            # ``_make`` refuses a wrong number of fields (TypeError, below)
            return cls(ticket, str(source), Actor(*actor), float(received_at), list(map(Prepared._make, alerts)))
        except (msgpack.UnpackException, TypeError, ValueError) as exc:
            raise BadRecord(f"unreadable journal record: {type(exc).__name__}: {exc}") from None


@dataclass
class Report:
    """What one committed group did, for the parent to announce and to answer waiters."""

    through: int
    outcomes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (ticket, outcome or {"error"})
    updated: list[str] = field(default_factory=list)
    flap_notes: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0  # the group's wall time, reading the journal to commit

    def to_json(self) -> bytes:
        return orjson.dumps({"through": self.through, "outcomes": self.outcomes, "updated": self.updated,
                             "flap_notes": self.flap_notes, "seconds": self.seconds})


def outcome_dict(out: IngestOutcome) -> dict[str, Any]:
    return {**out.as_dict(), "flapping": out.flapping}


def read_cursor(store: SqliteStore) -> int:
    row = store.conn.execute("SELECT position FROM intake_cursor WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def write_cursor(store: SqliteStore, through: int) -> None:
    store.conn.execute("INSERT INTO intake_cursor (id, position, updated_at) VALUES (1, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
                       (through, time.time()))


class Grouper:
    """Reads the journal after the cursor and triages it; ``step`` is one group, so tests drive it directly."""

    def __init__(self, db_file: str, journal_dir: Path, settings: TriageSettings,
                 investigation_rows: InvestigationRows | None):
        self.writer = SqliteWriter(db_file)
        self.journal_dir = journal_dir
        self.settings = settings
        self.investigation_rows = investigation_rows
        self.reader: JournalReader | None = None
        self.known = StateCache()
        self._data_version: int | None = None

    def close(self) -> None:
        self.writer.close()

    def _reader(self) -> JournalReader:
        if self.reader is None:
            self.reader = JournalReader(self.journal_dir, self.writer.run(read_cursor))
        return self.reader

    def idle_position(self) -> int:
        """The journal position everything before which is triaged (call when ``step`` returned None)."""
        return self._reader().position

    def _read_group(self) -> list[tuple[int, bytes]]:
        return self._reader().read(GROUP_RECORDS, GROUP_ALERTS * JOURNALED_ALERT_BYTES)

    def step(self) -> Report | None:
        """Triage the next group; None when the journal holds nothing past the cursor.

        A ``DatabaseError`` leaves the group journaled (the reader starts again from the cursor next time)."""
        started = time.perf_counter()
        raw = self._read_group()
        if not raw:
            return None
        try:
            report = self._triage(raw)
        except DatabaseError:
            self.reader = None
            raise
        except Exception:  # noqa: BLE001 - a bug or a bad record must not stall the journal; see _one_by_one
            log.exception("a triage group of %d journaled batches failed; retrying them one by one", len(raw))
            report = self._one_by_one(raw)
        report.seconds = time.perf_counter() - started
        return report

    def _triage(self, raw: list[tuple[int, bytes]]) -> Report:
        records = [Record.decode(ticket, payload) for ticket, payload in raw]
        through = raw[-1][0]

        passes: list[TriagePass] = []

        def run(store: SqliteStore) -> Report:
            version = store.conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:  # another connection committed: what we remember may be stale
                self.known.clear()
                self._data_version = version
            done = read_cursor(store)
            todo = [r for r in records if r.ticket > done]  # another grouper (an orphan of a crash) got there first
            batches = [Batch(r.alerts, r.actor, IngestOutcome(received=len(r.alerts))) for r in todo]
            report = Report(through=max(through, done))
            if batches:
                now = max(r.received_at for r in todo)
                passes.append(TriagePass(store, self.settings, batches, now, self.investigation_rows, self.known))
                result = passes[-1].run()
                report.updated, report.flap_notes = result.updated, result.flap_notes
                report.outcomes = [(r.ticket, outcome_dict(b.out)) for r, b in zip(todo, batches, strict=True)]
            write_cursor(store, report.through)
            return report

        try:
            report = self.writer.run(run)
        except BaseException:
            self.known.clear()  # the failed pass changed remembered states in place
            raise
        for p in passes:
            self.known.keep(p.states)
        self._reader().prune(report.through)
        return report

    def _one_by_one(self, raw: list[tuple[int, bytes]]) -> Report:
        merged = Report(through=raw[-1][0])
        for ticket, payload in raw:
            try:
                r = self._triage([(ticket, payload)])
            except DatabaseError:
                self.reader = None
                raise
            except Exception as exc:  # noqa: BLE001 - kept as a dead letter with the reason, the cursor passes it
                log.exception("journaled batch %d cannot be triaged; keeping it in dead_letter", ticket)
                self.writer.run(functools.partial(_dead_letter, ticket=ticket, payload=payload, exc=exc))
                merged.outcomes.append((ticket, {"error": f"{type(exc).__name__}: {exc}"[:500]}))
                continue
            merged.outcomes.extend(r.outcomes)
            merged.updated.extend(r.updated)
            merged.flap_notes.extend(r.flap_notes)
        return merged


def _dead_letter(store: SqliteStore, ticket: int, payload: bytes, exc: Exception) -> None:
    reason = f"journaled batch could not be triaged: {type(exc).__name__}: {exc}"[:4000]
    store.conn.execute("INSERT INTO dead_letter (source, reason, body, headers, received_at) VALUES (?, ?, ?, ?, ?)",
                       ("journal", reason, payload, json.dumps({"journal-position": str(ticket)}), time.time()))
    if read_cursor(store) < ticket:
        write_cursor(store, ticket)


def _load_investigation_rows() -> InvestigationRows | None:
    try:
        from bot.investigate.service import investigation_rows
    except ImportError:
        return None
    return investigation_rows


def main() -> int:
    """The grouper process (see the module docstring for the protocol)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s onwatch.grouper %(message)s")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    assert isinstance(stdin, io.BufferedReader)
    config = json.loads(stdin.readline() or b"{}")
    settings = TriageSettings.model_validate(config["triage"])
    grouper = Grouper(config["db"], Path(config["journal"]), settings, _load_investigation_rows())
    configure_mappers()  # SQLAlchemy configures them on the first model row otherwise: ~10 ms of the first pass
    grouper.idle_position()  # connects and reads the cursor now rather than when the first batch waits
    gc.collect()
    gc.freeze()  # the imports above are for life: keep them out of every later collection
    gc.disable()  # a pass's objects die by reference counting; cycles are collected when idle (below)
    stdout.write(b'{"ready": true}\n')
    stdout.flush()
    told, passes = -1, 0
    try:
        while True:
            try:
                report = grouper.step()
            except DatabaseError as exc:
                log.error("triage of the journal failed, retrying in %ss: %s", RETRY_PAUSE_S, exc)
                time.sleep(RETRY_PAUSE_S)
                continue
            if report is not None:
                stdout.write(report.to_json() + b"\n")
                stdout.flush()
                passes += 1
                if passes % COLLECT_EVERY == 0:
                    gc.collect()
                continue
            idle = grouper.idle_position()
            if idle != told:  # caught up: say where, so the parent knows nothing before it is waiting
                stdout.write(b'{"idle": %d}\n' % idle)
                stdout.flush()
                told = idle
                gc.collect()
            if not stdin.read1(65536):  # end of input: the backlog is done, so exit
                return 0
    except BrokenPipeError:  # the parent is gone; what is left stays journaled for the next grouper
        return 0
    finally:
        grouper.close()


if __name__ == "__main__":
    sys.exit(main())
