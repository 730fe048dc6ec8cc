"""``onwatch slo status`` refusing clearly (exit 2, one line naming what is missing, no traceback) when it has
nothing to evaluate or nothing to read it from. Its output against a real Prometheus is checked in
``tests/test_slo_check.py``."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli import main as cli_main

CHECKOUT = {"name": "checkout-availability", "service": "checkout", "objective": 0.999,
            "good": 'http_requests_total{job="checkout",code!~"5.."}', "total": 'http_requests_total{job="checkout"}'}


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "onwatch.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _status(cfg: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    rc = cli_main(["slo", "status", "--config", str(cfg), *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def test_no_slos_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _status(_config(tmp_path, {"sources": {"metrics": {"url": "http://127.0.0.1:1"}}}), capsys)
    assert (rc, out) == (2, "") and err.strip() == "onwatch slo status: no slos: in the settings"


def test_no_metrics_source_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _status(_config(tmp_path, {"slos": [CHECKOUT]}), capsys)
    assert (rc, out) == (2, "") and "no sources.metrics" in err and "Traceback" not in err


def test_an_unknown_signal_is_a_settings_error_before_any_query(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    slo = {"name": "lat", "service": "checkout", "objective": 0.99, "signal": "no_such_signal", "threshold": 0.5,
           "good_when": "below"}
    cfg = _config(tmp_path, {"slos": [slo], "sources": {"metrics": {"url": "http://127.0.0.1:1", "catalog": "otel"}}})
    rc, out, err = _status(cfg, capsys)
    assert (rc, out) == (2, "") and "lat names the signal no_such_signal" in err


def test_an_unreachable_prometheus_is_named_by_its_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    cfg = _config(tmp_path, {"slos": [CHECKOUT], "sources": {"metrics": {"url": url, "retries": 0, "timeout_s": 5}}})
    rc, out, err = _status(cfg, capsys, "--json")
    assert (rc, out) == (2, "")
    assert err.startswith(f"onwatch slo status: cannot read the SLIs from {url}: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("at", ["yesterday", "nan", "2024-05-17 21:13"])
def test_a_bad_at_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], at: str) -> None:
    cfg = _config(tmp_path, {"sources": {"metrics": {"url": f"http://127.0.0.1:{closed_port()}"}}, "slos": [CHECKOUT]})
    rc, out, err = _status(cfg, capsys, "--at", at)
    assert rc == 2 and out == ""
    assert "neither RFC 3339" in err and "Traceback" not in err
