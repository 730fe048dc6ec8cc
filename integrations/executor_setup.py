"""The executors onwatch ships, assembled into a registry (kept apart from the interface they implement, so
``integrations.executors`` imports none of its implementations)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from integrations.executors import ExecutorRegistry
from integrations.http_executor import HttpExecutor
from integrations.kubernetes_write import KubernetesWriteExecutor
from integrations.settings import KubernetesSettings


def build_registry(kubernetes: KubernetesSettings | None,
                   signing_secrets: Mapping[str, SecretStr] | None = None) -> ExecutorRegistry:
    """The executors a process can use. Kubernetes needs its own write credential; without it every
    Kubernetes action is refused with a message saying what to configure. ``signing_secrets`` are the
    settings' ``runbooks.secrets``, which HTTP actions name with ``sign_with``."""
    reg = ExecutorRegistry()
    reg.add(HttpExecutor(secrets=signing_secrets))
    reg.add(KubernetesWriteExecutor(kubernetes))
    return reg
