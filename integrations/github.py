"""GitHub as a change source: deployments and releases of one repository become ``ChangeEvent``s, the
compare API summarises what changed between two versions (commits and files), and ``diff`` returns the
file patches of one change, size-capped, for the LLM investigator (never whole file contents)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from integrations.base import ChangeEvent, SourceBadResponse, TimeWindow
from integrations.base import parse_rfc3339 as rfc3339_seconds
from integrations.diffs import MAX_FILE_CHARS, MAX_TOTAL_CHARS, ChangeDiff, FileDiff, cap_patches
from integrations.http import HttpSource, config_from_settings, expect
from integrations.settings import ChangeSourceSettings

API = "https://api.github.com"
HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


def parse_rfc3339(value: Any, source: str) -> float:
    try:
        return rfc3339_seconds(str(value))
    except ValueError:
        raise SourceBadResponse(source, f"not an RFC 3339 time: {value!r}") from None


def short(rev: str) -> str:
    return rev[:12] if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev.lower()) else rev


@dataclass(frozen=True, slots=True)
class ChangedFile:
    filename: str
    status: str
    additions: int
    deletions: int
    patch: str = ""  # GitHub's unified patch of the file (absent for binary or very large files)


@dataclass(frozen=True, slots=True)
class DiffSummary:
    base: str
    head: str
    url: str
    total_commits: int
    commits: list[tuple[str, str]] = field(default_factory=list)  # (short sha, first line of the message)
    files: list[ChangedFile] = field(default_factory=list)


class GitHubChanges:
    """``ChangeSource`` over one repository's deployments and releases."""

    def __init__(self, http: HttpSource, *, repo: str, service: str | None = None, environment: str | None = None,
                 include: Sequence[str] = ("deployments", "releases"), max_pages: int = 5, name: str = "github"):
        self.name = name
        self.http = http
        self.repo = repo
        self.service = service or repo.split("/", 1)[1]
        self.environment = environment
        self.include = tuple(include)
        self.max_pages = max_pages
        api = http.cfg.base_url.rstrip("/")
        self.web = "https://github.com" if api == API else api.removesuffix("/api/v3")

    @classmethod
    def from_settings(cls, s: ChangeSourceSettings, *, where: str = "sources.changes") -> GitHubChanges:
        assert s.repo is not None  # the settings validator insists
        http = HttpSource("github", config_from_settings(s, s.url or API, where=where))
        return cls(http, repo=s.repo, service=s.service, environment=s.environment, include=s.include,
                   max_pages=s.max_pages)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _pages(self, path: str, params: dict[str, str], since: float, time_key: str) -> list[dict[str, Any]]:
        """Newest-first listing, read page by page until items are older than ``since`` (or the page cap)."""
        items: list[dict[str, Any]] = []
        for page in range(1, self.max_pages + 1):
            doc = await self.http.get_json(path, {**params, "per_page": "100", "page": str(page)}, headers=HEADERS)
            expect(self.name, isinstance(doc, list), f"{path} did not answer a list")
            items += [d for d in doc if isinstance(d, dict)]
            if len(doc) < 100 or any(d.get(time_key) and parse_rfc3339(d[time_key], self.name) < since for d in doc):
                break
        return items

    async def changes(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[ChangeEvent]:
        if services is not None and self.service not in services:
            return []
        out: list[ChangeEvent] = []
        if "deployments" in self.include:
            out += await self.deployments(window)
        if "releases" in self.include:
            out += await self.releases(window)
        return sorted(out, key=lambda c: c.time)

    async def deployments(self, window: TimeWindow) -> list[ChangeEvent]:
        params = {"environment": self.environment} if self.environment else {}
        raw = await self._pages(f"/repos/{self.repo}/deployments", params, window.start, "created_at")
        # Oldest first, so each deployment knows the one before it in the same environment.
        rows = sorted(raw, key=lambda d: parse_rfc3339(d.get("created_at"), self.name))
        previous: dict[str, dict[str, Any]] = {}
        out: list[ChangeEvent] = []
        for d in rows:
            env = str(d.get("environment", ""))
            sha, ref = str(d.get("sha", "")), str(d.get("ref", ""))
            version = ref if ref and ref != sha else short(sha)
            prev = previous.get(env)
            t = parse_rfc3339(d.get("created_at"), self.name)
            if window.start <= t <= window.end:
                prev_version = ""
                diff = ""
                if prev is not None:
                    pref, psha = str(prev.get("ref", "")), str(prev.get("sha", ""))
                    prev_version = pref if pref and pref != psha else short(psha)
                    diff = f"{self.web}/{self.repo}/compare/{psha}...{sha}" if psha and sha and psha != sha else ""
                desc = str(d.get("description") or "")
                out.append(ChangeEvent(
                    service=self.service, time=t, kind="deploy", version=version, previous_version=prev_version,
                    description=f"deployment to {env}" + (f": {desc}" if desc else ""),
                    url=f"{self.web}/{self.repo}/commit/{sha}" if sha else "", diff_url=diff, source="github",
                ))
            previous[env] = d
        return out

    async def releases(self, window: TimeWindow) -> list[ChangeEvent]:
        raw = await self._pages(f"/repos/{self.repo}/releases", {}, window.start, "created_at")
        rows = [r for r in raw if not r.get("draft") and (r.get("published_at") or r.get("created_at"))]
        rows.sort(key=lambda r: parse_rfc3339(r.get("published_at") or r.get("created_at"), self.name))
        out: list[ChangeEvent] = []
        prev_tag = ""
        for r in rows:
            tag = str(r.get("tag_name", ""))
            t = parse_rfc3339(r.get("published_at") or r.get("created_at"), self.name)
            if window.start <= t <= window.end:
                diff = f"{self.web}/{self.repo}/compare/{prev_tag}...{tag}" if prev_tag and tag else ""
                title = str(r.get("name") or tag)
                out.append(ChangeEvent(
                    service=self.service, time=t, kind="deploy", version=tag, previous_version=prev_tag,
                    description=f"release {title}" + (" (pre-release)" if r.get("prerelease") else ""),
                    url=str(r.get("html_url", "")), diff_url=diff, source="github-release",
                ))
            prev_tag = tag
        return out

    async def compare(self, base: str, head: str, *, max_files: int = 300) -> DiffSummary:
        """What changed between two versions: commit titles and file names with line counts."""
        path = f"/repos/{self.repo}/compare/{quote(base, safe='')}...{quote(head, safe='')}"
        doc = await self.http.get_json(path, headers=HEADERS)
        expect(self.name, isinstance(doc, dict), "compare did not answer an object")
        try:
            commits = [(short(str(c["sha"])), str(c["commit"]["message"]).splitlines()[0] if c["commit"]["message"]
                        else "") for c in doc.get("commits") or []]
            files = [ChangedFile(str(f["filename"]), str(f.get("status", "")), int(f.get("additions", 0)),
                                 int(f.get("deletions", 0)), str(f.get("patch") or ""))
                     for f in (doc.get("files") or [])[:max_files]]
            total = int(doc.get("total_commits", len(commits)))
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceBadResponse(self.name, f"malformed compare answer: {exc!r}") from None
        url = str(doc.get("html_url") or f"{self.web}/{self.repo}/compare/{base}...{head}")
        return DiffSummary(base=base, head=head, url=url, total_commits=total, commits=commits, files=files)

    async def diff(self, change: ChangeEvent, *, max_file_chars: int = MAX_FILE_CHARS,
                   max_total_chars: int = MAX_TOTAL_CHARS) -> ChangeDiff | None:
        """The patches between the change's previous version and its version (``DiffSource``)."""
        if change.service != self.service or not change.source.startswith("github"):
            return None
        base, head = _compare_refs(change)
        if not (base and head):
            return None
        summary = await self.compare(base, head)
        files, omitted = cap_patches([FileDiff(f.filename, f.status, f.additions, f.deletions, f.patch)
                                      for f in summary.files], max_file_chars, max_total_chars)
        return ChangeDiff(service=change.service, base=base, head=head, url=summary.url,
                          commits=summary.commits, files=files, omitted_files=omitted, source=self.name)


def _compare_refs(change: ChangeEvent) -> tuple[str, str]:
    """Full refs from the change's compare link when it has one (versions may be shortened SHAs)."""
    marker = "/compare/"
    if marker in change.diff_url:
        base, _, head = change.diff_url.split(marker, 1)[1].partition("...")
        return base, head
    return change.previous_version, change.version
