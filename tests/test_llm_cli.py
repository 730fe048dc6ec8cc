"""``onwatch investigate --case --json`` and ``onwatch bench rca --llm`` with the investigator on a scripted
OpenAI-compatible server (configured through ``ONWATCH_LLM__*``), over the demo scenario."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bot.benchmarks import rca
from bot.demo.simulate import simulate
from bot.investigate import cli as investigate_cli
from integrations import replay
from integrations.replay import ReplayMetrics
from tests.fakes.openai_tools import Turn, answer, serve_scripted

ANCHOR = 1_700_000_000.0


def _answer(body: dict[str, Any]) -> Turn:
    return answer(service="payments-api", kind="deploy", evidence=["t1"],
                  mechanism="the query added in payments_api/receipts.py filters on an unindexed column")


def _run(main: Any, args: argparse.Namespace) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(args)
    return code, out.getvalue()


@pytest.fixture
def demo_case(tmp_path: Path) -> Path:
    return simulate(7, anchor=ANCHOR).write(tmp_path / "cases")


async def test_investigate_case_json_carries_the_llm(demo_case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = argparse.Namespace(case=demo_case, alert=None, config=None, json=True, at=None)
    monkeypatch.delenv("ONWATCH_CONFIG", raising=False)
    code, text = await asyncio.to_thread(_run, investigate_cli.main, args)
    assert code == 0 and json.loads(text)["llm"]["status"] == "off"  # no endpoint: as before, plus "off"
    opened: list[Any] = []  # the model reads the sources the engine read: one set per run

    class Counted(ReplayMetrics):
        def __init__(self, case: Any) -> None:
            opened.append(case)
            super().__init__(case)

    monkeypatch.setattr(replay, "ReplayMetrics", Counted)
    script = [Turn(tool_calls=[("diff", {"service": "payments-api", "version": "v1.8.4"})]), _answer]
    async with serve_scripted(script) as fake:
        monkeypatch.setenv("ONWATCH_LLM__ENABLED", "true")
        monkeypatch.setenv("ONWATCH_LLM__BASE_URL", fake.url)
        monkeypatch.setenv("ONWATCH_LLM__MODEL", "local-model")
        code, text = await asyncio.to_thread(_run, investigate_cli.main, args)
    assert code == 0
    out = json.loads(text)
    llm = out["llm"]
    assert llm["status"] == "accepted" and llm["reason"] == ""
    assert llm["answer"]["service"] == "payments-api" and llm["answer"]["evidence"] == ["t1"]
    assert [t["name"] for t in llm["tool_calls"]] == ["diff"] and llm["tokens"]["total"] > 0
    assert out["ranked_services"][0] == "payments-api" and fake.seen[0]["model"] == "local-model"
    assert len(opened) == 1


async def test_bench_rca_llm(demo_case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = tmp_path / "ds"
    (dataset / "cases").mkdir(parents=True)
    await asyncio.to_thread(shutil.copytree, demo_case, dataset / "cases" / demo_case.name)
    (dataset / "labels.json").write_text(json.dumps({demo_case.name: {"root_cause_service": "payments-api"}}))
    args = argparse.Namespace(dataset=dataset, json=True, no_baro=True, limit=None, llm=True,
                              transcripts=tmp_path / "transcripts", config=None)
    monkeypatch.delenv("ONWATCH_CONFIG", raising=False)
    code, _ = await asyncio.to_thread(_run, rca.main, args)
    assert code == 2  # --llm without an endpoint is a clear error
    async with serve_scripted([Turn(tool_calls=[("changes", {})]), _answer]) as fake:
        monkeypatch.setenv("ONWATCH_LLM__ENABLED", "true")
        monkeypatch.setenv("ONWATCH_LLM__BASE_URL", fake.url)
        code, text = await asyncio.to_thread(_run, rca.main, args)
    assert code == 0
    s = json.loads(text)
    assert s["cases"] == 1 and s["engine_ac1"] == 1.0
    assert s["llm"]["ac1"] == 1.0 and s["llm"]["accepted"] == 1 and s["llm"]["tool_calls_per_case"] == 1
    assert s["llm"]["tokens_per_case"] > 0 and s["llm"]["seconds_per_case"] > 0
    t = json.loads((tmp_path / "transcripts" / f"{demo_case.name}.json").read_text())
    assert t["status"] == "accepted" and t["transcript"][0]["role"] == "system"
    assert t["transcript"][-1]["role"] == "assistant" and "unindexed" in t["transcript"][-1]["content"]
