"""One validated settings tree, read once at start-up.

Sources, highest priority first: environment variables ``ONWATCH_<SECTION>__<KEY>``, then the YAML file
(``--config FILE`` or ``ONWATCH_CONFIG``), then defaults. Secrets come from the environment, from a
``<key>_file`` path (mounted secrets), or from the YAML only when ``allow_plaintext_secrets: true``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from bot.errors import ConfigError
from integrations.settings import SourcesSettings

# Keys whose values are credentials. In YAML they are refused unless the operator insists.
SECRET_KEYS = frozenset(
    {
        "token",
        "hmac_secret",
        "bot_token",
        "signing_secret",
        "app_token",
        "app_password",
        "api_key",
        "password",
        "bearer_token",
        "client_secret",
    }
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(Section):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. sqlite:///path (embedded default) or postgresql://user@host/db.",
    )
    echo: bool = False
    pool_size: int = Field(default=10, ge=1, le=200)


class ServerSettings(Section):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    json_logs: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    workers: int = Field(default=2, ge=0, le=64, description="concurrent durable-job workers per replica")
    lease_s: float = Field(default=60.0, ge=1)


class WebhookSettings(Section):
    token: SecretStr | None = None
    hmac_secret: SecretStr | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024)


class RunbookSettings(Section):
    dir: Path = Path("runbooks")
    proposal_ttl_s: int = Field(default=3600, ge=10)
    auto_enabled: bool = Field(default=True, description="global kill switch for automatic execution")
    deployments: dict[str, str] = Field(
        default_factory=dict, description="service -> namespace/deployment for runbook parameters"
    )


class ApprovalSettings(Section):
    groups: dict[str, list[str]] = Field(
        default_factory=dict, description='group -> ["slack:U123", "slack:S456", "teams:<aad-object-id>"]'
    )

    @model_validator(mode="after")
    def _check_members(self) -> ApprovalSettings:
        for name, members in self.groups.items():
            for m in members:
                platform, _, ident = m.partition(":")
                if platform not in {"slack", "teams"} or not ident:
                    raise ValueError(f"approvals.groups.{name}: member {m!r} must look like slack:U… or teams:<id>")
        return self


class SlackSettings(Section):
    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    app_token: SecretStr | None = None
    api_url: str = "https://slack.com/api/"
    incident_channel: str | None = None
    alert_channels: list[str] = Field(default_factory=list)
    usergroup_cache_s: int = Field(default=300, ge=0)

    @property
    def enabled(self) -> bool:
        return self.bot_token is not None


class TeamsSettings(Section):
    app_id: str | None = None
    app_password: SecretStr | None = None
    tenant_id: str | None = None
    app_type: Literal["MultiTenant", "SingleTenant", "UserAssignedMSI"] = "MultiTenant"
    channel: str | None = Field(default=None, description="conversation id of the announcement channel")
    certificate_thumbprint: str | None = Field(default=None, description="certificate auth instead of a password")
    certificate_key_file: Path | None = Field(default=None, description="PEM private key of that certificate")
    enabled: bool = False


class LlmSettings(Section):
    enabled: bool = False
    base_url: str | None = Field(default=None, description="any OpenAI-compatible endpoint")
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    timeout_s: float = Field(default=30.0, gt=0)
    redact: bool = True

    @model_validator(mode="after")
    def _needs_endpoint(self) -> LlmSettings:
        if self.enabled and not self.base_url:
            raise ValueError("llm.enabled is true but llm.base_url is not set")
        return self


class TriageSettings(Section):
    group_window_s: int = Field(default=900, ge=1)
    cooloff_s: int = Field(default=600, ge=0)
    flap_threshold: int = Field(default=4, ge=2)
    flap_window_s: int = Field(default=1800, ge=1)
    resolve_with_alerts: bool = True
    user_facing_services: list[str] = Field(default_factory=list)
    noisy_rules: list[dict[str, str]] = Field(
        default_factory=list, description="label matchers; an alert matching all of one rule is dropped"
    )
    maintenance: list[dict[str, Any]] = Field(
        default_factory=list, description="[{matchers: {...}, starts: iso, ends: iso, comment: str}]"
    )
    shift_hours: int = Field(default=12, ge=1, le=24)
    topology: dict[str, list[str]] = Field(
        default_factory=dict, description="caller -> callees, used for grouping and investigation"
    )
    owners: dict[str, str] = Field(default_factory=dict, description="service -> owning team")
    journal: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="acknowledge webhooks once journaled and triage them in a grouper process (auto: on for a "
                    "SQLite file, off for PostgreSQL and in-memory SQLite, which acknowledge after the commit)",
    )
    journal_dir: str | None = Field(default=None, description="default: <SQLite file>.journal beside the database")


class Settings(BaseSettings):
    """The whole configuration of one onwatch process."""

    model_config = SettingsConfigDict(
        env_prefix="ONWATCH_", env_nested_delimiter="__", extra="forbid", nested_model_default_partial_update=True
    )

    allow_plaintext_secrets: bool = False
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    runbooks: RunbookSettings = Field(default_factory=RunbookSettings)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    teams: TeamsSettings = Field(default_factory=TeamsSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    triage: TriageSettings = Field(default_factory=TriageSettings)

    @model_validator(mode="after")
    def _contradictions(self) -> Settings:
        if self.slack.app_token is not None and self.slack.bot_token is None:
            raise ValueError("slack.app_token (Socket Mode) is set but slack.bot_token is not")
        if self.slack.bot_token is not None and self.slack.app_token is None and self.slack.signing_secret is None:
            raise ValueError("slack.bot_token is set: HTTP mode needs slack.signing_secret (or set slack.app_token)")
        t = self.teams
        if t.app_id and t.app_password is None and t.app_type != "UserAssignedMSI" and not t.certificate_thumbprint:
            raise ValueError("teams.app_id is set but neither teams.app_password nor teams.certificate_thumbprint is")
        if bool(t.certificate_thumbprint) != bool(t.certificate_key_file):
            raise ValueError("teams.certificate_thumbprint and teams.certificate_key_file go together")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _resolve_secret_files(tree: Any, path: str, errors: list[str], allow_plain: bool) -> Any:
    """Replace ``<key>_file`` entries by the file's content; refuse plaintext secrets unless allowed."""
    if isinstance(tree, list):
        return [_resolve_secret_files(v, f"{path}[{i}]", errors, allow_plain) for i, v in enumerate(tree)]
    if not isinstance(tree, Mapping):
        return tree
    out: dict[str, Any] = {}
    for key, value in tree.items():
        key = str(key)
        here = f"{path}.{key}" if path else key
        if key.endswith("_file") and key[: -len("_file")] in SECRET_KEYS:
            try:
                out[key[: -len("_file")]] = Path(str(value)).read_text().strip()
            except OSError as exc:
                errors.append(f"{here}: cannot read secret file: {exc.strerror}")
            continue
        if key in SECRET_KEYS and value not in (None, "") and not allow_plain and not isinstance(value, Mapping):
            errors.append(
                f"{here}: secrets are not read from the YAML file; use ONWATCH_{here.upper().replace('.', '__')} "
                f"or {key}_file (or set allow_plaintext_secrets: true)"
            )
            continue
        out[key] = _resolve_secret_files(value, here, errors, allow_plain)
    return out


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _format_validation(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"{loc}: {err['msg']}")
    return lines


def load_settings(path: str | Path | None = None) -> Settings:
    """Read and validate the settings. Raises ``ConfigError`` listing every problem with its path."""
    environ = os.environ
    path = path or environ.get("ONWATCH_CONFIG")
    data: dict[str, Any] = {}
    errors: list[str] = []
    if path:
        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text()) if p.exists() else None
        except yaml.YAMLError as exc:
            raise ConfigError([f"{p}: not valid YAML: {exc}"]) from None
        except OSError as exc:
            raise ConfigError([f"{p}: cannot read: {exc.strerror}"]) from None
        if not p.exists():
            raise ConfigError([f"{p}: no such file"])
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError([f"{p}: the top level must be a mapping of sections"])
        data = _resolve_secret_files(raw, "", errors, bool(raw.get("allow_plaintext_secrets")))
    # The environment may hold secrets (that is where they belong) and ``<key>_FILE`` paths to them.
    env_data = EnvSettingsSource(Settings, env_prefix="ONWATCH_", env_nested_delimiter="__")()
    env_data = _resolve_secret_files(env_data, "", errors, allow_plain=True)
    if errors:
        raise ConfigError(errors)
    try:
        return Settings(**_deep_merge(data, env_data))
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc)) from None
