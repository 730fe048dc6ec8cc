"""The runbook catalog: the shipped runbooks and the documented example load; every problem is listed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.cli import main as cli_main
from bot.config import Settings
from bot.errors import ConfigError
from bot.remediate.catalog import HttpAction, KubernetesAction, load_catalog
from bot.remediate.params import ParamError, TemplateError, parse, placeholders, render, render_json
from tests.remediate_fixtures import ROOT

EXAMPLE = textwrap.dedent("""\
    id: rollback-via-pipeline
    title: Roll back {service} through the deploy pipeline
    description: Ask the CD pipeline to redeploy the previous version of {service}.
    match: {kinds: ["*"], services: ["*"]}
    action:
      executor: http
      method: POST
      url: https://ci.example.internal/hooks/rollback
      body: {service: "{service}", incident: "{incident_id}"}
      sign_with: rollback_hook
    risk: medium
    approval: {groups: [sre-oncall]}
""")


def test_shipped_catalog_validates() -> None:
    cat = load_catalog(ROOT / "runbooks", Settings(approvals={"groups": {"sre-oncall": ["slack:U1"],  # type: ignore[arg-type]
                                                                           "platform": ["slack:U2"]}},
                                                   runbooks={"secrets": {"rollback_hook": "r", "flags_hook": "f"}}))
    assert set(cat.runbooks) == {
        "rollback-deployment", "restart-deployment", "scale-deployment", "cordon-drain-node",
        "delete-stuck-pod", "feature-flag-off", "webhook-argocd-rollback",
    }
    ops = {rb.action.operation for rb in cat if isinstance(rb.action, KubernetesAction)}
    assert ops == {"rollback", "restart", "scale", "cordon_drain", "delete_pod"}
    assert cat.warnings == []
    assert cat.get("cordon-drain-node").approvals_needed == 2  # type: ignore[union-attr]


def test_documented_example_loads_as_written(tmp_path: Path) -> None:
    (tmp_path / "rollback-via-pipeline.yaml").write_text(EXAMPLE)
    cat = load_catalog(tmp_path, Settings())
    rb = cat.get("rollback-via-pipeline")
    assert rb is not None and isinstance(rb.action, HttpAction)
    assert rb.action.body == {"service": "{service}", "incident": "{incident_id}"}
    assert rb.approvals_needed == 1 and rb.auto is None and rb.verify is None
    assert cat.warnings and "sre-oncall" in cat.warnings[0]
    # the docs carry the same example verbatim
    assert EXAMPLE.strip() in (ROOT / "docs" / "runbooks.md").read_text()


def test_every_problem_is_listed_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(EXAMPLE.replace("{incident_id}", "{secret_token}"))
    (tmp_path / "b.yaml").write_text("id: b\ntitle: t\naction: {executor: shell, command: rm}\nrisk: low\n"
                                     "approval: {groups: [x]}\n")
    (tmp_path / "c.yaml").write_text(EXAMPLE.replace("rollback-via-pipeline", "c").replace("risk: medium", "risk: high")
                                     + "auto: {classes: [oom_kill]}\n")
    (tmp_path / "d.yaml").write_text("id: [unclosed\n")
    (tmp_path / "e.yaml").write_text(EXAMPLE.replace("rollback-via-pipeline", "e") + "auto: {classes: [deploy]}\n")
    (tmp_path / "f.yaml").write_text(EXAMPLE.replace("url: https://ci.example.internal/hooks/rollback",
                                                     "url: https://{service}.example.internal/x")
                                     .replace("rollback-via-pipeline", "f"))
    (tmp_path / "g.yaml").write_text(EXAMPLE.replace("{service} through", "{service.__class__} through")
                                     .replace("rollback-via-pipeline", "g"))
    with pytest.raises(ConfigError) as exc:
        load_catalog(tmp_path, Settings())
    errs = "\n".join(exc.value.errors)
    assert f"{tmp_path / 'a.yaml'}: action.body: unknown placeholder(s) {{secret_token}}" in errs
    assert f"{tmp_path / 'b.yaml'}: action" in errs
    assert f"{tmp_path / 'c.yaml'}" in errs and "high-risk runbook may not run automatically" in errs
    assert f"{tmp_path / 'd.yaml'}: not valid YAML" in errs
    assert f"{tmp_path / 'e.yaml'}: auto: " in errs and "are not failure classes" in errs
    assert f"{tmp_path / 'f.yaml'}: action" in errs and "host may not hold a placeholder" in errs
    assert f"{tmp_path / 'g.yaml'}: title" in errs


def test_the_old_secret_env_key_is_refused_with_the_new_way(tmp_path: Path) -> None:
    """Runbook secrets follow the settings' one scheme; the older env-variable key says what to write instead."""
    (tmp_path / "old.yaml").write_text(EXAMPLE.replace("sign_with: rollback_hook", "hmac_secret_env: HOOK_SECRET"))
    with pytest.raises(ConfigError) as exc:
        load_catalog(tmp_path, Settings())
    [err] = exc.value.errors
    assert "\n" not in err and err.startswith(f"{tmp_path / 'old.yaml'}: action")
    assert "hmac_secret_env is no longer read: write sign_with: <name>" in err
    assert "ONWATCH_RUNBOOKS__SECRETS__<NAME> or runbooks.secrets.<name>_file" in err
    (tmp_path / "old.yaml").write_text(EXAMPLE.replace("sign_with: rollback_hook", "sign_with: ROLLBACK_HOOK"))
    with pytest.raises(ConfigError, match="sign_with"):
        load_catalog(tmp_path, Settings())


def test_duplicate_ids_and_missing_dir(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(EXAMPLE)
    (tmp_path / "two.yaml").write_text(EXAMPLE)
    with pytest.raises(ConfigError, match="already defined"):
        load_catalog(tmp_path, Settings())
    with pytest.raises(ConfigError, match="does not exist"):
        load_catalog(tmp_path / "nope", Settings())
    assert len(load_catalog(tmp_path / "nope", Settings(), missing_ok=True)) == 0


def test_config_check_reports_runbook_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rb").mkdir()
    (tmp_path / "rb" / "bad.yaml").write_text("id: Bad Id\ntitle: x\n")
    cfg = tmp_path / "onwatch.yaml"
    cfg.write_text(f"runbooks: {{dir: {tmp_path / 'rb'}}}\n")
    assert cli_main(["config", "check", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: id:" in err and "bad.yaml: action:" in err and "bad.yaml: risk:" in err
    cfg.write_text(f"runbooks: {{dir: {ROOT / 'runbooks'}}}\n")
    assert cli_main(["config", "check", "--config", str(cfg)]) == 0


def test_templates_refuse_anything_but_plain_names() -> None:
    assert placeholders("a {service} b {{literal}}") == {"service"}
    assert render("x {{y}} {a}", {"a": "{b}"}) == "x {y} {b}"  # a value is never re-interpreted
    for bad in ("{0}", "{a.b}", "{a[0]}", "{a!r}", "{a:>10}", "{", "}", "{A}"):
        with pytest.raises(TemplateError):
            parse(bad)
    assert render("https://h/{f}", {"f": "../admin?x=1"}, "url") == "https://h/..%2Fadmin%3Fx%3D1"
    with pytest.raises(ParamError):
        render("{h}", {"h": "a\r\nX-Evil: 1"}, "header")
    assert render_json({"n": "{n}", "s": "v{n}"}, {"n": 3}) == {"n": 3, "s": "v3"}


@given(st.text(max_size=60))
def test_rendered_values_are_inert(value: str) -> None:
    """Whatever text a log line or alert carries, rendering copies it verbatim and nothing else happens."""
    assert render("pre {v} post", {"v": value}) == f"pre {value} post"
    assert render_json({"k": "{v}"}, {"v": value}) == {"k": value}
