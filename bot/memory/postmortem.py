"""``onwatch memory import DIR``: Markdown postmortems a team already wrote, as confirmed memories.

Each ``*.md`` file starts with a small YAML front matter between ``---`` lines (docs/memory.md)::

    ---
    date: 2025-03-14
    services: [checkout, payments-api]
    cause: {service: payments-api, kind: deploy}
    fix: Rolled back payments-api to v41
    tags: [database, connection-pool]
    ---
    Free text: what happened, the timeline, what we learned.

Every file is read and checked first; one bad file stops the import with an error naming the file and the
field, and nothing is written. Then all memories are written in one transaction (a file imported again
replaces its memory, named ``PM-<file stem>``).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlmodel import select

from bot.audit import Actor, audit
from bot.errors import OnwatchError
from bot.memory.feedback import KIND, NAME
from bot.memory.grade import Grade
from bot.store.db import Database
from bot.store.models import Memory

MAX_FILE_BYTES = 1_000_000
FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)(.*)\Z", re.DOTALL)
HEADING = re.compile(r"^#\s+(.+)$", re.MULTILINE)


class PostmortemError(OnwatchError):
    """One or more postmortem files cannot be imported; each line names the file and the field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("nothing imported:\n" + "\n".join(f"  - {p}" for p in problems))


class CauseFront(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str
    kind: str

    @field_validator("service")
    @classmethod
    def _service(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError("a service name: letters, digits and _ . : / @ -")
        return v

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if not KIND.match(v):
            raise ValueError("a cause kind in snake_case, e.g. deploy, cpu_saturation, dependency_failure")
        return v


class Front(BaseModel):
    """The front matter of one postmortem."""

    model_config = ConfigDict(extra="forbid")
    date: dt.date | dt.datetime
    services: list[str] = Field(min_length=1)
    cause: CauseFront
    fix: str = Field(default="", max_length=2000)
    tags: list[str] = Field(default_factory=list)
    title: str = Field(default="", max_length=500)
    alerts: list[str] = Field(default_factory=list)

    @field_validator("services")
    @classmethod
    def _services(cls, v: list[str]) -> list[str]:
        for s in v:
            if not NAME.match(s):
                raise ValueError(f"{s!r} is not a service name")
        return v


@dataclass(frozen=True, slots=True)
class Postmortem:
    path: Path
    ref: str
    front: Front
    title: str
    text: str

    @property
    def at(self) -> float:
        d = self.front.date
        if isinstance(d, dt.datetime):
            return (d if d.tzinfo else d.replace(tzinfo=dt.UTC)).timestamp()
        return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()


def ref_for(path: Path) -> str:
    return "PM-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-")[:190]


def parse(path: Path) -> Postmortem:
    """One file, checked; ``PostmortemError`` names the file and field at fault."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise PostmortemError([f"{path}: larger than {MAX_FILE_BYTES} bytes"])
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PostmortemError([f"{path}: not UTF-8 text"]) from None
    except OSError as exc:
        raise PostmortemError([f"{path}: cannot read: {exc.strerror}"]) from None
    m = FRONT.match(raw)
    if m is None:
        raise PostmortemError([f"{path}: no front matter (the file must start with a '---' line, the fields, "
                               "and another '---' line)"])
    try:
        data: Any = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        raise PostmortemError([f"{path}: front matter is not valid YAML: {exc}"]) from None
    except ValueError as exc:  # YAML read a date-like value that is no date (2025-13-40)
        raise PostmortemError([f"{path}: date: not a valid date or time ({exc})"]) from None
    if not isinstance(data, dict):
        raise PostmortemError([f"{path}: front matter must be a mapping of fields (date, services, cause, …)"])
    try:
        front = Front.model_validate(data)
    except ValidationError as exc:
        raise PostmortemError([f"{path}: {'.'.join(str(p) for p in e['loc']) or '(front matter)'}: {e['msg']}"
                               for e in exc.errors()]) from None
    text = m.group(2).strip()
    heading = HEADING.search(text)
    title = front.title or (heading.group(1).strip() if heading else path.stem.replace("-", " "))
    return Postmortem(path, ref_for(path), front, title[:500], text)


def read_dir(folder: Path) -> list[Postmortem]:
    """Every ``*.md`` file of ``folder`` (sorted), all checked before any is used."""
    if not folder.is_dir():
        raise PostmortemError([f"{folder}: not a folder"])
    files = sorted(p for p in folder.glob("*.md") if p.is_file())
    if not files:
        raise PostmortemError([f"{folder}: no .md files"])
    problems: list[str] = []
    out: list[Postmortem] = []
    for p in files:
        try:
            out.append(parse(p))
        except PostmortemError as exc:
            problems += exc.problems
    refs: dict[str, Path] = {}
    for pm in out:
        if pm.ref in refs:
            problems.append(f"{pm.path}: same name {pm.ref} as {refs[pm.ref]}")
        refs[pm.ref] = pm.path
    if problems:
        raise PostmortemError(problems)
    return out


async def import_dir(db: Database, folder: Path, actor: Actor) -> list[Memory]:
    """Check every file, then write every memory in one transaction (confirmed: a person wrote them)."""
    pms = read_dir(folder)
    now = time.time()
    written: list[Memory] = []
    async with db.begin() as s:
        for pm in pms:
            mem = (await s.exec(select(Memory).where(Memory.ref == pm.ref))).first()
            if mem is not None and mem.source != "postmortem":
                raise PostmortemError([f"{pm.path}: {pm.ref} is already the name of an incident's memory"])
            mem = mem or Memory(ref=pm.ref, source="postmortem")
            f = pm.front
            mem.title, mem.services, mem.tags, mem.text = pm.title, list(f.services), list(f.tags), pm.text
            mem.cause_service, mem.cause_kind, mem.fix = f.cause.service, f.cause.kind, f.fix
            mem.cause_text = f"{f.cause.kind.replace('_', ' ')} in {f.cause.service}"
            mem.signature = {"alertnames": list(f.alerts), "failure_classes": [f.cause.kind]}
            mem.grade, mem.graded_by, mem.graded_at = Grade.CONFIRMED, actor.key, now
            mem.grade_note = f"imported from {pm.path.name}"
            mem.resolved_at = pm.at
            s.add(mem)
            written.append(mem)
            await audit(db, actor, "memory.imported", params={"memory": pm.ref, "file": pm.path.name,
                                                              "cause_service": f.cause.service,
                                                              "cause_kind": f.cause.kind}, session=s)
    return written
