"""Outcome grading (a verified fix whose symptom stayed away; one that came back), postmortem import (good
files; malformed front matter named by file and field; nothing half-imported), list/show/forget."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.audit import Actor, verify_chain
from bot.cli import main as cli_main
from bot.memory.grade import grade_outcomes
from bot.memory.postmortem import PostmortemError, import_dir
from bot.memory.similar import Signature
from bot.memory.store import forget, recall, remember, remember_resolved
from bot.store.db import Database
from bot.store.models import Alert, AuditEvent, Execution, Finding, Incident, Investigation, Memory, Proposal

OPERATOR = Actor("cli", "ana", "ana")
HOUR = 3600.0


async def _fixed_incident(db: Database, inc_id: str, verified_at: float, service: str = "checkout") -> None:
    async with db.begin() as s:
        s.add(Incident(id=inc_id, title=f"{service} slow", services=[service], status="resolved",
                       resolved_at=verified_at))
        await s.flush()
        s.add(Alert(fingerprint=f"fp-{inc_id}", source="alertmanager", name="HighLatency", status="resolved",
                    service=service, starts_at=verified_at - HOUR, incident_id=inc_id))
        inv = Investigation(id=f"inv-{inc_id}", incident_id=inc_id, status="done", finished_at=verified_at - HOUR)
        s.add(inv)
        await s.flush()
        s.add(Finding(investigation_id=inv.id, rank=1, service="payments", kind="deploy", confidence=0.8))
        p = Proposal(id=f"p-{inc_id}", incident_id=inc_id, runbook_id="rollback", title="Roll back payments",
                     expires_at=verified_at, status="succeeded")
        s.add(p)
        await s.flush()
        s.add(Execution(proposal_id=p.id, incident_id=inc_id, status="succeeded", verification="recovered",
                        verified_at=verified_at))
    await remember(db, inc_id)


async def _grade(db: Database, inc_id: str) -> tuple[str, str]:
    async with db.session() as s:
        m = (await s.exec(select(Memory).where(Memory.incident_id == inc_id))).one()
    return m.grade, m.grade_note


async def test_a_verified_fix_whose_symptom_stays_away_grades_the_memory_verified(anydb: Database) -> None:
    now = time.time()
    await _fixed_incident(anydb, "INC-QUIET", now - 25 * HOUR)
    await _fixed_incident(anydb, "INC-RECENT", now - 2 * HOUR, "cart")  # verified, not quiet long enough yet
    assert await grade_outcomes(anydb, quiet_s=24 * HOUR, now=now) == 1
    grade, note = await _grade(anydb, "INC-QUIET")
    assert grade == "verified" and "symptom quiet for 25 h" in note
    assert await _grade(anydb, "INC-RECENT") == ("unconfirmed", "")
    assert await grade_outcomes(anydb, quiet_s=24 * HOUR, now=now) == 0, "graded once"
    # a verified memory is a prior; its remembering again keeps the grade
    got = await recall(anydb, Signature.of(["checkout"], ["HighLatency"]))
    assert {r.incident_id: r.grade for r in got}["INC-QUIET"] == "verified"
    async with anydb.session() as s:
        rows = (await s.exec(select(AuditEvent).where(AuditEvent.action == "memory.verified"))).all()
    assert [r.incident_id for r in rows] == ["INC-QUIET"]
    assert (await verify_chain(anydb)).ok


async def test_a_symptom_that_came_back_leaves_the_memory_unconfirmed(db: Database) -> None:
    now = time.time()
    await _fixed_incident(db, "INC-BACK", now - 30 * HOUR)
    async with db.begin() as s:  # the same alert on the same service fired again after the fix
        s.add(Alert(fingerprint="fp-again", source="alertmanager", name="HighLatency", status="firing",
                    service="checkout", starts_at=now - 20 * HOUR))
        s.add(Alert(fingerprint="fp-other", source="alertmanager", name="HighLatency", status="firing",
                    service="search", starts_at=now - 21 * HOUR))  # another service: not the symptom
    assert await grade_outcomes(db, quiet_s=24 * HOUR, now=now) == 1
    grade, note = await _grade(db, "INC-BACK")
    assert grade == "unconfirmed" and "symptom came back" in note and "600 min after" in note
    assert await grade_outcomes(db, quiet_s=24 * HOUR, now=now) == 0


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


GOOD = """---
date: 2025-03-14
services: [checkout, payments-api]
cause: {service: payments-api, kind: connection_pool_exhausted}
fix: Raised the payments-api pool to 50 and rolled back v42
tags: [database, pool]
alerts: [HighLatency]
---
# Checkout slow after the v42 deploy

The v42 migration held connections; the pool was exhausted and checkout timed out.
"""


async def test_import_good_postmortems_as_confirmed_memories(db: Database, tmp_path: Path) -> None:
    _write(tmp_path, "2025-03-14-checkout.md", GOOD)
    _write(tmp_path, "2024-11-02-search.md", GOOD.replace("checkout, payments-api", "search")
           .replace("payments-api, kind: connection_pool_exhausted", "search, kind: memory_saturation")
           .replace("# Checkout slow after the v42 deploy", "# Search out of memory"))
    mems = await import_dir(db, tmp_path, OPERATOR)
    assert sorted(m.ref for m in mems) == ["PM-2024-11-02-search", "PM-2025-03-14-checkout"]
    got = await recall(db, Signature.of(["checkout"], ["HighLatency"], text="checkout timed out pool exhausted"))
    top = got[0]
    assert top.ref == "PM-2025-03-14-checkout" and top.grade == "confirmed" and top.incident_id is None
    assert top.title == "Checkout slow after the v42 deploy" and top.fix.startswith("Raised the payments-api pool")
    assert "same service checkout" in top.why and "text shares" in top.why and "'pool'" in top.why
    # importing again replaces, never duplicates
    await import_dir(db, tmp_path, OPERATOR)
    async with db.session() as s:
        assert len((await s.exec(select(Memory))).all()) == 2


@pytest.mark.parametrize(("front", "expected"), [
    ("date: 2025-03-14\nservices: [a]\ncause: {service: a}\n", "cause.kind: Field required"),
    ("date: 2025-13-40\nservices: [a]\ncause: {service: a, kind: deploy}\n", "date:"),
    ("date: 2025-03-14\nservices: []\ncause: {service: a, kind: deploy}\n", "services:"),
    ("date: 2025-03-14\nservices: [a]\ncause: {service: a, kind: Deploy Now}\n", "cause.kind: Value error"),
    ("date: 2025-03-14\nservices: [a]\ncause: {service: a, kind: deploy}\nowner: bob\n", "owner: Extra inputs"),
    ("date: [2025\n", "not valid YAML"),
])
async def test_malformed_front_matter_names_file_and_field_and_imports_nothing(
        db: Database, tmp_path: Path, front: str, expected: str) -> None:
    _write(tmp_path, "a-good.md", GOOD)
    _write(tmp_path, "z-bad.md", f"---\n{front}---\ntext\n")
    with pytest.raises(PostmortemError) as err:
        await import_dir(db, tmp_path, OPERATOR)
    msg = str(err.value)
    assert "z-bad.md" in msg and expected in msg and "a-good.md" not in msg
    async with db.session() as s:
        assert (await s.exec(select(Memory))).all() == [], "nothing half-imported"
        assert (await s.exec(select(AuditEvent).where(AuditEvent.action == "memory.imported"))).all() == []


async def test_a_file_without_front_matter_is_refused(db: Database, tmp_path: Path) -> None:
    _write(tmp_path, "notes.md", "# just notes\n")
    with pytest.raises(PostmortemError, match="notes.md: no front matter"):
        await import_dir(db, tmp_path, OPERATOR)


async def test_forget_deletes_and_is_not_remembered_again(db: Database) -> None:
    await _fixed_incident(db, "INC-GONE", time.time())
    await forget(db, "INC-GONE", OPERATOR)
    assert await remember_resolved(db) == 0
    async with db.session() as s:
        assert (await s.exec(select(Memory))).all() == []
        rows = (await s.exec(select(AuditEvent).where(col(AuditEvent.action) == "memory.forgotten"))).all()
    assert rows[0].actor_id == "ana" and rows[0].params["memory"] == "INC-GONE"


async def test_cli_import_list_show_forget(db: Database, sqlite_url: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONWATCH_DATABASE__URL", sqlite_url)
    pm = tmp_path / "pm"
    pm.mkdir()
    _write(pm, "2025-03-14-checkout.md", GOOD)

    def run(*argv: str) -> int:
        return cli_main(list(argv))

    assert await asyncio.to_thread(run, "memory", "import", str(pm)) == 0
    assert "PM-2025-03-14-checkout" in capsys.readouterr().out
    assert await asyncio.to_thread(run, "memory", "list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["grade"] == "confirmed" and rows[0]["cause_kind"] == "connection_pool_exhausted"
    assert await asyncio.to_thread(run, "memory", "show", "PM-2025-03-14-checkout") == 0
    out = capsys.readouterr().out
    assert "grade:    confirmed" in out and "The v42 migration held connections" in out
    assert await asyncio.to_thread(run, "memory", "forget", "PM-2025-03-14-checkout") == 0
    assert await asyncio.to_thread(run, "memory", "show", "PM-2025-03-14-checkout") == 1
    assert "no memory" in capsys.readouterr().err
    _write(pm, "broken.md", "---\ndate: 2025-01-01\nservices: [x]\n---\n")
    assert await asyncio.to_thread(run, "memory", "import", str(pm)) == 1
    err = capsys.readouterr().err
    assert "nothing imported" in err and "broken.md: cause: Field required" in err
