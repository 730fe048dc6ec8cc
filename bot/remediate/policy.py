"""Who may approve what, and what an action may touch. Checked when a proposal is offered, at every click,
and again right before execution (an approved action outside its scope is still refused)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bot.remediate.catalog import Runbook
from bot.remediate.match import any_match

if TYPE_CHECKING:
    from bot.config import Settings


def write_cluster(settings: Settings) -> str:
    """The name scope.clusters is matched against: the write context, or ``in-cluster``."""
    k = settings.sources.kubernetes
    if k is None:
        return "default"
    if k.write_context:
        return k.write_context
    if k.write_in_cluster_token_file is not None:
        return "in-cluster"
    return "default"


def check_scope(rb: Runbook, action: Mapping[str, Any], settings: Settings) -> list[str]:
    """Every reason the rendered ``action`` falls outside ``rb.scope`` (empty when in scope)."""
    s = rb.scope
    problems: list[str] = []
    service = str(action.get("service", ""))
    if not any_match(s.services, service):
        problems.append(f"service {service!r} is not in scope (allowed: {', '.join(s.services)})")
    if action.get("executor") == "kubernetes":
        cluster = write_cluster(settings)
        if not any_match(s.clusters, cluster):
            problems.append(f"cluster {cluster!r} is not in scope (allowed: {', '.join(s.clusters)})")
        ns = action.get("namespace")
        if ns is not None and not any_match(s.namespaces, str(ns)):
            problems.append(f"namespace {ns!r} is not in scope (allowed: {', '.join(s.namespaces)})")
        node = action.get("node")
        if node is not None and not any_match(s.nodes, str(node)):
            problems.append(f"node {node!r} is not in scope (allowed: {', '.join(s.nodes)})")
        replicas = action.get("replicas")
        if isinstance(replicas, int):
            if s.min_replicas is not None and replicas < s.min_replicas:
                problems.append(f"{replicas} replicas is below the minimum {s.min_replicas}")
            if s.max_replicas is not None and replicas > s.max_replicas:
                problems.append(f"{replicas} replicas is above the maximum {s.max_replicas}")
        if action.get("require_labels", {}) != dict(s.label_selector):
            problems.append("the action's label requirements differ from the runbook's scope")
    elif action.get("executor") == "http":
        host = urlsplit(str(action.get("url", ""))).hostname or ""
        if not any_match(s.hosts, host):
            problems.append(f"host {host!r} is not in scope (allowed: {', '.join(s.hosts)})")
    else:
        problems.append(f"executor {action.get('executor')!r} is unknown")
    return problems


def approver_principals(rb: Runbook, settings: Settings) -> tuple[str, ...]:
    """Every principal (user or user group) listed in one of the runbook's approval groups."""
    out: set[str] = set()
    for g in rb.approval.groups:
        out.update(settings.approvals.groups.get(g, []))
    return tuple(sorted(out))


def is_authorised(rb: Runbook, settings: Settings, principals: frozenset[str]) -> bool:
    return bool(principals & set(approver_principals(rb, settings)))


def check_preconditions(
    rb: Runbook,
    *,
    confidence: float,
    facts: Mapping[str, Any],
    recent_executions: Mapping[int, int],
) -> list[str]:
    """Reasons the runbook's preconditions fail; ``recent_executions`` maps minutes -> count in that window."""
    problems: list[str] = []
    for p in rb.preconditions:
        if p.check == "min_confidence" and p.value is not None and confidence < p.value:
            problems.append(f"the cause's confidence {confidence:.2f} is below {p.value:.2f}")
        elif p.check == "previous_revision_exists" and facts.get("target_revision") in (None, ""):
            problems.append("there is no previous revision to roll back to")
        elif p.check == "target_exists" and not facts.get("exists", False):
            problems.append("the target does not exist")
        elif p.check == "below_max_replicas":
            cur, top = facts.get("replicas"), rb.scope.max_replicas
            if top is not None and isinstance(cur, int) and cur >= top:
                problems.append(f"already at the maximum of {top} replicas")
        elif p.check == "no_recent_execution" and p.minutes is not None and recent_executions.get(p.minutes, 0) > 0:
            problems.append(f"this runbook already ran for this service in the last {p.minutes} minutes")
    return problems
