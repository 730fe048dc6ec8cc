"""Settings of the telemetry and change sources (the ``sources`` section of the settings tree).

Every key is documented in ``docs/sources.md``. Credentials (``bearer_token``, ``basic_password``, ``token``)
follow the one scheme of every secret in ``bot.config``: the environment (``ONWATCH_SOURCES__METRICS__BEARER_TOKEN``)
or a mounted file (``bearer_token_file: /run/secrets/x``), never the YAML itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


def refuse_env_names(data: Any) -> Any:
    """An older config named a secret's environment variable (``bearer_token_env: PROM_TOKEN``); that second
    scheme is gone. Say what to write instead rather than pydantic's bare "extra inputs are not permitted"."""
    if isinstance(data, dict):
        for key in data:
            if isinstance(key, str) and key.endswith("_env"):
                secret = key.removesuffix("_env")
                raise ValueError(
                    f"{key} is no longer read: secrets come from the environment or a mounted file, like every "
                    f"onwatch secret. Set {secret} from the environment (ONWATCH_SOURCES__<SECTION>__"
                    f"{secret.upper()}, e.g. ONWATCH_SOURCES__METRICS__{secret.upper()}) or write "
                    f"{secret}_file: /run/secrets/<file> (docs/sources.md)")
    return data


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="deadline of one source call, retries included")
    concurrency: int = Field(default=4, ge=1, le=64, description="parallel requests to this source at most")
    max_bytes: int = Field(default=20_000_000, ge=1024, description="size cap on one response")
    retries: int = Field(default=2, ge=0, le=10, description="retries on 429, 5xx and connection errors")


class HttpAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bearer_token: SecretStr | None = Field(default=None, description="ONWATCH_SOURCES__<SECTION>__BEARER_TOKEN or bearer_token_file")
    basic_user: str | None = None
    basic_password: SecretStr | None = Field(default=None, description="from the environment or basic_password_file")
    tls_verify: bool = True
    ca_file: Path | None = None
    tenant_id: str | None = Field(default=None, description="sent as X-Scope-OrgID (Mimir, Loki, Tempo tenants)")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers (no secrets)")

    _env_names = model_validator(mode="before")(refuse_env_names)

    @model_validator(mode="after")
    def _one_auth(self) -> HttpAuth:
        if self.bearer_token and self.basic_user:
            raise ValueError("set either bearer_token or basic_user, not both")
        if self.basic_password and not self.basic_user:
            raise ValueError("basic_password is set but basic_user is not")
        return self


class MetricsSourceSettings(_Source, HttpAuth):
    kind: Literal["prometheus"] = "prometheus"
    url: str
    catalog: str = Field(
        default="kubernetes",
        description="catalog profile name (kubernetes, otel, replay), a YAML file path, or several joined by ','",
    )
    signals: dict[str, str] = Field(
        default_factory=dict, description="signal -> PromQL template, overriding or adding to the catalog"
    )
    service_label: str | None = Field(default=None, description="label that names the service (catalog default)")
    max_points: int = Field(default=600, ge=10, le=11000, description="points per series at most; sets the step")
    min_step_s: float = Field(default=15.0, gt=0, description="the step never goes below this")
    rate_window_s: int = Field(default=120, ge=1, description="rate() window; at least twice the step")
    retries: int = Field(default=3, ge=0, le=10)


class LogSourceSettings(_Source, HttpAuth):
    kind: Literal["loki"] = "loki"
    url: str
    service_label: str = "service"
    selector: str = Field(default="", description='extra stream matchers, e.g. namespace="shop"')
    error_filter: str = Field(
        default="(?i)(error|fatal|panic|exception|traceback|critical)",
        description="LogQL line regex that marks an error line",
    )
    max_lines: int = Field(default=2000, ge=1, description="cap on lines returned by one call")
    max_points: int = Field(default=300, ge=10, le=11000, description="points per error-count series at most")


class TraceSourceSettings(_Source, HttpAuth):
    kind: Literal["tempo", "jaeger"] = "tempo"
    url: str
    max_traces: int = Field(default=200, ge=1, description="traces fetched per call at most")
    slow_ms: float = Field(default=1000.0, gt=0, description="a trace at least this long counts as slow")


class ChangeSourceSettings(_Source):
    kind: Literal["github", "argocd", "webhook"]
    repo: str | None = Field(default=None, description="github: owner/name")
    url: str | None = Field(default=None, description="github: API URL (default api.github.com); argocd: server URL")
    token: SecretStr | None = Field(default=None, description="GitHub or Argo CD API token: token_file or env")
    app: str | None = Field(default=None, description="argocd: application name (all applications when unset)")
    service: str | None = Field(default=None, description="the service this repo or app deploys")
    environment: str | None = Field(default=None, description="github: only deployments to this environment")
    include: list[Literal["deployments", "releases"]] = Field(
        default_factory=lambda: ["deployments", "releases"]  # type: ignore[arg-type]
    )
    max_pages: int = Field(default=5, ge=1, le=50, description="github: pages of 100 read at most per call")
    tls_verify: bool = True
    ca_file: Path | None = None

    _env_names = model_validator(mode="before")(refuse_env_names)

    @model_validator(mode="after")
    def _needs(self) -> ChangeSourceSettings:
        if self.kind == "github" and (not self.repo or self.repo.count("/") != 1):
            raise ValueError("a github change source needs repo: owner/name")
        if self.kind == "argocd" and not self.url:
            raise ValueError("an argocd change source needs url")
        return self


class KubernetesSettings(_Source):
    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False
    namespaces: list[str] = Field(default_factory=list)
    service_label: str = "app.kubernetes.io/name"
    max_items: int = Field(default=2000, ge=1, description="objects read per list call at most")
    rollout_history: int = Field(default=10, ge=1, description="ReplicaSet revisions kept per Deployment")
    write_kubeconfig: Path | None = Field(default=None, description="separate write credential for executors")
    write_context: str | None = None
    write_in_cluster_token_file: Path | None = None


class GrafanaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    metrics_datasource_uid: str = "prometheus"
    logs_datasource_uid: str = "loki"
    traces_datasource_uid: str = "tempo"
    traces_datasource_type: Literal["tempo", "jaeger"] = "tempo"
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
