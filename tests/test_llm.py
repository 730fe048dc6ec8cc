"""Optional LLM: redaction before sending, evidence-checked answers, every call audited.

The model endpoint is a local aiohttp server speaking the OpenAI chat-completions wire format.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlmodel import select

from bot.llm.explain import ExplanationRejected, check, explain
from bot.llm.redact import redact
from bot.store.db import Database
from bot.store.models import AuditEvent
from integrations.llm import OpenAICompatible
from tests.fakes.openai_api import FakeOpenAI, serve_openai

REPORT: dict[str, Any] = {
    "abstained": False,
    "ranked_services": ["payments-api", "checkout"],
    "causes": [{"service": "payments-api", "kind": "deploy", "confidence": 0.82, "evidence": ["e1", "e2"]}],
    "evidence": [
        {"id": "e1", "source": "changes", "service": "payments-api", "summary": "deploy v1.8.4 by ops@acme.io 3 min before onset"},
        {"id": "e2", "source": "logs", "service": "payments-api",
         "summary": "new error: connect to postgres://app:hunter2@10.1.2.3:5432 failed, token=abc123secret"},
    ],
    "steps": [],
    "missing": [],
}


@pytest.mark.parametrize("raw,leak,tag", [
    ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop", "AUTH_HEADER"),
    ("slack xoxb-12345678-abcdefgh", "xoxb-12345678", "SLACK_TOKEN"),
    ("mail alice@example.com now", "alice@example.com", "EMAIL"),
    ("from 192.168.10.42 port", "192.168.10.42", "IPV4"),
    ("password=s3cr3t! next", "s3cr3t!", "SECRET_VALUE"),
    ("key AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP", "AWS_KEY"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "dozjgNryP4J3", "JWT"),
    ("postgres://app:hunter2@db:5432/x", "hunter2", "URL_CREDENTIALS"),
])
def test_redaction(raw: str, leak: str, tag: str) -> None:
    out = redact(raw)
    assert leak not in out.text
    assert out.counts.get(tag, 0) >= 1


def test_check_refuses_unknown_evidence_and_uncited_answers() -> None:
    assert check("payments-api's deploy [e1] brought new errors [e2].", REPORT).cited == ("e1", "e2")
    with pytest.raises(ExplanationRejected, match="does not exist"):
        check("It was the database [e9].", REPORT)
    with pytest.raises(ExplanationRejected, match="cites no evidence"):
        check("It was payments-api.", REPORT)
    with pytest.raises(ExplanationRejected, match="did not rank"):
        check("checkout is the root cause [e1].", {**REPORT, "causes": REPORT["causes"]})


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    async with serve_openai(lambda _body: "payments-api's deploy [e1] preceded new errors [e2].") as fake:
        yield fake


async def test_explain_redacts_audits_and_checks(db: Database, fake_llm: FakeOpenAI) -> None:
    seen, answers = fake_llm.seen, fake_llm.answers
    llm = OpenAICompatible(fake_llm.url, "sk-test", "local-model", timeout_s=5)
    try:
        out = await explain(db, llm, "local-model", "INC-1", REPORT)
        assert out is not None and out.cited == ("e1", "e2")
        sent = json.dumps(seen[0])
        for secret in ("hunter2", "10.1.2.3", "ops@acme.io", "abc123secret"):
            assert secret not in sent, f"{secret} was sent to the model"
        answers.append("It was the database [e77].")
        assert await explain(db, llm, "local-model", "INC-1", REPORT) is None
    finally:
        await llm.aclose()
    async with db.session() as s:
        rows = (await s.exec(select(AuditEvent).where(AuditEvent.action == "llm.call"))).all()
    assert [r.result.split(":")[0] for r in rows] == ["accepted", "rejected"]
    assert all("prompt_sha256" in r.params for r in rows)
