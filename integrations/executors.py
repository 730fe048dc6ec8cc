"""The executor interface and registry: executor name -> implementation.

Executors are the only code in onwatch that changes anything (invariant 1). They receive an action already
rendered from a catalog runbook and checked against its scope; they re-check what they can see (bounds,
labels) and report what they changed. Errors are typed so the caller can tell a definite failure (nothing
changed) from an uncertain one (a write was sent and no answer came back): the latter becomes ``unknown``.
The implementations import this module, never the reverse; ``integrations.executor_setup`` assembles them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class ExecutorError(Exception):
    """The action failed and the executor knows the target was not changed (or says exactly what was)."""


class ExecutorRefused(ExecutorError):
    """The target refuses the action as planned: out of bounds, no previous revision, not configured."""


class ExecutorUnknown(ExecutorError):
    """A write was sent but its outcome is not known (timeout, connection lost): check by hand."""


@dataclass(slots=True)
class Outcome:
    ok: bool
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


@runtime_checkable
class Executor(Protocol):
    name: str

    async def preview(self, action: dict[str, Any]) -> dict[str, Any]:
        """What would change (read-only, plus a server-side dry run where the target supports one)."""
        ...

    async def execute(self, action: dict[str, Any], *, execution_id: str) -> Outcome: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class DeploymentFinder(Protocol):
    async def find_deployment(self, service: str, namespaces: list[str]) -> tuple[str, str] | None:
        """(namespace, name) of the one Deployment labelled as ``service`` in ``namespaces``, or None."""
        ...


class ExecutorRegistry:
    def __init__(self, executors: dict[str, Executor] | None = None):
        self._executors: dict[str, Executor] = dict(executors or {})

    def add(self, executor: Executor) -> None:
        self._executors[executor.name] = executor

    def get(self, name: str) -> Executor:
        try:
            return self._executors[name]
        except KeyError:
            raise ExecutorRefused(f"no executor named {name!r} is configured") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._executors))

    def wrapped(self, wrap: Callable[[Executor], Executor]) -> ExecutorRegistry:
        """The same executors, each wrapped (e.g. to allow previews only)."""
        return ExecutorRegistry({name: wrap(ex) for name, ex in self._executors.items()})

    async def aclose(self) -> None:
        for ex in self._executors.values():
            await ex.aclose()
