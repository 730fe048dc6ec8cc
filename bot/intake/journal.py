"""The intake journal: validated alert batches, appended to local files before the sender is acknowledged.

On the embedded SQLite default a webhook is answered once its prepared batch is in the journal; a grouper
process (``bot.triage.grouper``) triages the backlog and records how far it got (``intake_cursor``) in the
same transaction as the triage, so a batch is triaged exactly once whatever crashes when.

Layout: a directory of segment files ``<n:012d>.log``; each record is ``length (4 bytes LE) | CRC32 of the
payload (4 bytes LE) | payload``. A position is ``segment << 40 | offset``: one integer that orders records
across segments. The writer holds an exclusive lock on the directory, so only one process appends; it
truncates a torn last record (a crash mid-write) when it opens. Records are written with one ``write`` and no
``fsync``: like SQLite's ``synchronous=NORMAL`` that onwatch runs with, an acknowledged batch survives the
process dying, not the machine losing power.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.errors import OnwatchError

SEGMENT_BYTES = 64 * 1024 * 1024  # a new segment starts once the current one is past this
_HEADER = 8
_OFFSET_BITS = 40
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1
_SUFFIX = ".log"


class JournalError(OnwatchError):
    """The journal cannot be opened or written (another writer holds it, a file cannot be written)."""


def position(segment: int, offset: int) -> int:
    return segment << _OFFSET_BITS | offset


def split(pos: int) -> tuple[int, int]:
    return pos >> _OFFSET_BITS, pos & _OFFSET_MASK


def encode(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "little") + zlib.crc32(payload).to_bytes(4, "little") + payload


def decode(buf: bytes | memoryview, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """``(end offset, payload)`` of each whole, intact record from ``start``; stops at a partial or torn one."""
    at, size = start, len(buf)
    while at + _HEADER <= size:
        length = int.from_bytes(buf[at:at + 4], "little")
        end = at + _HEADER + length
        if end > size:
            return
        payload = bytes(buf[at + _HEADER:end])
        if zlib.crc32(payload) != int.from_bytes(buf[at + 4:at + 8], "little"):
            return
        yield end, payload
        at = end


def segments(directory: Path) -> list[int]:
    out = []
    for p in directory.glob(f"*{_SUFFIX}"):
        stem = p.name.removesuffix(_SUFFIX)
        if stem.isdigit():
            out.append(int(stem))
    return sorted(out)


def segment_path(directory: Path, segment: int) -> Path:
    return directory / f"{segment:012d}{_SUFFIX}"


@dataclass
class JournalWriter:
    """Appends records; one per process and directory (an ``flock`` on ``writer.lock`` makes sure)."""

    directory: Path
    segment_bytes: int = SEGMENT_BYTES

    def __post_init__(self) -> None:
        self._lock_fd = -1
        self._fd = -1
        self.segment = 0
        self.size = 0

    def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / "writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalError(f"cannot open the intake journal at {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise JournalError(f"another onwatch process is writing the intake journal at {self.directory}") from None
        existing = segments(self.directory)
        self.segment = existing[-1] if existing else 1
        path = segment_path(self.directory, self.segment)
        data = path.read_bytes() if path.exists() else b""
        good = 0
        for good, _ in decode(data):  # noqa: B007 - the end of the last intact record is what we keep
            pass
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if good < len(data):
            os.ftruncate(self._fd, good)
        self.size = good

    @property
    def position(self) -> int:
        """Where the next record starts: every record before it is in the journal."""
        return position(self.segment, self.size)

    def append(self, payload: bytes) -> int:
        """Write one record; returns the position just past it (its ticket)."""
        if self._fd < 0:
            raise JournalError("the intake journal is not open")
        if self.size and self.size + len(payload) + _HEADER > self.segment_bytes:
            self._rotate()
        record = encode(payload)
        try:
            written = os.write(self._fd, record)
        except OSError as exc:
            raise JournalError(f"cannot write the intake journal: {exc.strerror}") from None
        if written != len(record):  # a full disk mid-record: take the partial record back
            os.ftruncate(self._fd, self.size)
            raise JournalError("cannot write the intake journal: short write (disk full?)")
        self.size += written
        return self.position

    def _rotate(self) -> None:
        os.close(self._fd)
        self.segment += 1
        self.size = 0
        self._fd = os.open(segment_path(self.directory, self.segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._lock_fd = -1


class JournalReader:
    """Reads records after a position, following segments as the writer rotates them.

    Nothing read past the last whole record is kept: the next read starts again from that record, so a
    record being written, or a torn one a restarted writer truncated and wrote over, is read afresh."""

    def __init__(self, directory: Path, start: int):
        self.directory = directory
        self.segment, self.offset = split(start)

    @property
    def position(self) -> int:
        """Where the next read starts: every record before it has been read."""
        return position(self.segment, self.offset)

    def _from_segment(self, limit: int, budget: int) -> tuple[list[tuple[int, bytes]], bool]:
        """Whole records after ``offset`` in the current segment (at most ``limit``, and no more once ``budget``
        payload bytes are taken), and whether unread bytes follow them."""
        path = segment_path(self.directory, self.segment)
        try:
            with path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return [], False
        out: list[tuple[int, bytes]] = []
        used = 0
        for end, payload in decode(data):
            out.append((position(self.segment, self.offset + end), payload))
            used = end
            budget -= len(payload)
            if len(out) == limit or budget <= 0:
                break
        self.offset += used
        return out, used < len(data)

    def read(self, max_records: int, max_bytes: int = 1 << 62) -> list[tuple[int, bytes]]:
        """Up to ``max_records`` ``(position after, payload)``, oldest first, and no more once ``max_bytes`` of
        payload are taken (the first record is always taken); empty when nothing new."""
        out: list[tuple[int, bytes]] = []
        budget = max_bytes
        while len(out) < max_records and budget > 0:
            got, more = self._from_segment(max_records - len(out), budget)
            out.extend(got)
            budget -= sum(len(p) for _, p in got)
            if got:
                continue
            if more:
                break  # a record still being written
            later = [s for s in segments(self.directory) if s > self.segment]
            if not later:
                break
            # The writer never appends to a segment once a later one exists: one more read finishes this one.
            got, more = self._from_segment(max_records - len(out), budget)
            out.extend(got)
            budget -= sum(len(p) for _, p in got)
            if got or more:
                if more and not got:
                    break
                continue
            self.segment, self.offset = later[0], 0
        return out

    def prune(self, through: int) -> None:
        """Delete segments wholly before the one ``through`` points into."""
        current = split(through)[0]
        for s in segments(self.directory):
            if s < current:
                segment_path(self.directory, s).unlink(missing_ok=True)
