"""The intake journal's files: records round-trip, torn tails are cut, segments rotate and are followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.intake.journal import (
    JournalError,
    JournalReader,
    JournalWriter,
    decode,
    encode,
    position,
    segment_path,
    segments,
    split,
)


def test_records_round_trip_and_positions_order_them(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path / "j")
    w.open()
    start = w.position
    tickets = [w.append(f"batch {i}".encode()) for i in range(5)]
    w.close()
    assert tickets == sorted(tickets) and tickets[0] > start
    got = JournalReader(tmp_path / "j", start).read(100)
    assert [p for _, p in got] == [f"batch {i}".encode() for i in range(5)]
    assert [t for t, _ in got] == tickets
    # reading from a ticket gives what follows it, and nothing is read twice
    r = JournalReader(tmp_path / "j", tickets[2])
    assert [p for _, p in r.read(100)] == [b"batch 3", b"batch 4"]
    assert r.read(100) == [] and r.position == tickets[-1]


def test_read_stops_at_the_record_and_byte_limits(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path)
    w.open()
    for i in range(10):
        w.append(bytes([i]) * 100)
    r = JournalReader(tmp_path, position(1, 0))
    assert len(r.read(3)) == 3
    assert len(r.read(100, max_bytes=250)) == 3  # the third record crosses the budget and is still taken
    assert len(r.read(100)) == 4
    w.close()


def test_a_torn_last_record_is_cut_when_the_writer_opens_again(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path)
    w.open()
    kept = w.append(b"whole")
    w.close()
    with segment_path(tmp_path, 1).open("ab") as f:
        f.write(encode(b"torn by a crash")[:-4])  # the process died mid-write
    r = JournalReader(tmp_path, position(1, 0))
    assert [p for _, p in r.read(10)] == [b"whole"]  # the reader never takes a partial record
    w = JournalWriter(tmp_path)
    w.open()
    assert w.position == kept
    after = w.append(b"next")
    w.close()
    assert [p for _, p in r.read(10)] == [b"next"] and r.position == after


def test_a_corrupted_record_is_not_read(tmp_path: Path) -> None:
    raw = bytearray(encode(b"payload one") + encode(b"payload two"))
    raw[10] ^= 0xFF  # a flipped byte in the first payload: its CRC no longer matches
    assert list(decode(bytes(raw))) == []


def test_segments_rotate_and_the_reader_follows_and_prunes(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path, segment_bytes=64)
    w.open()
    r = JournalReader(tmp_path, w.position)
    tickets = [w.append(bytes([i]) * 40) for i in range(6)]
    assert len(segments(tmp_path)) == 6  # each 48-byte record fills a 64-byte segment
    assert [t for t, _ in r.read(4)] == tickets[:4]
    tickets.append(w.append(b"late"))
    assert [p for _, p in r.read(10)] == [bytes([4]) * 40, bytes([5]) * 40, b"late"]
    r.prune(tickets[-1])
    assert segments(tmp_path) == [split(tickets[-1])[0]]
    w.close()


def test_the_reader_finishes_a_segment_written_to_after_it_looked(tmp_path: Path) -> None:
    """The writer may add to segment n and rotate between two reads: nothing in n is skipped."""
    w = JournalWriter(tmp_path, segment_bytes=100)
    w.open()
    r = JournalReader(tmp_path, w.position)
    w.append(b"a" * 30)
    assert len(r.read(10)) == 1
    w.append(b"b" * 30)  # still segment 1
    w.append(b"c" * 60)  # rotates to segment 2
    assert [p[:1] for _, p in r.read(10)] == [b"b", b"c"]
    w.close()


def test_one_writer_per_journal(tmp_path: Path) -> None:
    first = JournalWriter(tmp_path)
    first.open()
    with pytest.raises(JournalError, match="another onwatch process"):
        JournalWriter(tmp_path).open()
    first.close()
    second = JournalWriter(tmp_path)
    second.open()
    second.close()


def test_a_journal_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(JournalError, match="cannot open the intake journal"):
        JournalWriter(tmp_path / "file" / "journal").open()
    with pytest.raises(JournalError, match="not open"):
        JournalWriter(tmp_path / "unopened").append(b"x")


@settings(max_examples=60, deadline=None)
@given(payloads=st.lists(st.binary(max_size=300), max_size=20), cut=st.integers(min_value=0, max_value=4000),
       segment=st.integers(min_value=16, max_value=2000))
def test_any_prefix_of_the_files_reads_as_a_prefix_of_the_records(tmp_path_factory: pytest.TempPathFactory,
                                                                   payloads: list[bytes], cut: int,
                                                                   segment: int) -> None:
    """Whatever a crash leaves of the last segment, the reader returns whole records, in order, and the
    reopened writer carries on after the last whole one."""
    d = tmp_path_factory.mktemp("j")
    w = JournalWriter(d, segment_bytes=segment)
    w.open()
    start = w.position
    for p in payloads:
        w.append(p)
    w.close()
    last = segment_path(d, segments(d)[-1])
    size = last.stat().st_size
    os.truncate(last, min(size, cut))
    got = [p for _, p in JournalReader(d, start).read(1000)]
    assert got == payloads[:len(got)]
    w = JournalWriter(d, segment_bytes=segment)
    w.open()
    w.append(b"after the crash")
    w.close()
    assert [p for _, p in JournalReader(d, start).read(1000)] == [*got, b"after the crash"]
