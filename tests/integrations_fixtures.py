"""Helpers for the integrations tests: a real Prometheus loaded from a case bundle, and fake servers."""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from integrations.openmetrics import main_export_openmetrics

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningPrometheus:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def prometheus_with_case(case_dir: Path, work: Path) -> Iterator[RunningPrometheus]:
    """Export the case as OpenMetrics, build TSDB blocks with promtool, start Prometheus on a free port."""
    if not PROMETHEUS.exists() or not PROMTOOL.exists():
        pytest.skip("Prometheus is not installed (Debian package `prometheus` gives /usr/bin/prometheus and promtool)")
    om = work / "case.om"
    assert main_export_openmetrics(argparse.Namespace(case_dir=str(case_dir), output=str(om))) == 0
    with prometheus_with_openmetrics(om, work) as prom:
        yield prom


@contextmanager
def prometheus_with_openmetrics(om: Path, work: Path) -> Iterator[RunningPrometheus]:
    """Build TSDB blocks from an OpenMetrics file with promtool and start Prometheus on them."""
    if not PROMETHEUS.exists() or not PROMTOOL.exists():
        pytest.skip("Prometheus is not installed (Debian package `prometheus` gives /usr/bin/prometheus and promtool)")
    blocks = work / "blocks"
    subprocess.run([str(PROMTOOL), "tsdb", "create-blocks-from", "openmetrics", str(om), str(blocks)],
                   check=True, capture_output=True, timeout=120)
    data = work / "tsdb"
    data.mkdir()
    for block in blocks.iterdir():
        shutil.move(str(block), data / block.name)
    config = work / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    port = free_port()
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(work / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus did not become ready within 30 s")
            time.sleep(0.1)
        yield RunningPrometheus(url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run an aiohttp app on a free local port; yield its base URL."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
