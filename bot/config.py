"""One validated settings tree, read once at start-up.

Sources, highest priority first: environment variables ``ONWATCH_<SECTION>__<KEY>``, then the YAML file
(``--config FILE`` or ``ONWATCH_CONFIG``), then defaults. Secrets come from the environment, from a
``<key>_file`` path (mounted secrets), or from the YAML only when ``allow_plaintext_secrets: true``.
A key written twice in one mapping of the YAML is refused (YAML would keep the last one silently), and
relative paths written in the YAML are taken relative to the file's folder, not the working directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from bot.errors import ConfigError
from bot.slo.model import SLO
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
        "basic_password",
        "client_secret",
        "viewer_token",
    }
)


# Mappings whose every entry is a secret (read from the environment or ``<name>_file``, never the YAML).
SECRET_MAPS = frozenset({"runbooks.secrets"})
SECRET_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


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
    public_url: str | None = Field(
        default=None, description="how people reach this server, e.g. https://onwatch.acme.internal; chat "
                                  "messages link to the incident page under it when the web view is on")

    @model_validator(mode="after")
    def _public_url_is_a_base(self) -> ServerSettings:
        """Links in chat are ``{public_url}/ui/incidents/ID``: only a plain http(s) base makes a safe one."""
        url = self.public_url
        if url is None or url == "":
            self.public_url = None
            return self
        parts = urlsplit(url)
        if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment
                or "#" in url or "?" in url or re.search(r"[\s<>\"'`|\\]", url)):
            raise ValueError(f"server.public_url: {url[:100]!r} is not an http(s) URL such as "
                             "https://onwatch.acme.internal (no query, fragment, spaces or quotes)")
        self.public_url = url.rstrip("/")
        return self


class WebhookSettings(Section):
    token: SecretStr | None = None
    hmac_secret: SecretStr | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    body_timeout_s: float = Field(default=10.0, gt=0, description="time allowed to send a request body (408)")
    dead_letter_rate_per_s: float = Field(default=20.0, gt=0, description="refusals stored per second (bucket)")
    dead_letter_burst: int = Field(default=200, ge=1, description="refusals stored at once before the rate holds")
    dead_letter_max_rows: int = Field(default=10_000, ge=10, description="oldest dead letters dropped past this")
    dead_letter_max_bytes: int = Field(default=64 * 1_048_576, ge=1_048_576, description="... or past this")


class RunbookSettings(Section):
    dir: Path = Path("runbooks")
    proposal_ttl_s: int = Field(default=3600, ge=10)
    auto_enabled: bool = Field(default=False, description="automatic execution of allowlisted runbooks (off until "
                               "an operator turns it on; `onwatch auto off` is the kill switch)")
    execute_in: Literal["server", "worker"] = Field(
        default="server",
        description="where approved runbooks run. server: `onwatch serve` runs the execution and verification "
                    "jobs with the write credentials. worker: `onwatch serve` never builds the executors nor reads "
                    "sources.kubernetes.write_* (its dry-run previews use the read credential and cannot write); "
                    "approval only queues the job, and `onwatch worker` (a process holding the write credential, "
                    "no HTTP) runs it")
    deployments: dict[str, str] = Field(
        default_factory=dict, description="service -> namespace/deployment for runbook parameters"
    )
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="signing secrets a runbook names with sign_with: ONWATCH_RUNBOOKS__SECRETS__<NAME> or "
                    "secrets.<name>_file (docs/runbooks.md)")

    @model_validator(mode="after")
    def _secret_names(self) -> RunbookSettings:
        for name in self.secrets:
            if not SECRET_NAME.fullmatch(name) or name.endswith("_file"):
                raise ValueError(f"runbooks.secrets: {name[:100]!r} is not a secret name (lowercase letters, digits "
                                 "and _, not ending in _file)")
        return self


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
    allow_anonymous: bool = Field(
        default=False, description="without app_id, accept unauthenticated activities (local testing only; the "
                                   "server must then listen on a loopback address)")
    extra_service_url_hosts: list[str] = Field(
        default_factory=list, description="serviceUrl hosts to accept besides the Bot Framework's (e.g. a local fake)")

    def allows_service_host(self, host: str) -> bool:
        """Whether onwatch may call a Bot Connector at ``host`` (``serviceUrl`` comes from the request)."""
        host = host.lower().rstrip(".")
        for pattern in (*BOT_FRAMEWORK_HOSTS, *self.extra_service_url_hosts):
            p = pattern.lower()
            if host == p or (p.startswith("*.") and host.endswith(p[1:])):
                return True
        return False


# Where Microsoft's Bot Connector lives (public cloud, GCC, GCC High, DoD, China): the only hosts an activity's
# ``serviceUrl`` may name. A request naming another host is refused, so it cannot make onwatch POST elsewhere.
BOT_FRAMEWORK_HOSTS = (
    "*.botframework.com",
    "smba.trafficmanager.net",
    "*.smba.trafficmanager.net",
    "smba.infra.gcc.teams.microsoft.com",
    "smba.infra.gov.teams.microsoft.us",
    "smba.infra.dod.teams.microsoft.us",
    "*.botframework.azure.us",
    "*.botframework.azure.cn",
)


class SilenceSettings(Section):
    """Who may mute alerts from chat, and for how long (docs/security.md)."""

    groups: list[str] = Field(
        default_factory=list,
        description="approvals.groups whose members may create and remove silences in chat; empty: a member of "
                    "any approvals group (nobody when there are none; the CLI is for operators)")
    max_duration_s: int = Field(default=86400, ge=60, le=30 * 86400, description="longest silence (chat and CLI)")


class AuditSettings(Section):
    """The audit chain's key and its checkpoints outside the database (docs/security.md)."""

    chain_key: SecretStr | None = Field(
        default=None, description="HMAC key of the chain (ONWATCH_AUDIT__CHAIN_KEY or chain_key_file); the "
                                  "database never holds it. Without it the chain is plain SHA-256")
    checkpoint_every_s: int = Field(default=3600, ge=0, description="log (and post) count + head hash; 0: never")
    slack_channel: str | None = Field(default=None, description="Slack channel that also receives the checkpoints")
    teams_channel: str | None = Field(default=None, description="Teams channel (or chat) id that also receives the "
                                                             "checkpoints; onwatch must be installed there")


class LlmSettings(Section):
    """The optional LLM investigator (docs/llm.md): off unless ``enabled`` with a ``base_url``."""

    enabled: bool = False
    base_url: str | None = Field(default=None, description="any OpenAI-compatible endpoint")
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    timeout_s: float = Field(default=30.0, gt=0, description="per model call")
    redact: bool = True
    max_steps: int = Field(default=8, ge=1, le=50, description="model calls per investigation")
    max_tokens: int = Field(default=60_000, ge=1000, description="prompt + completion tokens per investigation")
    max_seconds: float = Field(default=120.0, gt=0, description="wall time per investigation")
    context_tokens: int = Field(default=32_768, ge=2048, description="the model's context window")
    tool_result_share: float = Field(default=0.25, gt=0, le=0.9, description="of the context, per tool result")
    max_diff_file_chars: int = Field(default=6_000, ge=200, description="patch characters per file")
    max_diff_chars: int = Field(default=24_000, ge=500, description="patch characters per diff")

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


class WebSettings(Section):
    """The read-only web view under ``/ui/`` (docs/web.md). Off unless enabled with a way to tell who views."""

    enabled: bool = False
    viewer_token: SecretStr | None = Field(default=None, description="shared viewer token (env or _file)")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="addresses or CIDRs of the authenticating reverse proxy")
    user_header: str = Field(default="X-Forwarded-Email", description="the proxy's user header")
    groups_header: str = Field(default="X-Forwarded-Groups", description="the proxy's comma-separated groups")
    allow: list[str] = Field(
        default_factory=list, description='users ("ana@acme.com") or groups ("group:sre") the proxy may pass')
    session_ttl_s: int = Field(default=12 * 3600, ge=60, description="lifetime of the login form's cookie")

    @model_validator(mode="after")
    def _needs_a_way_in(self) -> WebSettings:
        for net in self.trusted_proxies:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"web.trusted_proxies: {net!r} is not an address or CIDR") from None
        if self.enabled and self.viewer_token is None and not self.trusted_proxies:
            raise ValueError("web.enabled is true but neither web.viewer_token (ONWATCH_WEB__VIEWER_TOKEN) "
                             "nor web.trusted_proxies is set")
        if self.trusted_proxies and not self.allow:
            raise ValueError("web.trusted_proxies is set but web.allow is empty: list the users or groups "
                             "(group:NAME) the proxy may let in")
        if not re.fullmatch(r"[A-Za-z0-9-]{1,100}", self.user_header):
            raise ValueError(f"web.user_header: {self.user_header!r} is not a header name")
        return self


class ReportSettings(Section):
    """Reliability reports (docs/reports.md): on-call shifts and the weekly post."""

    timezone: str = Field(default="UTC", description="IANA zone of shift boundaries and report weeks")
    shift_starts: list[str] = Field(
        default_factory=lambda: ["08:00", "20:00"], description="local HH:MM each on-call shift begins")
    weekly: bool = Field(default=True, description="post the weekly report to the incident channel")
    weekly_day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    weekly_time: str = Field(default="09:00", description="local HH:MM of the weekly post")

    @model_validator(mode="after")
    def _check(self) -> ReportSettings:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"reports.timezone: {self.timezone!r} is not an IANA time zone") from None
        if not self.shift_starts:
            raise ValueError("reports.shift_starts: give at least one HH:MM")
        for hm in [*self.shift_starts, self.weekly_time]:
            if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", hm):
                raise ValueError(f"reports: {hm!r} is not a time of day HH:MM")
        if len(set(self.shift_starts)) != len(self.shift_starts):
            raise ValueError("reports.shift_starts: each boundary once")
        return self


class MemorySettings(Section):
    """Memory (docs/memory.md): who may confirm causes and fixes, how outcomes grade a memory, recall."""

    feedback_groups: list[str] = Field(
        default_factory=list,
        description="approvals.groups whose members may confirm or correct a cause and record a fix in chat; "
                    "empty: a member of any approvals group")
    edit_window_s: int = Field(default=7 * 86400, ge=0,
                               description="feedback stays editable this long after the incident resolved")
    verify_quiet_s: int = Field(default=86400, ge=0,
                                description="a verified fix grades its memory 'verified' once the symptom has "
                                            "not come back for this long")
    recall_limit: int = Field(default=3, ge=1, le=20)
    min_score: float = Field(default=0.3, ge=0.0, le=1.0, description="recall threshold of the combined score")
    text_weight: float = Field(default=0.3, ge=0.0, le=1.0,
                               description="share of the text similarity in the combined score")


class WatchSettings(Section):
    """Watch items (docs/proactive.md, "Watch items"): early warnings from proactive checks."""

    enabled: bool = Field(default=True, description="take findings from the proactive checks and post them")
    min_interval_s: int = Field(
        default=3600, ge=0,
        description="at most one NEW watch item per service in this many seconds (counted in the database, so it "
                    "holds across restarts and replicas); 0: no limit")
    service_intervals: dict[str, NonNegativeInt] = Field(
        default_factory=dict,
        description="min_interval_s for named services (a chatty service can be given a longer one)")
    changes_before_s: int = Field(default=3600, ge=0,
                                  description="changes this long before a warning's start are shown with it")
    changes_after_s: int = Field(default=900, ge=0,
                                 description="and changes up to this long after its start (never past now)")
    source_timeout_s: float = Field(default=10.0, gt=0, le=120,
                                    description="each change source answers within this, or is named as missing")
    max_points: int = Field(default=720, ge=2, le=5000,
                            description="chart points kept with an item (a longer series is thinned evenly)")

    def interval_for(self, service: str) -> int:
        """The rate limit of ``service``: its own interval if configured, else ``min_interval_s``."""
        return self.service_intervals.get(service, self.min_interval_s)


class DetectSettings(Section):
    """The degradation scan (docs/proactive.md): the leader replays each service's recent signals through the
    streaming detector on a schedule; a degradation becomes a watch item (an early warning), never a page."""

    enabled: bool = Field(default=True, description="scan when sources.metrics is configured")
    every_s: int = Field(default=300, ge=30, description="seconds between two scans")
    lookback_s: int = Field(default=2 * 86400, ge=3600,
                            description="each scan reads this much history (at most sources.metrics.max_points "
                                        "points per series)")
    baseline_s: int = Field(default=86400, ge=600,
                            description="what 'usual' is measured over; also how long before the first finding")
    quiet_s: int = Field(default=6 * 3600, ge=0, description="after a finding, no new one on that series for this long")
    signals: list[str] = Field(
        default_factory=lambda: ["latency_p99", "error_rate", "cpu", "memory"],
        description="catalog signals to scan; one the catalog lacks is skipped. Only their bad direction counts "
                    "(up for latency, errors and saturation)")
    services: list[str] = Field(default_factory=list, description="only these services (empty: every service)")

    @model_validator(mode="after")
    def _lookback(self) -> DetectSettings:
        if self.lookback_s <= self.baseline_s:
            raise ValueError(f"detect.lookback_s ({self.lookback_s}) must exceed detect.baseline_s "
                             f"({self.baseline_s}): the scan needs a baseline before the points it judges")
        return self


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
    memory: MemorySettings = Field(default_factory=MemorySettings)
    silences: SilenceSettings = Field(default_factory=SilenceSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    slos: list[SLO] = Field(default_factory=list, description="service level objectives (docs/proactive.md)")
    detect: DetectSettings = Field(default_factory=DetectSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)

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
        unknown = [g for g in self.silences.groups if g not in self.approvals.groups]
        if unknown:
            raise ValueError(f"silences.groups names {', '.join(unknown)}, not in approvals.groups")
        names = [o.name for o in self.slos]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"slos: the name {', '.join(twice)} is used more than once")
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


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def exposure_problems(settings: Settings) -> list[str]:
    """Start-up refusals for a server that would be open to anyone (checked by ``serve`` and ``config check``)."""
    t = settings.teams
    if not t.enabled or t.app_id:
        return []
    if not t.allow_anonymous:
        return ["teams.app_id is not set, so /api/messages would accept anyone: set teams.app_id (and its "
                "password), or teams.allow_anonymous: true for local testing on a loopback address"]
    host = settings.server.host
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        return [f"teams.allow_anonymous is true but server.host is {host}: anonymous Teams mode listens only "
                "on a loopback address (127.0.0.1 or ::1)"]
    return []


def _resolve_secret_files(tree: Any, path: str, errors: list[str], allow_plain: bool) -> Any:
    """Replace ``<key>_file`` entries by the file's content; refuse plaintext secrets unless allowed."""
    if isinstance(tree, list):
        return [_resolve_secret_files(v, f"{path}[{i}]", errors, allow_plain) for i, v in enumerate(tree)]
    if not isinstance(tree, Mapping):
        return tree
    out: dict[str, Any] = {}
    secret_map = path in SECRET_MAPS
    for key, value in tree.items():
        key = str(key)
        here = f"{path}.{key}" if path else key
        if secret_map and not key.endswith("_file"):
            if value not in (None, "") and not allow_plain:
                errors.append(f"{here}: secrets are not read from the YAML file; use "
                              f"ONWATCH_{here.upper().replace('.', '__')} or {key}_file (or set "
                              "allow_plaintext_secrets: true)")
            else:
                out[key] = value
            continue
        if key.endswith("_file") and (secret_map or key[: -len("_file")] in SECRET_KEYS):
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


# Keys whose values are file or folder paths (a relative one in the YAML is relative to the YAML's folder).
PATH_KEYS = frozenset({"dir", "path", "kubeconfig", "write_kubeconfig"})


def _is_path_key(key: str) -> bool:
    return key in PATH_KEYS or key.endswith("_file")


def _absolute(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p))


def _sqlite_url_against(url: str, base: Path) -> str:
    """``sqlite:///rel.db`` → ``sqlite:////<base>/rel.db``; absolute, in-memory and other URLs unchanged."""
    scheme, sep, rest = url.partition(":///")
    if not sep or not scheme.startswith("sqlite") or not rest or rest.startswith(("/", ":memory:", "file:")):
        return url
    path, q, query = rest.partition("?")
    return f"{scheme}:///{_absolute(path, base)}{q}{query}"


def _resolve_paths(tree: Any, base: Path, key: str = "") -> Any:
    """Make the YAML's relative paths absolute against ``base`` (the YAML file's folder)."""
    if isinstance(tree, list):
        return [_resolve_paths(v, base, key) for v in tree]
    if isinstance(tree, Mapping):
        return {k: _resolve_paths(v, base, str(k)) for k, v in tree.items()}
    if isinstance(tree, str) and tree:
        if _is_path_key(key):
            return _absolute(tree, base)
        if key == "catalog" and (tree.endswith((".yaml", ".yml")) or "/" in tree):
            return ",".join(_absolute(part.strip(), base) if part.strip().endswith((".yaml", ".yml")) else part
                            for part in tree.split(","))
        if key == "url":
            return _sqlite_url_against(tree, base)
    return tree


def _duplicate_keys(node: yaml.Node, where: str = "") -> list[str]:
    """Every key written twice in one mapping, as ``path: key 'x' is written twice (lines a and b)``."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            here = f"{where}.{key}" if where else key
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                problems.append(f"{here}: the key {key!r} is written twice (lines {seen[key]} and {line}); "
                                "keep one")
            else:
                seen[key] = line
            problems.extend(_duplicate_keys(value_node, here))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems.extend(_duplicate_keys(item, f"{where}[{i}]"))
    return problems


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
            content = p.read_text() if p.exists() else ""
            node = yaml.compose(content, Loader=yaml.SafeLoader)
            duplicates = _duplicate_keys(node) if node is not None else []
            if duplicates:
                raise ConfigError([f"{p}: {d}" for d in duplicates])
            raw = yaml.safe_load(content) if p.exists() else None
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
        raw = _resolve_paths(raw, p.resolve().parent)
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
