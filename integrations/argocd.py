"""Argo CD as a change source: each application's sync history (``status.history``) becomes ``ChangeEvent``s,
with the previous revision and, for GitHub-hosted repositories, a compare link."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from integrations.base import ChangeEvent, ChangeKind, SourceBadResponse, TimeWindow
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
