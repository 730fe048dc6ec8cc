"""OpenAI-compatible chat completions with tools (OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM).

The only module that imports ``openai``. It sends the messages and the tool definitions it is given and
returns one ``ModelTurn``: the text, the native ``tool_calls`` and the token counts. Nothing here decides
what a turn means; ``bot.investigate.llm.loop`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import openai

from integrations.base import SourceError, SourceTimeout, SourceUnavailable


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asked for. ``arguments`` is the raw JSON text the model wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ModelTurn:
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    finish_reason: str = ""


class OpenAICompatible:
    name = "llm"

    def __init__(self, base_url: str, api_key: str | None, model: str, timeout_s: float = 30.0,
                 max_retries: int = 1):
        self.model = model
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s,
                                          max_retries=max_retries)

    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                   max_tokens: int | None = None) -> ModelTurn:
        kwargs: dict[str, Any] = {"model": self.model, "temperature": 0, "messages": messages}
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = "auto"
        if max_tokens:
            kwargs["max_tokens"] = max_tokens
        try:
            resp = await self._client.chat.completions.create(**kwargs)
        except openai.APITimeoutError:
            raise SourceTimeout("llm", "the model endpoint timed out") from None
        except openai.APIConnectionError as exc:
            raise SourceUnavailable("llm", f"cannot reach the model endpoint: {exc}") from None
        except openai.APIError as exc:
            raise SourceError("llm", f"the model endpoint failed: {exc}") from None
        if not resp.choices:
            raise SourceError("llm", "the model endpoint answered no choices")
        choice = resp.choices[0]
        msg = choice.message
        calls = [ToolCall(c.id or f"call_{i}", c.function.name, c.function.arguments or "{}")
                 for i, c in enumerate(msg.tool_calls or []) if getattr(c, "function", None) is not None]
        usage = resp.usage
        return ModelTurn(
            content=msg.content or "", tool_calls=calls,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            model=resp.model or self.model, finish_reason=choice.finish_reason or "",
        )

    async def complete(self, system: str, user: str) -> str:
        turn = await self.chat([{"role": "system", "content": system}, {"role": "user", "content": user}])
        return turn.content

    async def aclose(self) -> None:
        await self._client.close()
