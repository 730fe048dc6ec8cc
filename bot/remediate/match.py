"""From a ranked cause to a concrete action: match runbooks by cause kind and service, fill their parameters,
and render the action the executor will receive. Pure functions plus one optional Deployment lookup."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from bot.remediate.catalog import HttpAction, KubernetesAction, Runbook
from bot.remediate.params import (
    BUILTIN_TYPES,
    BUILTINS,
    ParamError,
    coerce,
    render,
    render_json,
)
from integrations.executors import DeploymentFinder

if TYPE_CHECKING:
    from bot.config import Settings


@dataclass(frozen=True, slots=True)
class Cause:
    """One ranked cause of an investigation, as the report (or a Finding row) holds it."""

    service: str
    kind: str
    confidence: float
    rank: int = 0
    evidence: tuple[str, ...] = ()
    finding_id: int | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)


def any_match(patterns: list[str], value: str) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


def matches(rb: Runbook, cause: Cause) -> bool:
    return any_match(rb.match.kinds, cause.kind) and any_match(rb.match.services, cause.service)


def _from_evidence(cause: Cause, evidence: Mapping[str, Mapping[str, Any]], key: str) -> Any:
    if cause.extras.get(key):
        return cause.extras[key]
    for ev_id in cause.evidence:
        item = evidence.get(ev_id) or {}
        if item.get(key):
            return item[key]
        obj = str(item.get("object") or "")
        kind, _, name = obj.partition("/")
        if name and kind.lower() == key:
            return name
    return None


async def lookup_deployment(rb: Runbook, service: str, settings: Settings,
                            finder: DeploymentFinder | None) -> tuple[str, str]:
    """The Deployment a service maps to: ``runbooks.deployments`` first, then Kubernetes labels."""
    mapped = settings.runbooks.deployments.get(service)
    if mapped:
        ns, sep, name = mapped.partition("/")
        if not sep or not ns or not name:
            raise ParamError(f"runbooks.deployments.{service} must be namespace/name, not {mapped!r}")
        return ns, name
    namespaces = [n for n in rb.scope.namespaces if "*" not in n and "?" not in n and "[" not in n]
    if finder is None or not namespaces or len(namespaces) != len(rb.scope.namespaces):
        raise ParamError(
            f"no Deployment is mapped for service {service!r}: add it to runbooks.deployments "
            "(or list plain namespaces in the runbook's scope so onwatch can find it by label)"
        )
    found = await finder.find_deployment(service, namespaces)
    if found is None:
        raise ParamError(f"no Deployment labelled as {service!r} in namespaces {namespaces}")
    return found


async def resolve_values(
    rb: Runbook,
    cause: Cause,
    incident_id: str,
    settings: Settings,
    *,
    evidence: Mapping[str, Mapping[str, Any]] | None = None,
    finder: DeploymentFinder | None = None,
) -> dict[str, Any]:
    """Fill every parameter the runbook declares or references; raise ``ParamError`` saying what is missing."""
    evidence = evidence or {}
    values: dict[str, Any] = {}
    deployment: tuple[str, str] | None = None
    for name in sorted(rb.referenced_names()):
        spec = rb.parameters.get(name)
        source = spec.source if spec is not None else BUILTINS[name]
        ptype = spec.type if spec is not None else BUILTIN_TYPES[name]
        raw: Any
        if source == "cause.service":
            raw = cause.service
        elif source == "cause.kind":
            raw = cause.kind
        elif source == "incident.id":
            raw = incident_id
        elif source in {"cause.node", "cause.pod"}:
            raw = _from_evidence(cause, evidence, source.split(".", 1)[1])
            if raw is None:
                raise ParamError(f"parameter {name}: the cause's evidence names no {source.split('.', 1)[1]}")
        elif source in {"deployment.namespace", "deployment.name"}:
            if deployment is None:
                deployment = await lookup_deployment(rb, cause.service, settings, finder)
            raw = deployment[0] if source == "deployment.namespace" else deployment[1]
        elif source == "const":
            assert spec is not None
            raw = spec.value
        else:  # service_map
            assert spec is not None
            if cause.service not in spec.map:
                raise ParamError(f"parameter {name}: no value for service {cause.service!r} in its map")
            raw = spec.map[cause.service]
        values[name] = coerce(
            name, raw, ptype,
            minimum=spec.min if spec else None, maximum=spec.max if spec else None,
            pattern=spec.pattern if spec else None,
        )
    return values


def render_text(rb: Runbook, values: Mapping[str, Any]) -> tuple[str, str]:
    return render(rb.title, values), render(rb.description, values)


def render_action(rb: Runbook, values: Mapping[str, Any], service: str) -> dict[str, Any]:
    """The concrete action handed to the executor: every template filled, scope bounds attached."""
    a = rb.action
    if isinstance(a, KubernetesAction):
        out: dict[str, Any] = {
            "executor": "kubernetes",
            "operation": a.operation,
            "service": service,
            "timeout_s": a.timeout_s,
            "require_labels": dict(rb.scope.label_selector),
        }
        for key, tpl in a.templates().items():
            out[key] = render(tpl, values)
        if a.operation == "scale":
            if a.replicas is not None:
                out["replicas"] = coerce("replicas", out.get("replicas", a.replicas), "int", minimum=0)
            else:
                out["replicas_step"] = a.replicas_step
            out["min_replicas"] = rb.scope.min_replicas
            out["max_replicas"] = rb.scope.max_replicas
        if a.grace_period_s is not None:
            out["grace_period_s"] = a.grace_period_s
        return out
    assert isinstance(a, HttpAction)
    return {
        "executor": "http",
        "operation": a.operation,
        "service": service,
        "method": a.method,
        "url": render(a.url, values, "url"),
        "body": render_json(a.body, values),
        "headers": {k: render(v, values, "header") for k, v in a.headers.items()},
        "sign_with": a.sign_with,
        "timeout_s": a.timeout_s,
    }
