"""The diff of a change, as any change source that can fetch one returns it, size-capped.

A ``DiffSource`` is a change source that can also say what a change changed: GitHub's compare API
with file patches, Argo CD's manifests at two revisions, or a case bundle's ``changes.json``. Patches
are cut per file and in total, so one generated lock file cannot fill a model's context; what was cut
is said, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from integrations.base import ChangeEvent

MAX_FILE_CHARS = 6_000
MAX_TOTAL_CHARS = 24_000


@dataclass(frozen=True, slots=True)
class FileDiff:
    filename: str
    status: str = "modified"
    additions: int = 0
    deletions: int = 0
    patch: str = ""
    truncated: bool = False  # the patch was cut to the per-file or total cap


@dataclass(frozen=True, slots=True)
class ChangeDiff:
    service: str
    base: str
    head: str
    url: str = ""
    commits: list[tuple[str, str]] = field(default_factory=list)  # (short sha, first line of the message)
    files: list[FileDiff] = field(default_factory=list)
    omitted_files: int = 0  # files listed without a patch once the total cap was reached
    source: str = ""


@runtime_checkable
class DiffSource(Protocol):
    name: str

    async def diff(self, change: ChangeEvent, *, max_file_chars: int = MAX_FILE_CHARS,
                   max_total_chars: int = MAX_TOTAL_CHARS) -> ChangeDiff | None:
        """The diff of ``change``, or None when this source did not report it or has no diff for it."""
        ...


def cap_patches(files: Sequence[FileDiff], max_file_chars: int = MAX_FILE_CHARS,
                max_total_chars: int = MAX_TOTAL_CHARS) -> tuple[list[FileDiff], int]:
    """Patches cut to ``max_file_chars`` each and ``max_total_chars`` together (whole lines kept).

    Returns the files and how many lost their patch entirely to the total cap (they stay listed).
    """
    out: list[FileDiff] = []
    used = 0
    omitted = 0
    for f in files:
        patch = f.patch
        cut = False
        room = min(max_file_chars, max_total_chars - used)
        if room <= 0:
            if patch:
                omitted += 1
            out.append(FileDiff(f.filename, f.status, f.additions, f.deletions, "", bool(patch)))
            continue
        if len(patch) > room:
            nl = patch[:room].rfind("\n")
            if nl <= 0:  # not one whole line fits: list the file without its patch
                omitted += 1
                out.append(FileDiff(f.filename, f.status, f.additions, f.deletions, "", True))
                continue
            patch = patch[: nl + 1]
            cut = True
        used += len(patch)
        out.append(FileDiff(f.filename, f.status, f.additions, f.deletions, patch, cut or f.truncated))
    return out, omitted


def patch_counts(patch: str) -> tuple[int, int]:
    """Added and deleted lines of a unified patch (headers not counted)."""
    add = sum(1 for ln in patch.splitlines() if ln.startswith("+") and not ln.startswith("+++"))
    dele = sum(1 for ln in patch.splitlines() if ln.startswith("-") and not ln.startswith("---"))
    return add, dele
