"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, LiteLLM, Azure OpenAI behind a proxy)."""

from __future__ import annotations

import openai

from integrations.base import SourceError, SourceTimeout


class OpenAICompatible:
    name = "llm"

    def __init__(self, base_url: str, api_key: str | None, model: str, timeout_s: float = 30.0):
        self.model = model
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s,
                                          max_retries=2)

    async def complete(self, system: str, user: str) -> str:
        try:
            resp = await self._client.chat.completions.create(
                model=self.model, temperature=0,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            )
        except openai.APITimeoutError:
            raise SourceTimeout("llm", "the model endpoint timed out") from None
        except openai.APIError as exc:
            raise SourceError("llm", f"the model endpoint failed: {exc}") from None
        return resp.choices[0].message.content or ""

    async def aclose(self) -> None:
        await self._client.close()
