"""Diffs of a change for the LLM investigator: GitHub compare with patches, Argo CD manifests at two
revisions (fake servers speaking their APIs), size caps per file and in total."""

from __future__ import annotations

import json
from typing import Any

from integrations.argocd import ArgoCDChanges
from integrations.base import ChangeEvent, TimeWindow
from integrations.diffs import FileDiff, cap_patches
from integrations.github import GitHubChanges
from integrations.http import HttpConfig, HttpSource
from tests.fakes import argocd as fake_argo
from tests.fakes import github as fake_github
from tests.integrations_fixtures import serve
from tests.test_integrations_changes import T0, iso

PATCH = ("@@ -41,4 +41,9 @@ async def receipt(request):\n+    pending = await db.fetch(\n"
         "+        \"SELECT * FROM payments WHERE merchant_id = $1 AND status = $2\",\n+    )\n")


async def test_github_diff_has_patches_capped() -> None:
    base, head = "a" * 40, "b" * 40
    data = {"repo": "acme/payments-api", "token": "t", "releases": [], "deployments": [
        {"id": 1, "sha": base, "ref": "v1.8.3", "environment": "production", "created_at": iso(T0)},
        {"id": 2, "sha": head, "ref": "v1.8.4", "environment": "production", "created_at": iso(T0 + 600)}],
        "compares": {f"{base}...{head}": {"total_commits": 1, "commits": [
            {"sha": "c" * 40, "commit": {"message": "receipts: pending payments (#412)"}}], "files": [
            {"filename": "payments_api/receipts.py", "status": "modified", "additions": 3, "deletions": 0,
             "patch": PATCH},
            {"filename": "package-lock.json", "status": "modified", "additions": 4000, "deletions": 3000,
             "patch": "+x\n" * 5000},
            {"filename": "logo.png", "status": "added", "additions": 0, "deletions": 0}]}}}
    async with serve(fake_github.make_app(data)) as url:
        http = HttpSource("github", HttpConfig(base_url=url, bearer_token="t", retries=0))
        gh = GitHubChanges(http, repo="acme/payments-api", service="payments-api", include=("deployments",))
        [change] = [c for c in await gh.changes(TimeWindow(T0 + 1, T0 + 700)) if c.version == "v1.8.4"]
        d = await gh.diff(change, max_file_chars=2000, max_total_chars=3000)
        assert d is not None and (d.base, d.head) == (base, head) and d.commits == [("c" * 12, "receipts: pending payments (#412)")]
        first, lock, png = d.files
        assert first.patch == PATCH and not first.truncated
        assert lock.truncated and len(lock.patch) <= 2000 and lock.patch.endswith("\n")
        assert png.patch == "" and not png.truncated
        assert sum(len(f.patch) for f in d.files) <= 3000
        other = ChangeEvent(service="cart", time=T0, source="github", version="x", previous_version="y")
        assert await gh.diff(other) is None
        await http.aclose()


def test_total_cap_keeps_files_listed() -> None:
    files = [FileDiff(f"f{i}.py", patch="+line\n" * 100) for i in range(5)]
    out, omitted = cap_patches(files, max_file_chars=400, max_total_chars=1000)
    assert [f.filename for f in out] == [f"f{i}.py" for i in range(5)]
    assert sum(len(f.patch) for f in out) <= 1000 and omitted == 2
    assert out[4].patch == "" and out[4].truncated


def _manifest(image: str, replicas: int) -> list[dict[str, Any]]:
    return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "payments-api", "namespace": "shop"},
             "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "payments", "namespace": "shop"},
             "data": {"POOL": "20"}}]


async def test_argocd_revision_diff() -> None:
    old, new = "1" * 40, "2" * 40
    history = [{"id": i, "revision": r, "deployedAt": iso(T0 + 100 * i)} for i, r in enumerate([old, new])]
    apps = [{"metadata": {"name": "payments-api"}, "spec": {}, "status": {"history": history}}]
    manifests = {"payments-api": {old: _manifest("shop/payments-api:v1.8.3", 3),
                                  new: _manifest("shop/payments-api:v1.8.4", 3)}}
    async with serve(fake_argo.make_app(apps, "argo", manifests)) as url:
        http = HttpSource("argocd", HttpConfig(base_url=url, bearer_token="argo", retries=0))
        argo = ArgoCDChanges(http)
        [change] = await argo.changes(TimeWindow(T0 + 50, T0 + 200))
        d = await argo.diff(change)
        assert d is not None and (d.base, d.head) == (old, new)
        [f] = d.files  # the ConfigMap did not change
        assert f.filename == "Deployment/shop/payments-api" and (f.additions, f.deletions) == (1, 1)
        assert "-      - image: shop/payments-api:v1.8.3\n+      - image: shop/payments-api:v1.8.4" in f.patch
        assert await argo.diff(ChangeEvent(service="payments-api", time=T0, source="github")) is None
        await http.aclose()
    assert json.dumps(_manifest("x", 1))  # the fake serves manifests as JSON strings, as Argo CD does
