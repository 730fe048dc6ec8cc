"""An executor that can only preview: what ``onwatch serve`` holds when runbooks execute in ``onwatch worker``
(``runbooks.execute_in: worker``). Proposals still get their dry-run preview and Deployment lookup, through a
credential that cannot write; running an action here is refused, so a job that reaches this process by mistake
fails loudly instead of writing with the wrong credential."""

from __future__ import annotations

from typing import Any

from integrations.executors import DeploymentFinder, Executor, ExecutorRefused, Outcome


class PreviewOnly:
    """Wraps ``inner`` for ``preview`` and ``find_deployment``; ``execute`` is always refused."""

    def __init__(self, inner: Executor):
        self.inner = inner
        self.name = inner.name

    async def preview(self, action: dict[str, Any]) -> dict[str, Any]:
        return await self.inner.preview(action)

    async def find_deployment(self, service: str, namespaces: list[str]) -> tuple[str, str] | None:
        if isinstance(self.inner, DeploymentFinder):
            return await self.inner.find_deployment(service, namespaces)
        return None

    async def execute(self, action: dict[str, Any], *, execution_id: str) -> Outcome:
        raise ExecutorRefused(f"this process only previews {self.name} actions (runbooks.execute_in: worker): "
                              "`onwatch worker` runs them")

    async def aclose(self) -> None:
        await self.inner.aclose()
