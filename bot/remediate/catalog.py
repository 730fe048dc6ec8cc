"""The runbook catalog: ``runbooks/*.yaml`` validated into typed ``Runbook`` models.

Only runbooks from this catalog ever execute (invariant 5). ``load_catalog`` is called at start-up and by
``onwatch config check``; it raises one ``ConfigError`` listing every problem with its file and field path.
The format is documented in ``docs/runbooks.md``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.errors import ConfigError
from bot.remediate.params import BUILTINS, NAME_RE, ParamType, TemplateError, placeholders, placeholders_in

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

# Failure classes an automatic run may be allowed for (the engine emits these from events and logs).
FAILURE_CLASSES = frozenset({"oom_kill", "pod_evicted", "crashloop", "connection_pool_exhausted", "stuck_pod"})
CAUSE_KINDS = frozenset({
    "deploy", "config_change", "cpu_saturation", "memory_saturation", "disk_saturation", "network_saturation",
    "dependency_failure", "traffic_surge", "node_problem", "error_pattern",
}) | FAILURE_CLASSES

ParamSource = Literal[
    "cause.service", "cause.kind", "cause.node", "cause.pod", "incident.id",
    "deployment.namespace", "deployment.name", "const", "service_map",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Match(_Model):
    kinds: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    services: list[str] = Field(default_factory=lambda: ["*"], min_length=1)


class ParamSpec(_Model):
    type: ParamType = "string"
    source: ParamSource = Field(alias="from")
    value: str | int | bool | None = None
    map: dict[str, str | int | bool] = Field(default_factory=dict)
    min: int | None = None
    max: int | None = None
    pattern: str | None = None
    description: str = ""

    @model_validator(mode="after")
    def _complete(self) -> ParamSpec:
        if self.source == "const" and self.value is None:
            raise ValueError("from: const needs a value")
        if self.source == "service_map" and not self.map:
            raise ValueError("from: service_map needs a map of service -> value")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return self


class KubernetesAction(_Model):
    executor: Literal["kubernetes"]
    operation: Literal["rollback", "restart", "scale", "cordon_drain", "delete_pod"]
    namespace: str = "{namespace}"
    deployment: str = "{deployment}"
    pod: str = "{pod}"
    node: str = "{node}"
    replicas: str | int | None = Field(default=None, description="scale: absolute target (may be a placeholder)")
    replicas_step: int | None = Field(default=None, description="scale: add this many to the current count")
    grace_period_s: int | None = Field(default=None, ge=0, le=3600)
    timeout_s: float = Field(default=60.0, gt=0, le=900)

    @model_validator(mode="after")
    def _scale(self) -> KubernetesAction:
        if self.operation == "scale" and (self.replicas is None) == (self.replicas_step is None):
            raise ValueError("a scale action needs exactly one of replicas or replicas_step")
        return self

    def templates(self) -> dict[str, str]:
        """The templated fields this operation uses."""
        op = self.operation
        fields: dict[str, str] = {}
        if op in {"rollback", "restart", "scale"}:
            fields |= {"namespace": self.namespace, "deployment": self.deployment}
        if op == "delete_pod":
            fields |= {"namespace": self.namespace, "pod": self.pod}
        if op == "cordon_drain":
            fields |= {"node": self.node}
        if op == "scale" and isinstance(self.replicas, str):
            fields["replicas"] = self.replicas
        return fields


class HttpAction(_Model):
    executor: Literal["http"]
    operation: Literal["webhook", "feature_flag"] = "webhook"
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    sign_with: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]{0,62}$",
        description="name of the signing secret in runbooks.secrets (the settings' env or _file scheme)")
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    @model_validator(mode="before")
    @classmethod
    def _no_env_names(cls, data: Any) -> Any:
        """The secret's environment variable was once named here; say what replaced it, in one line."""
        if isinstance(data, dict) and "hmac_secret_env" in data:
            raise ValueError(
                "hmac_secret_env is no longer read: write sign_with: <name> and set the secret in the settings "
                "as ONWATCH_RUNBOOKS__SECRETS__<NAME> or runbooks.secrets.<name>_file (docs/runbooks.md)")
        return data

    @model_validator(mode="after")
    def _url(self) -> HttpAction:
        scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
        if scheme not in {"http", "https"}:
            raise ValueError("url must start with http:// or https://")
        host = self.url.split("://", 1)[1].split("/", 1)[0]
        if "{" in host:
            raise ValueError("the URL's host may not hold a placeholder (values only fill its path, query and body)")
        for k in self.headers:
            if k.lower() in {"x-onwatch-signature", "content-type", "host", "content-length"}:
                raise ValueError(f"header {k} is set by onwatch")
        return self


Action = Annotated[KubernetesAction | HttpAction, Field(discriminator="executor")]


class Scope(_Model):
    clusters: list[str] = Field(default_factory=lambda: ["*"], description="write contexts (cluster names)")
    namespaces: list[str] = Field(default_factory=lambda: ["*"])
    services: list[str] = Field(default_factory=lambda: ["*"])
    nodes: list[str] = Field(default_factory=lambda: ["*"], description="node name patterns (cordon/drain)")
    hosts: list[str] = Field(default_factory=lambda: ["*"], description="URL hosts an http action may call")
    label_selector: dict[str, str] = Field(default_factory=dict, description="labels the target must carry")
    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> Scope:
        if self.min_replicas is not None and self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas is above max_replicas")
        return self


class ApprovalPolicy(_Model):
    groups: list[str] = Field(min_length=1)
    min_approvers: int | None = Field(default=None, ge=1, le=5)


class AutoPolicy(_Model):
    classes: list[str] = Field(min_length=1)
    min_confidence: float = Field(default=0.8, ge=0.0, le=1.0)
    max_per_service_per_hour: int = Field(default=1, ge=1, le=60)

    @model_validator(mode="after")
    def _classes(self) -> AutoPolicy:
        bad = [c for c in self.classes if c not in FAILURE_CLASSES]
        if bad:
            raise ValueError(
                f"auto.classes {bad} are not failure classes; allowed: {sorted(FAILURE_CLASSES)}"
            )
        return self


class Precondition(_Model):
    check: Literal[
        "min_confidence", "previous_revision_exists", "target_exists", "below_max_replicas", "no_recent_execution",
    ]
    value: float | None = Field(default=None, description="min_confidence: 0..1")
    minutes: int | None = Field(default=None, ge=1, description="no_recent_execution: look-back")

    @model_validator(mode="after")
    def _args(self) -> Precondition:
        if self.check == "min_confidence" and (self.value is None or not 0 <= self.value <= 1):
            raise ValueError("min_confidence needs a value between 0 and 1")
        if self.check == "no_recent_execution" and self.minutes is None:
            raise ValueError("no_recent_execution needs minutes")
        return self


class Verify(_Model):
    signal: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_:]*$")
    below: float | None = None
    above: float | None = None
    deadline_s: float = Field(default=600.0, gt=0, le=86400)
    poll_s: float = Field(default=30.0, gt=0, le=3600)
    consecutive: int = Field(default=2, ge=1, le=100)
    lookback_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _one(self) -> Verify:
        if (self.below is None) == (self.above is None):
            raise ValueError("verify needs exactly one of below or above")
        return self

    def holds(self, value: float) -> bool:
        return value < self.below if self.below is not None else value > (self.above or 0.0)

    def describe(self) -> str:
        return f"{self.signal} < {self.below}" if self.below is not None else f"{self.signal} > {self.above}"


class Runbook(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$")
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=4000)
    match: Match = Field(default_factory=Match)
    action: Action
    parameters: dict[str, ParamSpec] = Field(default_factory=dict)
    scope: Scope = Field(default_factory=Scope)
    risk: Literal["low", "medium", "high"]
    approval: ApprovalPolicy
    auto: AutoPolicy | None = None
    preconditions: list[Precondition] = Field(default_factory=list)
    verify: Verify | None = None

    @model_validator(mode="after")
    def _policy(self) -> Runbook:
        if self.risk == "high" and self.auto is not None:
            raise ValueError("a high-risk runbook may not run automatically (remove auto)")
        if self.risk == "high" and self.approval.min_approvers is not None and self.approval.min_approvers < 2:
            raise ValueError("a high-risk runbook needs two different approvers (approval.min_approvers >= 2)")
        for name in self.parameters:
            if not NAME_RE.fullmatch(name):
                raise ValueError(f"parameter name {name!r} must be lowercase letters, digits and _")
        return self

    @property
    def approvals_needed(self) -> int:
        base = self.approval.min_approvers or 1
        return max(base, 2) if self.risk == "high" else base

    def template_fields(self) -> dict[str, Any]:
        """Every templated field with its path, for validation and rendering."""
        out: dict[str, Any] = {"title": self.title, "description": self.description}
        a = self.action
        if isinstance(a, KubernetesAction):
            out |= {f"action.{k}": v for k, v in a.templates().items()}
        else:
            out |= {"action.url": a.url, "action.body": a.body}
            out |= {f"action.headers.{k}": v for k, v in a.headers.items()}
        return out

    def allowed_names(self) -> set[str]:
        return set(BUILTINS) | set(self.parameters)

    def referenced_names(self) -> set[str]:
        names: set[str] = set(self.parameters)
        for value in self.template_fields().values():
            names |= placeholders_in(value)
        return names


@dataclass
class Catalog:
    runbooks: dict[str, Runbook] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def get(self, runbook_id: str) -> Runbook | None:
        return self.runbooks.get(runbook_id)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.runbooks.values())

    def __len__(self) -> int:
        return len(self.runbooks)


def _check_templates(rb: Runbook, where: str) -> list[str]:
    problems: list[str] = []
    allowed = rb.allowed_names()
    for path, value in rb.template_fields().items():
        try:
            names = placeholders_in(value) if not isinstance(value, str) else placeholders(value)
        except TemplateError as exc:
            problems.append(f"{where}: {path}: {exc}")
            continue
        unknown = sorted(names - allowed)
        if unknown:
            problems.append(
                f"{where}: {path}: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
                f"allowed: built-ins {sorted(BUILTINS)} and the runbook's parameters"
            )
    return problems


def parse_runbook(data: Any, where: str) -> tuple[Runbook | None, list[str]]:
    """Validate one runbook document; return it (or None) and the problems found, each prefixed by ``where``."""
    if not isinstance(data, dict):
        return None, [f"{where}: a runbook must be a mapping (id, title, action, risk, approval, ...)"]
    try:
        rb = Runbook.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after")) or "(root)"
            lines.append(f"{where}: {loc}: {err['msg']}")
        return None, lines
    problems = _check_templates(rb, where)
    return (rb if not problems else None), problems


def load_catalog(directory: str | Path, settings: Settings | None = None, *, missing_ok: bool = False) -> Catalog:
    """Load and validate every ``*.yaml``/``*.yml`` in ``directory``.

    Raises ``ConfigError`` with every problem. Approval groups unknown to ``settings.approvals.groups`` are
    warnings (such a runbook can be offered but nobody can approve it), logged and kept in ``Catalog.warnings``.
    """
    d = Path(directory)
    if not d.is_dir():
        if missing_ok:
            log.warning("runbooks.dir %s does not exist: no runbooks are offered", d)
            return Catalog(warnings=[f"runbooks.dir: {d} does not exist"])
        raise ConfigError([f"runbooks.dir: {d} does not exist or is not a directory"])
    cat = Catalog()
    errors: list[str] = []
    for path in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
        where = str(path)
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            errors.append(f"{where}: not valid YAML: {exc}")
            continue
        except OSError as exc:
            errors.append(f"{where}: cannot read: {exc.strerror}")
            continue
        rb, problems = parse_runbook(data, where)
        errors.extend(problems)
        if rb is None:
            continue
        if rb.id in cat.runbooks:
            errors.append(f"{where}: id: {rb.id!r} is already defined in {cat.files[rb.id]}")
            continue
        cat.runbooks[rb.id] = rb
        cat.files[rb.id] = path
    if errors:
        raise ConfigError(errors)
    if settings is not None:
        unknown: dict[str, list[str]] = {}
        for rb in cat:
            for g in rb.approval.groups:
                if g not in settings.approvals.groups:
                    unknown.setdefault(g, []).append(rb.id)
        for g, ids in sorted(unknown.items()):
            cat.warnings.append(f"approval group {g!r} (used by {', '.join(ids)}) is not defined in "
                                "approvals.groups: nobody can approve those runbooks")
        for rb in cat:
            name = rb.action.sign_with if isinstance(rb.action, HttpAction) else None
            if name is not None and name not in settings.runbooks.secrets:
                cat.warnings.append(f"runbook {rb.id} signs with the secret {name!r}, which is not set: it is not "
                                    f"offered until ONWATCH_RUNBOOKS__SECRETS__{name.upper()} or "
                                    f"runbooks.secrets.{name}_file is")
    for w in cat.warnings:
        log.warning("%s", w)
    return cat
