"""Reading what a model wrote: tool calls hidden in the message text, and the final JSON answer.

Local models served without a tool-call parser (Ollama templates, llama.cpp, vLLM without
``--tool-call-parser``) often write their calls as JSON in the message content instead of ``tool_calls``:
``{"name": "diff", "arguments": {...}}``, a list of those, ``{"tool_calls": [...]}`` or
``{"function": {"name", "arguments"}}``, sometimes inside a Markdown fence or ``<tool_call>`` tags.
Those are understood and go through exactly the same checks as native calls.
"""

from __future__ import annotations

import json
import re
from typing import Any

from integrations.llm import ToolCall

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_TAGS = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def _json_candidates(text: str) -> list[Any]:
    """JSON values found in ``text``: the whole text, fenced blocks, ``<tool_call>`` blocks, or the outermost
    ``{...}`` span."""
    out: list[Any] = []
    stripped = text.strip()
    chunks = [stripped, *_FENCE.findall(text), *_TAGS.findall(text)]
    first, last = stripped.find("{"), stripped.rfind("}")
    if 0 <= first < last:
        chunks.append(stripped[first: last + 1])
    for chunk in chunks:
        try:
            out.append(json.loads(chunk))
        except (json.JSONDecodeError, ValueError):
            continue
    return out


def _as_call(obj: Any, i: int) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    fn: dict[str, Any] = obj["function"] if isinstance(obj.get("function"), dict) else obj
    name = fn.get("name")
    args = fn.get("arguments", fn.get("parameters", {}))
    if not isinstance(name, str) or not name or not isinstance(args, dict | str):
        return None
    return ToolCall(str(obj.get("id") or f"content_call_{i}"), name,
                    args if isinstance(args, str) else json.dumps(args, sort_keys=True))


def content_tool_calls(text: str) -> list[ToolCall]:
    """Tool calls written as JSON in the message text (none when the text is an answer or prose)."""
    for value in _json_candidates(text):
        items = value.get("tool_calls") if isinstance(value, dict) and "tool_calls" in value else value
        items = items if isinstance(items, list) else [items]
        calls = [c for i, obj in enumerate(items) if (c := _as_call(obj, i)) is not None]
        if calls and len(calls) == len(items):
            return calls
    return []


def answer_object(text: str) -> dict[str, Any] | None:
    """The final answer: the first JSON object in the text that has a ``mechanism`` or a ``service``."""
    for value in _json_candidates(text):
        if isinstance(value, dict) and ("mechanism" in value or "service" in value):
            return value
    return None


def arguments(raw: str) -> dict[str, Any]:
    """A tool call's arguments; ``ValueError`` with the reason when they are not a JSON object."""
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"arguments are not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ValueError("arguments must be a JSON object")
    return value
