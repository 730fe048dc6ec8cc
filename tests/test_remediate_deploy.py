"""deploy/kubernetes: every manifest validates against the Kubernetes schema (offline), and RBAC is least
privilege: the reader cannot write, the executor holds only what the shipped runbooks need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"


def _docs() -> list[tuple[Path, dict[str, Any]]]:
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    out = []
    for res in kust["resources"]:
        for doc in yaml.safe_load_all((DEPLOY / res).read_text()):
            if doc:
                out.append((DEPLOY / res, doc))
    return out


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    files = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files


def test_manifests_validate_against_the_kubernetes_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = _docs()
    assert len(docs) >= 12
    for path, doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")


def test_a_broken_manifest_is_caught() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    bad = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "x"},
           "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": "delete", "bogus": 1}]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def _rules(kind: str, name: str) -> set[tuple[str, str, str]]:
    for _p, doc in _docs():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return {(g, r, v) for rule in doc["rules"] for g in rule["apiGroups"] for r in rule["resources"]
                    for v in rule["verbs"]}
    raise AssertionError(f"{kind} {name} not found")


def test_reader_is_read_only() -> None:
    rules = _rules("ClusterRole", "onwatch-read")
    assert {v for _g, _r, v in rules} == {"get", "list", "watch"}
    assert not any(r == "secrets" for _g, r, _v in rules)


def test_executor_holds_only_what_the_runbooks_need() -> None:
    assert _rules("Role", "onwatch-executor") == {
        ("apps", "deployments", "get"), ("apps", "deployments", "list"), ("apps", "deployments", "patch"),
        ("apps", "deployments/scale", "get"), ("apps", "deployments/scale", "patch"),
        ("apps", "replicasets", "list"),
        ("", "pods", "get"), ("", "pods", "delete"),
    }
    assert _rules("ClusterRole", "onwatch-executor-drain") == {
        ("", "nodes", "get"), ("", "nodes", "patch"), ("", "pods", "list"), ("", "pods/eviction", "create"),
    }


def test_two_identities_and_the_pod_runs_as_the_reader() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for _p, d in _docs()}
    assert ("ServiceAccount", "onwatch-reader") in docs and ("ServiceAccount", "onwatch-executor") in docs
    pod = docs[("Deployment", "onwatch")]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "onwatch-reader"
    bindings = {name: d["subjects"][0]["name"] for (kind, name), d in docs.items() if kind.endswith("Binding")}
    assert bindings == {"onwatch-read": "onwatch-reader", "onwatch-executor": "onwatch-executor",
                        "onwatch-executor-drain": "onwatch-executor"}
    cfg = yaml.safe_load(docs[("ConfigMap", "onwatch-config")]["data"]["onwatch.yaml"])
    token_path = cfg["sources"]["kubernetes"]["write_in_cluster_token_file"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert token_path.startswith(mounts["executor-token"])


def test_sample_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.config import load_settings
    from bot.remediate.catalog import load_catalog

    docs = {(d["kind"], d["metadata"]["name"]): d for _p, d in _docs()}
    f = tmp_path / "onwatch.yaml"
    f.write_text(docs[("ConfigMap", "onwatch-config")]["data"]["onwatch.yaml"])
    # without the signing secrets the HTTP runbooks load with a warning each (they are not offered)
    warned = load_catalog(ROOT / "runbooks", load_settings(f)).warnings
    assert sorted(w.split()[1] for w in warned) == ["feature-flag-off", "webhook-argocd-rollback"]
    # the onwatch-secrets Secret (envFrom) holds them, as the ConfigMap's header says
    monkeypatch.setenv("ONWATCH_RUNBOOKS__SECRETS__ROLLBACK_HOOK", "r")
    monkeypatch.setenv("ONWATCH_RUNBOOKS__SECRETS__FLAGS_HOOK", "f")
    settings = load_settings(f)
    cat = load_catalog(ROOT / "runbooks", settings)
    assert cat.warnings == []
