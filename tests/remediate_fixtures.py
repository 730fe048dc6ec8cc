"""Helpers for the remediation tests: settings, a seeded incident, a recording chat hub, fake sources,
the fake Kubernetes API server and a local webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.app import context_for
from bot.chat.hub import ChatHub
from bot.config import Settings
from bot.context import AppContext
from bot.investigate.service import handle_job
from bot.jobs import JobRunner
from bot.remediate.catalog import Catalog, load_catalog
from bot.remediate.service import RemediationService
from bot.store.db import Database
from bot.store.models import Incident, Investigation, Job
from integrations.base import Series, Sources, TimeWindow
from integrations.executor_setup import build_registry
from integrations.executors import ExecutorRegistry
from integrations.http_executor import HttpExecutor
from integrations.kubernetes_write import KubernetesWriteExecutor
from integrations.replay import replay_sources
from tests.fakes.k8s_write import FakeK8s

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {
    "sre-oncall": ["slack:U1", "slack:U2", "slack:S9", "teams:aad-1"],
    "platform": ["slack:U3", "slack:U4"],
}


def make_settings(db_url: str, *, runbooks_dir: Path | None = None, kubeconfig: Path | None = None,
                  read_kubeconfig: Path | None = None, deployments: dict[str, str] | None = None,
                  ttl: int = 3600, auto_enabled: bool = True, secrets: dict[str, str] | None = None) -> Settings:
    k8s: dict[str, Any] | None = None
    if kubeconfig is not None or read_kubeconfig is not None:
        k8s = {"write_kubeconfig": kubeconfig, "write_context": "prod-write" if kubeconfig else None,
               "kubeconfig": read_kubeconfig}
    return Settings(  # type: ignore[arg-type]
        database={"url": db_url},
        runbooks={"dir": runbooks_dir or ROOT / "runbooks", "proposal_ttl_s": ttl, "auto_enabled": auto_enabled,
                  "deployments": deployments if deployments is not None else {"checkout": "shop/checkout",
                                                                              "cart": "shop/cart"},
                  "secrets": secrets or {}},
        approvals={"groups": GROUPS},
        sources={"kubernetes": k8s} if k8s else {},
    )


class RecordingHub(ChatHub):
    """A ChatHub that records the domain events instead of posting them."""

    def __init__(self, db: Database):
        super().__init__(db)
        self.events: list[tuple[str, Any]] = []

    async def proposals_offered(self, incident_id: str, proposal_ids: list[str], refused: list[str]) -> None:
        self.events.append(("offered", (incident_id, list(proposal_ids), list(refused))))

    async def proposal_changed(self, proposal_id: str) -> None:
        self.events.append(("changed", proposal_id))

    async def notify(self, incident_id: str, text: str, key: str = "") -> None:
        self.events.append(("notify", (incident_id, text)))

    async def incident_updated(self, incident_id: str) -> None:
        self.events.append(("incident", incident_id))

    def notes(self) -> list[str]:
        return [v[1] for k, v in self.events if k == "notify"]

    def refused(self) -> list[str]:
        return [r for kind, v in self.events if kind == "offered" for r in v[2]]


class ScriptedMetrics:
    """A MetricsSource whose value for a signal follows a script: one value per call, the last repeats."""

    name = "scripted"

    def __init__(self, values: dict[str, list[float]]):
        self.values = values
        self.calls = 0

    async def signal(self, signal: str, window: TimeWindow, services: Sequence[str] | None = None) -> list[Series]:
        self.calls += 1
        script = self.values.get(signal, [])
        if not script:
            return []
        v = script[min(self.calls - 1, len(script) - 1)]
        return [Series(service=(services or ["x"])[0], signal=signal, points=[(window.end, v)])]

    async def available_signals(self) -> list[str]:
        return list(self.values)

    def link(self, signal: str, window: TimeWindow) -> str:
        return ""


def make_ctx(settings: Settings, db: Database, *, catalog: Catalog | None = None,
             registry: ExecutorRegistry | None = None, metrics: ScriptedMetrics | None = None
             ) -> tuple[AppContext, RemediationService, RecordingHub]:
    hub = RecordingHub(db)
    ctx = context_for(settings, db)
    ctx.chat = hub
    if metrics is not None:
        ctx.sources_factory = lambda: Sources(metrics=metrics)
    svc = RemediationService(ctx, catalog=catalog or load_catalog(settings.runbooks.dir, settings),
                             executors=registry if registry is not None else build_registry(
                                 settings.sources.kubernetes, settings.runbooks.secrets))
    ctx.remediation = svc
    return ctx, svc, hub


async def seed(db: Database, causes: list[dict[str, Any]], *, evidence: list[dict[str, Any]] | None = None,
               requested_by: str = "onwatch:onwatch", services: list[str] | None = None) -> tuple[str, str]:
    inc = Incident(title="checkout errors", services=services or [c["service"] for c in causes])
    async with db.begin() as s:
        s.add(inc)
        await s.flush()
        inv = Investigation(incident_id=inc.id, status="done", requested_by=requested_by,
                            report={"abstained": False, "causes": causes, "evidence": evidence or []})
        s.add(inv)
    return inc.id, inv.id


# ---------------------------------------------------------------- fake Kubernetes


async def start_fake_k8s(fake: FakeK8s) -> TestServer:
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    return server


def shop_cluster(fake: FakeK8s) -> None:
    """checkout with three revisions (v1, v2, v3), opted in to remediation; a node with three pods."""
    dep = fake.add_deployment("shop", "checkout", ["shop/checkout:v1", "shop/checkout:v2", "shop/checkout:v3"],
                              replicas=3, labels={"app.kubernetes.io/name": "checkout",
                                                  "onwatch.io/remediation": "enabled"})
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    fake.add_deployment("shop", "cart", ["shop/cart:v1"], replicas=2,
                        labels={"app.kubernetes.io/name": "cart"})  # not opted in
    fake.add_node("node-1")
    fake.add_pod("shop", "checkout-abc-1", node="node-1", labels={"app": "checkout", "onwatch.io/remediation": "enabled"})
    fake.add_pod("shop", "checkout-abc-2", node="node-1", labels={"app": "checkout", "onwatch.io/remediation": "enabled"})
    fake.add_pod("kube-system", "fluentbit-x", node="node-1", owner_kind="DaemonSet")


def k8s_registry(settings: Settings, http: HttpExecutor | None = None) -> ExecutorRegistry:
    return ExecutorRegistry({"kubernetes": KubernetesWriteExecutor(settings.sources.kubernetes),
                             "http": http or HttpExecutor()})


# ---------------------------------------------------------------- webhook receiver


@dataclass
class Receiver:
    """A local HTTP endpoint that records what it receives and checks the HMAC like a real receiver would."""

    secret: str
    status: int = 200
    delay_s: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        import asyncio

        body = await request.read()
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        good = hmac.compare_digest(request.headers.get("X-Onwatch-Signature", ""), expected)
        self.received.append({"method": request.method, "path": request.path, "host": request.headers.get("Host"),
                              "body": json.loads(body) if body else None, "signature_ok": good,
                              "delivery": request.headers.get("X-Onwatch-Delivery")})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not good:
            return web.json_response({"error": "bad signature"}, status=401)
        return web.json_response({"ok": True}, status=self.status)


class RedirectTransport(httpx.AsyncBaseTransport):
    """Sends every request to a local server over real TCP, keeping path, body and headers (Host included)."""

    def __init__(self, base: str):
        self.base = httpx.URL(base)
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme=self.base.scheme, host=self.base.host, port=self.base.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def serve_receiver(secret: str) -> AsyncIterator[tuple[Receiver, str]]:
    """A local webhook receiver checking the HMAC signature, and its base URL."""
    rec = Receiver(secret=secret)
    server = TestServer(rec.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield rec, str(server.make_url(""))
    finally:
        await server.close()


def wire_e2e(ctx: AppContext, case: Path, receiver_url: str, hook_secret: str) -> JobRunner:
    """The end-to-end tests' services: replayed telemetry, the HTTP executor pointed at a local receiver,
    and a job runner for investigations and executions (verification polls for minutes: the remediation
    tests cover it, not these)."""
    ctx.sources_factory = lambda: replay_sources(case)
    http = HttpExecutor(httpx.AsyncClient(transport=RedirectTransport(receiver_url)),
                        secrets={"rollback_hook": SecretStr(hook_secret)})
    remediation = RemediationService(ctx, executors=ExecutorRegistry({"http": http}))
    ctx.remediation = remediation

    async def investigation(job: Job) -> None:
        await handle_job(ctx, job.payload)

    return JobRunner(db=ctx.db, queue=ctx.jobs, handlers={"investigation": investigation,
                                                          "execution": remediation.run_execution})
