"""Issue 17, items 10 and "first use": no password in any message, duplicate YAML keys, relative paths, busy port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_settings
from bot.errors import ConfigError, DatabaseError
from bot.masking import mask
from bot.store.db import Database, normalise_urls
from bot.store.migrate import upgrade

SECRET = "SuperSecretPw"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "onwatch.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text", [
    f"postgresql://u:{SECRET}@db:5432/x",
    f"postgresql+psycopg://u:{SECRET}@db/x?sslmode=require",
    f"https://admin:{SECRET}@grafana.example/d",
    f"host=db user=u password={SECRET} dbname=x",
    f"password: '{SECRET}'",
    f"token={SECRET}&x=1",
    f"postgresql://u:{SECRET}@with@at@db/x",
])
def test_mask_hides_every_credential_shape(text: str) -> None:
    out = mask(text)
    assert SECRET not in out and "***" in out


def test_mask_keeps_text_without_credentials() -> None:
    for text in ("postgresql://onwatch@db/onwatch", "https://grafana.acme/d?x=1", "sqlite:///onwatch.db"):
        assert mask(text) == text


@pytest.mark.parametrize("url", [
    f"postgresql://u:{SECRET}@[::1/x",  # bad IPv6 host: make_url refuses it
    f"postgresql://u:{SECRET}@h:port/x",  # bad port
    f"mysql://u:{SECRET}@h/x",  # unsupported backend
])
def test_database_url_errors_mask_the_password(url: str) -> None:
    with pytest.raises(DatabaseError) as err:
        normalise_urls(url)
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("url", [
    f"postgresql://u:{SECRET}@[::1/x",
    f"mysql://u:{SECRET}@h/x",
    f"postgresql://u:{SECRET}@127.0.0.1:1/x",  # unreachable: psycopg's own message
])
def test_cli_never_prints_the_password(url: str, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ONWATCH_DATABASE__URL", url)
    assert main(["incidents", "list"]) == 3
    out = capsys.readouterr()
    assert SECRET not in out.err + out.out
    assert "Traceback" not in out.err


@pytest.mark.parametrize("content", [
    # the YAML parser quotes the offending line
    f"database: {{url: postgresql://u:{SECRET}@db/x\nserver: [1, 2\n",
    f"database:\n  url: \"postgresql://u:{SECRET}@db/x\"\n  url: \"postgresql://u:{SECRET}@db/y\"\n",
    f"database: {{url: \"postgresql://u:{SECRET}@db/x\", nope: 1}}\n",
    f"approvals: {{groups: {{g: [\"https://u:{SECRET}@x\"]}}}}\n",
    f"sources: {{metrics: {{kind: prometheus, url: \"http://u:{SECRET}@p:9090\", nope: 1}}}}\n",
])
def test_settings_errors_never_echo_a_password(tmp_path: Path, content: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, content)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert SECRET not in str(err.value) and all(SECRET not in e for e in err.value.errors)
    assert main(["config", "check", "--config", str(cfg)]) == 2
    assert SECRET not in capsys.readouterr().err


def test_duplicate_keys_are_refused_with_path_and_lines(tmp_path: Path) -> None:
    cfg = write(tmp_path, "server:\n  port: 9000\n  host: 127.0.0.1\n  port: 9001\nslack: {}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    (line,) = err.value.errors
    assert "server.port" in line and "lines 2 and 4" in line


def test_duplicate_top_level_section_is_refused(tmp_path: Path) -> None:
    cfg = write(tmp_path, "server: {port: 1}\nserver: {host: x}\n")
    with pytest.raises(ConfigError, match="server.*written twice"):
        load_settings(cfg)


def test_relative_paths_are_resolved_against_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "token").write_text("hook-token\n")
    cfg = conf_dir / "onwatch.yaml"
    cfg.write_text("database: {url: 'sqlite:///data/onwatch.db'}\n"
                   "runbooks: {dir: books}\n"
                   "webhooks: {token_file: token}\n"
                   "sources: {kubernetes: {kubeconfig: kube/read.yaml}}\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = load_settings(cfg)
    assert s.database.url == f"sqlite:///{conf_dir}/data/onwatch.db"
    assert s.runbooks.dir == conf_dir / "books"
    assert s.webhooks.token is not None and s.webhooks.token.get_secret_value() == "hook-token"
    assert s.sources.kubernetes is not None and s.sources.kubernetes.kubeconfig == conf_dir / "kube" / "read.yaml"


def test_absolute_and_memory_urls_are_unchanged(tmp_path: Path) -> None:
    cfg = write(tmp_path, "database: {url: 'sqlite:///:memory:'}\nrunbooks: {dir: /srv/books}\n")
    s = load_settings(cfg)
    assert s.database.url == "sqlite:///:memory:" and s.runbooks.dir == Path("/srv/books")


def test_serve_on_a_busy_port_is_one_line_and_exit_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = write(tmp_path, f"database: {{url: '{url}'}}\nserver: {{host: 127.0.0.1, port: {port}}}\n"
                              f"runbooks: {{dir: {Path(__file__).resolve().parents[1] / 'runbooks'}}}\n")
        assert main(["serve", "--config", str(cfg)]) == 4
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("onwatch:")]  # the rest are log lines
    assert f"cannot listen on 127.0.0.1:{port}" in line and "address already in use" in line, err


def test_database_class_masks_too() -> None:
    with pytest.raises(DatabaseError) as err:
        Database(f"oracle://u:{SECRET}@h/x")
    assert SECRET not in str(err.value)
