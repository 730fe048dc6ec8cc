"""Settings of the telemetry and change sources (the ``sources`` section of the settings tree)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    concurrency: int = Field(default=4, ge=1, le=64)
    max_bytes: int = Field(default=20_000_000, ge=1024, description="size cap on one response")


class HttpAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bearer_token_env: str | None = None
    basic_user: str | None = None
    basic_password_env: str | None = None
    tls_verify: bool = True
    ca_file: Path | None = None


class MetricsSourceSettings(_Source, HttpAuth):
    kind: Literal["prometheus"] = "prometheus"
    url: str
    catalog: str = Field(default="kubernetes", description="catalog profile name or a YAML file path")
    max_points: int = Field(default=600, ge=10, le=11000)
    retries: int = Field(default=3, ge=0, le=10)


class LogSourceSettings(_Source, HttpAuth):
    kind: Literal["loki"] = "loki"
    url: str
    service_label: str = "service"
    max_lines: int = Field(default=2000, ge=1)


class TraceSourceSettings(_Source, HttpAuth):
    kind: Literal["tempo", "jaeger"] = "tempo"
    url: str
    max_traces: int = Field(default=200, ge=1)


class ChangeSourceSettings(_Source):
    kind: Literal["github", "argocd", "webhook"]
    repo: str | None = None
    url: str | None = None
    token_env: str | None = None
    app: str | None = None
    service: str | None = Field(default=None, description="the service this repo or app deploys")


class KubernetesSettings(_Source):
    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False
    namespaces: list[str] = Field(default_factory=list)
    service_label: str = "app.kubernetes.io/name"
    write_kubeconfig: Path | None = Field(default=None, description="separate write credential for executors")
    write_context: str | None = None
    write_in_cluster_token_file: Path | None = None


class GrafanaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    metrics_datasource_uid: str = "prometheus"
    logs_datasource_uid: str = "loki"
    traces_datasource_uid: str = "tempo"
    org_id: int = 1


class ReplaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path


class SourcesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metrics: MetricsSourceSettings | None = None
    logs: LogSourceSettings | None = None
    traces: TraceSourceSettings | None = None
    changes: list[ChangeSourceSettings] = Field(default_factory=list)
    kubernetes: KubernetesSettings | None = None
    grafana: GrafanaSettings | None = None
    replay: ReplaySettings | None = None
