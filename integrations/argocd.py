"""Argo CD as a change source: each application's sync history (``status.history``) becomes ``ChangeEvent``s,
with the previous revision and, for GitHub-hosted repositories, a compare link. ``diff`` renders what a
sync changed as a unified diff of the application's manifests at the two revisions (Argo CD's own
``/manifests?revision=`` endpoint), one file per Kubernetes object."""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import yaml

from integrations.base import ChangeEvent, ChangeKind, SourceBadResponse, TimeWindow
from integrations.diffs import (
    MAX_FILE_CHARS,
    MAX_TOTAL_CHARS,
    ChangeDiff,
    FileDiff,
    cap_patches,
    patch_counts,
)
from integrations.github import parse_rfc3339, short
from integrations.http import HttpSource, config_from_settings, expect
from integrations.settings import ChangeSourceSettings


def _revision(entry: dict[str, Any]) -> str:
    rev = entry.get("revision")
    if not rev and entry.get("revisions"):
        rev = entry["revisions"][0]
    return str(rev or "")


def _repo(entry: dict[str, Any], app: dict[str, Any]) -> str:
    src = entry.get("source") or (entry.get("sources") or [{}])[0] or (app.get("spec") or {}).get("source") or {}
    return str(src.get("repoURL", ""))


def compare_url(repo_url: str, old: str, new: str) -> str:
    if not (old and new and old != new):
        return ""
    base = repo_url.removesuffix(".git").rstrip("/")
    if base.startswith("git@github.com:"):
        base = "https://github.com/" + base.removeprefix("git@github.com:")
    return f"{base}/compare/{old}...{new}" if base.startswith("https://github.com/") else ""


class ArgoCDChanges:
    """``ChangeSource`` over one Argo CD application, or every application the token can read."""

    def __init__(self, http: HttpSource, *, app: str | None = None, service: str | None = None, name: str = "argocd"):
        self.name = name
        self.http = http
        self.app = app
        self.service = service
        self.base_url = http.cfg.base_url.rstrip("/")

    @classmethod
    def from_settings(cls, s: ChangeSourceSettings, *, where: str = "sources.changes") -> ArgoCDChanges:
        assert s.url is not None  # the settings validator insists
        return cls(HttpSource("argocd", config_from_settings(s, s.url, where=where)), app=s.app, service=s.service)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def applications(self) -> list[dict[str, Any]]:
        if self.app:
            doc = await self.http.get_json(f"/api/v1/applications/{quote(self.app, safe='')}")
            expect(self.name, isinstance(doc, dict), "application is not an object")
            return [doc]
        doc = await self.http.get_json("/api/v1/applications")
        expect(self.name, isinstance(doc, dict) and isinstance(doc.get("items") or [], list), "no items list")
        return list(doc.get("items") or [])

    async def changes(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[ChangeEvent]:
        out: list[ChangeEvent] = []
        for app in await self.applications():
            try:
                name = str(app["metadata"]["name"])
                history = list((app.get("status") or {}).get("history") or [])
            except (KeyError, TypeError) as exc:
                raise SourceBadResponse(self.name, f"malformed application: {exc!r}") from None
            service = self.service or name
            if services is not None and service not in services:
                continue
            out += self._events(app, name, service, history, window)
        return sorted(out, key=lambda c: c.time)

    def _events(self, app: dict[str, Any], name: str, service: str, history: list[dict[str, Any]],
                window: TimeWindow) -> list[ChangeEvent]:
        history.sort(key=lambda h: (parse_rfc3339(h.get("deployedAt"), self.name), h.get("id", 0)))
        out: list[ChangeEvent] = []
        seen: list[str] = []
        for entry in history:
            rev = _revision(entry)
            prev = seen[-1] if seen else ""
            t = parse_rfc3339(entry.get("deployedAt"), self.name)
            if window.start <= t <= window.end:
                kind: ChangeKind = "rollback" if rev in seen[:-1] and rev != prev else "deploy"
                out.append(ChangeEvent(
                    service=service, time=t, kind=kind, version=short(rev), previous_version=short(prev),
                    description=f"Argo CD sync of {name}" + (f" (history id {entry['id']})" if "id" in entry else ""),
                    url=f"{self.base_url}/applications/{quote(name, safe='')}",
                    diff_url=compare_url(_repo(entry, app), prev, rev), source="argocd",
                ))
            seen.append(rev)
        return out

    async def diff(self, change: ChangeEvent, *, max_file_chars: int = MAX_FILE_CHARS,
                   max_total_chars: int = MAX_TOTAL_CHARS) -> ChangeDiff | None:
        """The manifests that differ between the sync's previous revision and its revision (``DiffSource``)."""
        if change.source != "argocd" or not (change.version and change.previous_version):
            return None
        for app in await self.applications():
            name = str((app.get("metadata") or {}).get("name", ""))
            if (self.service or name) != change.service:
                continue
            revs = {short(_revision(h)): _revision(h) for h in (app.get("status") or {}).get("history") or []}
            old, new = revs.get(change.previous_version), revs.get(change.version)
            if not (old and new):
                return None
            before, after = await self._manifests(name, old), await self._manifests(name, new)
            files: list[FileDiff] = []
            for key in sorted(set(before) | set(after)):
                a, b = before.get(key, ""), after.get(key, "")
                if a == b:
                    continue
                patch = "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True), key, key, n=2))
                add, dele = patch_counts(patch)
                files.append(FileDiff(key, "added" if not a else "removed" if not b else "modified", add, dele, patch))
            capped, omitted = cap_patches(files, max_file_chars, max_total_chars)
            return ChangeDiff(service=change.service, base=old, head=new, url=change.url or change.diff_url,
                              files=capped, omitted_files=omitted, source=self.name)
        return None

    async def _manifests(self, app: str, revision: str) -> dict[str, str]:
        """``kind/namespace/name`` -> the object as sorted YAML, at ``revision``."""
        doc = await self.http.get_json(f"/api/v1/applications/{quote(app, safe='')}/manifests",
                                       {"revision": revision})
        expect(self.name, isinstance(doc, dict), "manifests is not an object")
        out: dict[str, str] = {}
        for raw in doc.get("manifests") or []:
            try:
                obj = json.loads(raw) if isinstance(raw, str) else raw
                meta = obj.get("metadata") or {}
                key = f"{obj.get('kind', '?')}/{meta.get('namespace', '')}/{meta.get('name', '?')}"
            except (json.JSONDecodeError, AttributeError) as exc:
                raise SourceBadResponse(self.name, f"malformed manifest: {exc!r}") from None
            out[key] = yaml.safe_dump(obj, sort_keys=True, default_flow_style=False)
        return out
