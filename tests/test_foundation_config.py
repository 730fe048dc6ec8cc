"""Settings: YAML + environment overrides, secrets policy, clear errors with paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_settings
from bot.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "onwatch.yaml"
    p.write_text(text)
    return p


def test_yaml_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, """
server: {port: 9000}
database: {url: "sqlite:///x.db"}
approvals: {groups: {sre-oncall: ["slack:U1", "teams:0000-aad"]}}
sources:
  metrics: {kind: prometheus, url: "http://prometheus:9090", catalog: kubernetes}
""")
    monkeypatch.setenv("ONWATCH_DATABASE__URL", "postgresql://postgres@127.0.0.1/test")
    monkeypatch.setenv("ONWATCH_SLACK__BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("ONWATCH_SLACK__SIGNING_SECRET", "s3cr3t")
    s = load_settings(cfg)
    assert s.server.port == 9000
    assert s.database.url == "postgresql://postgres@127.0.0.1/test"
    assert s.slack.bot_token is not None and s.slack.bot_token.get_secret_value() == "xoxb-1"
    assert s.approvals.groups["sre-oncall"] == ["slack:U1", "teams:0000-aad"]
    assert s.sources.metrics is not None and s.sources.metrics.url == "http://prometheus:9090"


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONWATCH_CONFIG", str(write(tmp_path, "server: {port: 7001}\n")))
    assert load_settings().server.port == 7001


def test_plaintext_secret_in_yaml_is_refused(tmp_path: Path) -> None:
    cfg = write(tmp_path, "slack: {bot_token: xoxb-123, signing_secret: abc}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    text = "\n".join(err.value.errors)
    assert "slack.bot_token" in text and "ONWATCH_SLACK__BOT_TOKEN" in text
    assert "slack.signing_secret" in text


def test_plaintext_secret_allowed_when_operator_insists(tmp_path: Path) -> None:
    cfg = write(tmp_path, "allow_plaintext_secrets: true\nslack: {bot_token: xoxb-123, signing_secret: abc}\n")
    assert load_settings(cfg).slack.bot_token is not None


def test_secret_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "token"
    secret.write_text("hook-token\n")
    cfg = write(tmp_path, f"webhooks: {{token_file: {secret}}}\n")
    s = load_settings(cfg)
    assert s.webhooks.token is not None and s.webhooks.token.get_secret_value() == "hook-token"
    monkeypatch.setenv("ONWATCH_WEBHOOKS__HMAC_SECRET_FILE", str(secret))
    s = load_settings(cfg)
    assert s.webhooks.hmac_secret is not None and s.webhooks.hmac_secret.get_secret_value() == "hook-token"


def test_source_credentials_follow_the_one_secret_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Source credentials are secrets like any other: the environment, a mounted file, never the YAML."""
    token = tmp_path / "gh-token"
    token.write_text("ghp-secret\n")
    cfg = write(tmp_path, f"""
sources:
  metrics: {{url: "http://prometheus:9090"}}
  logs: {{url: "http://loki:3100", basic_user: u, basic_password_file: {token}}}
  changes: [{{kind: github, repo: acme/shop, token_file: {token}}}]
""")
    monkeypatch.setenv("ONWATCH_SOURCES__METRICS__BEARER_TOKEN", "prom-secret")
    s = load_settings(cfg)
    assert s.sources.metrics is not None and s.sources.metrics.bearer_token is not None
    assert s.sources.metrics.bearer_token.get_secret_value() == "prom-secret"
    assert s.sources.logs is not None and s.sources.logs.basic_password is not None
    assert s.sources.logs.basic_password.get_secret_value() == "ghp-secret"
    assert s.sources.changes[0].token is not None and s.sources.changes[0].token.get_secret_value() == "ghp-secret"
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, 'sources: {metrics: {url: "http://p", bearer_token: plain}}\n'))
    assert "sources.metrics.bearer_token" in str(err.value) and "ONWATCH_SOURCES__METRICS__BEARER_TOKEN" in str(err.value)


def test_runbook_signing_secrets_follow_the_one_secret_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``runbooks.secrets`` (what ``sign_with`` names) are read like every secret: env, env _FILE, YAML _file."""
    mounted = tmp_path / "flags-hook"
    mounted.write_text("flags-secret\n")
    cfg = write(tmp_path, "runbooks: {secrets: {flags_hook_file: flags-hook}}\n")  # relative to the YAML's folder
    monkeypatch.setenv("ONWATCH_RUNBOOKS__SECRETS__ROLLBACK_HOOK", "rollback-secret")
    monkeypatch.setenv("ONWATCH_RUNBOOKS__SECRETS__OTHER_HOOK_FILE", str(mounted))
    secrets = load_settings(cfg).runbooks.secrets
    assert {k: v.get_secret_value() for k, v in secrets.items()} == {
        "flags_hook": "flags-secret", "rollback_hook": "rollback-secret", "other_hook": "flags-secret"}
    assert "rollback-secret" not in repr(secrets)
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "runbooks: {secrets: {rollback_hook: plain}}\n"))
    assert "runbooks.secrets.rollback_hook: secrets are not read from the YAML file" in str(err.value)
    assert "ONWATCH_RUNBOOKS__SECRETS__ROLLBACK_HOOK or rollback_hook_file" in str(err.value)
    with pytest.raises(ConfigError, match="runbooks.secrets.gone_file: cannot read secret file"):
        load_settings(write(tmp_path, "runbooks: {secrets: {gone_file: /nonexistent/onwatch-secret}}\n"))
    monkeypatch.setenv("ONWATCH_RUNBOOKS__SECRETS__BAD-NAME", "x")
    with pytest.raises(ConfigError, match="'bad-name' is not a secret name"):
        load_settings(write(tmp_path, "server: {port: 8080}\n"))


@pytest.mark.parametrize(("yaml_text", "where", "key"), [
    ('sources: {metrics: {url: "http://p", bearer_token_env: PROM_TOKEN}}\n', "sources.metrics", "bearer_token"),
    ('sources: {logs: {url: "http://l", basic_user: u, basic_password_env: PW}}\n', "sources.logs", "basic_password"),
    ("sources: {changes: [{kind: github, repo: a/b, token_env: GITHUB_TOKEN}]}\n", "sources.changes.0", "token"),
])
def test_an_old_env_name_key_says_the_new_way(tmp_path: Path, yaml_text: str, where: str, key: str) -> None:
    """The removed ``*_env`` keys are refused with the way to write the secret now, not a bare "extra input"."""
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, yaml_text))
    text = str(err.value)
    assert where in text and f"{key}_env is no longer read" in text
    assert f"{key}_file:" in text and f"__{key.upper()}" in text and "not permitted" not in text


def test_every_error_is_listed_with_its_path(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
server: {port: 99999, bogus: 1}
approvals: {groups: {sre: ["U123"]}}
sources: {metrics: {kind: prometheus}}
""")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    text = "\n".join(err.value.errors)
    assert "server.port" in text
    assert "server.bogus" in text
    assert "sources.metrics.url" in text
    assert "approvals.groups" in text


def test_contradictory_settings_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONWATCH_SLACK__APP_TOKEN", "xapp-1")
    with pytest.raises(ConfigError, match="bot_token"):
        load_settings(write(tmp_path, "{}\n"))


@pytest.mark.parametrize("content,needle", [
    ("server: [1, 2\n", "not valid YAML"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("llm: {enabled: true}\n", "llm.base_url"),
])
def test_config_check_cli_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, needle: str) -> None:
    cfg = write(tmp_path, content)
    assert main(["config", "check", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_config_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "nope.yaml"), "config", "check"]) == 2
    assert "no such file" in capsys.readouterr().err
