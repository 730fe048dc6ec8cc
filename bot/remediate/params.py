"""Runbook templates and parameter values, formatted safely.

A template is text with ``{name}`` placeholders (``{{`` and ``}}`` for literal braces). Nothing else is
interpreted: no attribute access, indexing, format specs or expressions, so a value can never run code or
reach into an object. Placeholder names come from a strict allowlist (the built-in names below plus the
runbook's declared ``parameters``), checked when the catalog loads. Every value is validated against its
type before it is used, and rendered for its context (percent-encoded in URLs, refused in headers when it
holds a line break). Invariant 5: values read from telemetry only ever fill a catalog runbook's parameters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from bot.errors import OnwatchError

NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,39}")
# Kubernetes object names (DNS-1123 subdomain) and a conservative service-name shape.
K8S_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
SERVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}")
INCIDENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")

# Where a built-in placeholder takes its value from when the runbook does not declare it.
BUILTINS: dict[str, str] = {
    "service": "cause.service",
    "kind": "cause.kind",
    "incident_id": "incident.id",
    "namespace": "deployment.namespace",
    "deployment": "deployment.name",
    "node": "cause.node",
    "pod": "cause.pod",
}

ParamType = Literal["string", "name", "int", "bool"]
BUILTIN_TYPES: dict[str, ParamType] = {
    "service": "string",
    "kind": "string",
    "incident_id": "string",
    "namespace": "name",
    "deployment": "name",
    "node": "name",
    "pod": "name",
}


class TemplateError(OnwatchError):
    """A template is malformed or names a placeholder outside the allowlist."""


class ParamError(OnwatchError):
    """A parameter value cannot be found or fails its type; the message says which and why."""


@dataclass(frozen=True, slots=True)
class _Literal:
    text: str


@dataclass(frozen=True, slots=True)
class _Slot:
    name: str


def parse(template: str) -> list[_Literal | _Slot]:
    """Split a template into literal text and placeholders, refusing anything but ``{name}``."""
    parts: list[_Literal | _Slot] = []
    buf: list[str] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c == "{":
            if i + 1 < n and template[i + 1] == "{":
                buf.append("{")
                i += 2
                continue
            end = template.find("}", i + 1)
            if end < 0:
                raise TemplateError(f"unclosed '{{' at position {i} in {template!r}")
            name = template[i + 1 : end]
            if not NAME_RE.fullmatch(name):
                raise TemplateError(
                    f"placeholder {{{name}}} in {template!r} is not a plain name (letters, digits, _)"
                )
            if buf:
                parts.append(_Literal("".join(buf)))
                buf = []
            parts.append(_Slot(name))
            i = end + 1
        elif c == "}":
            if i + 1 < n and template[i + 1] == "}":
                buf.append("}")
                i += 2
                continue
            raise TemplateError(f"single '}}' at position {i} in {template!r} (write '}}}}' for a literal brace)")
        else:
            buf.append(c)
            i += 1
    if buf:
        parts.append(_Literal("".join(buf)))
    return parts


def placeholders(template: str) -> set[str]:
    return {p.name for p in parse(template) if isinstance(p, _Slot)}


def placeholders_in(value: Any) -> set[str]:
    """Placeholders in every string leaf of a JSON-like value (keys included)."""
    out: set[str] = set()
    if isinstance(value, str):
        out |= placeholders(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            out |= placeholders_in(str(k)) | placeholders_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            out |= placeholders_in(v)
    return out


Context = Literal["text", "url", "header", "json"]


def _format(value: Any, context: Context) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if context == "url":
        return quote(text, safe="")
    if context == "header" and ("\r" in text or "\n" in text):
        raise ParamError("a header value may not contain a line break")
    return text


def render(template: str, values: Mapping[str, Any], context: Context = "text") -> str:
    out: list[str] = []
    for part in parse(template):
        if isinstance(part, _Literal):
            out.append(part.text)
        elif part.name not in values:
            raise ParamError(f"no value for {{{part.name}}}")
        else:
            out.append(_format(values[part.name], context))
    return "".join(out)


def render_json(value: Any, values: Mapping[str, Any]) -> Any:
    """Render every string leaf; a leaf that is exactly one placeholder keeps the value's type (int, bool)."""
    if isinstance(value, str):
        parts = parse(value)
        if len(parts) == 1 and isinstance(parts[0], _Slot):
            name = parts[0].name
            if name not in values:
                raise ParamError(f"no value for {{{name}}}")
            return values[name]
        return render(value, values, "json")
    if isinstance(value, Mapping):
        return {render(str(k), values, "json"): render_json(v, values) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_json(v, values) for v in value]
    return value


def coerce(name: str, raw: Any, ptype: ParamType, *, minimum: int | None = None, maximum: int | None = None,
           pattern: str | None = None) -> Any:
    """Validate one value against its declared type; raise ``ParamError`` naming the parameter."""
    if ptype == "int":
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ParamError(f"parameter {name}: {raw!r} is not an integer")
        try:
            v = int(raw)
        except ValueError:
            raise ParamError(f"parameter {name}: {raw!r} is not an integer") from None
        if minimum is not None and v < minimum:
            raise ParamError(f"parameter {name}: {v} is below the minimum {minimum}")
        if maximum is not None and v > maximum:
            raise ParamError(f"parameter {name}: {v} is above the maximum {maximum}")
        return v
    if ptype == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in {"true", "false"}:
            return raw.lower() == "true"
        raise ParamError(f"parameter {name}: {raw!r} is not true or false")
    if not isinstance(raw, str):
        raise ParamError(f"parameter {name}: {raw!r} is not text")
    if ptype == "name" and not K8S_NAME_RE.fullmatch(raw):
        raise ParamError(f"parameter {name}: {raw!r} is not a valid Kubernetes name")
    if ptype == "string":
        if len(raw) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in raw):
            raise ParamError(f"parameter {name}: value is too long or holds control characters")
        if name == "service" and not SERVICE_RE.fullmatch(raw):
            raise ParamError(f"parameter service: {raw!r} is not a plausible service name")
        if name == "kind" and not KIND_RE.fullmatch(raw):
            raise ParamError(f"parameter kind: {raw!r} is not a cause kind")
        if name == "incident_id" and not INCIDENT_RE.fullmatch(raw):
            raise ParamError(f"parameter incident_id: {raw!r} is not an incident id")
    if pattern is not None and not re.fullmatch(pattern, raw):
        raise ParamError(f"parameter {name}: {raw!r} does not match {pattern!r}")
    return raw
