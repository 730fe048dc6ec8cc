"""The signal catalog: signal kinds (``latency_p99``, ``cpu``, ...) mapped to PromQL templates aggregated by a
service label, so one query returns the signal for every service.

Templates use ``${name}`` placeholders (PromQL itself never uses ``$`` outside ``label_replace`` group
references such as ``$1``, which are left alone):

- ``${by}``      the service label the result is grouped by
- ``${sel}``     a service matcher with a trailing comma (``service=~"a|b",``), or nothing
- ``${pod_sel}`` the same matcher on the ``pod`` label (pods named ``<service>-...``), or nothing
- ``${rate}``    the rate() window, e.g. ``2m``
- ``${signal}``  the signal name (for ``fallback`` templates)

Profiles ship in ``integrations/catalogs/*.yaml``; a settings value may name one, a YAML file, or several
joined by ``,`` (later ones override earlier ones).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.errors import ConfigError

PROFILES_DIR = Path(__file__).resolve().parent / "catalogs"
PLACEHOLDERS = frozenset({"by", "sel", "pod_sel", "rate", "signal"})
SIGNAL_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class SignalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str
    unit: str = ""


class CatalogFile(BaseModel):
    """The YAML shape of one profile."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    service_label: str = "service"
    fallback: str | None = Field(default=None, description="template for any signal not listed")
    signals: dict[str, SignalSpec] = Field(default_factory=dict)

    @field_validator("service_label")
    @classmethod
    def _label(cls, v: str) -> str:
        if not LABEL_RE.match(v):
            raise ValueError(f"{v!r} is not a valid Prometheus label name")
        return v

    @field_validator("signals")
    @classmethod
    def _signals(cls, v: dict[str, SignalSpec]) -> dict[str, SignalSpec]:
        for name, spec in v.items():
            if not SIGNAL_RE.match(name):
                raise ValueError(f"signal {name!r} must be lowercase snake_case")
            check_template(spec.query, f"signals.{name}")
        return v

    @field_validator("fallback")
    @classmethod
    def _fallback(cls, v: str | None) -> str | None:
        if v is not None:
            check_template(v, "fallback")
        return v


def check_template(text: str, where: str) -> None:
    unknown = set(Template(text).get_identifiers()) - PLACEHOLDERS
    if unknown:
        raise ValueError(f"{where}: unknown placeholder(s) {sorted(unknown)}; known: {sorted(PLACEHOLDERS)}")


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal (Go escaping, which JSON's is a subset of)."""
    return json.dumps(value, ensure_ascii=False)


def service_matcher(label: str, services: Sequence[str] | None) -> str:
    """``label="a",`` for one service, ``label=~"a|b",`` for several (regex-escaped), empty for all."""
    if not services:
        return ""
    if len(services) == 1:
        return f"{label}={promql_string(services[0])},"
    alternatives = "|".join(re.escape(s) for s in sorted(set(services)))
    return f"{label}=~{promql_string(alternatives)},"


def pod_matcher(services: Sequence[str] | None) -> str:
    if not services:
        return ""
    alternatives = "|".join(re.escape(s) for s in sorted(set(services)))
    return f"pod=~{promql_string(f'(?:{alternatives})-.+')},"


@dataclass(frozen=True, slots=True)
class Profile:
    """One loaded profile as the user named it: its own service label and its own signals."""

    name: str
    service_label: str
    signals: tuple[str, ...]
    fallback: bool = False


@dataclass(frozen=True, slots=True)
class Catalog:
    """A merged set of profiles: what each signal's PromQL is and which label names its service.

    Each signal keeps the service label of the profile it came from (``labels``), so with
    ``kubernetes,otel`` CPU is grouped by ``container`` and latency by ``job``; ``service_label`` (the last
    profile's) serves settings overrides and signals nobody labelled.
    """

    name: str
    service_label: str
    signals: Mapping[str, SignalSpec] = field(default_factory=dict)
    fallback: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    profiles: tuple[Profile, ...] = ()
    fallback_label: str | None = None

    def knows(self, signal: str) -> bool:
        return signal in self.signals or (self.fallback is not None and bool(SIGNAL_RE.match(signal)))

    def label_for(self, signal: str) -> str:
        """The service label ``signal`` is grouped by: its own profile's."""
        if signal in self.signals:
            return self.labels.get(signal, self.service_label)
        return self.fallback_label or self.service_label

    def render(
        self, signal: str, services: Sequence[str] | None = None, *, rate_s: int = 120, by: str | None = None
    ) -> str:
        """The PromQL for ``signal`` (grouped by ``by`` or the signal's own service label)."""
        spec = self.signals.get(signal)
        if spec is not None:
            template = spec.query
        elif self.fallback is not None and SIGNAL_RE.match(signal):
            template = self.fallback
        else:
            raise KeyError(f"signal {signal!r} is not in the {self.name} catalog")
        label = by or self.label_for(signal)
        text = Template(template).safe_substitute(
            by=label,
            sel=service_matcher(label, services),
            pod_sel=pod_matcher(services),
            rate=f"{int(rate_s)}s",
            signal=signal,
        )
        return " ".join(text.split())

    @classmethod
    def load(cls, spec: str, overrides: Mapping[str, str] | None = None) -> Catalog:
        """Load ``kubernetes``, ``otel,kubernetes``, or ``/etc/onwatch/catalog.yaml``; apply overrides."""
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        if not parts:
            raise ConfigError(["sources.metrics.catalog: empty"])
        files = [_read_profile(p) for p in parts]
        signals: dict[str, SignalSpec] = {}
        labels: dict[str, str] = {}
        for f in files:
            signals.update(f.signals)
            labels.update(dict.fromkeys(f.signals, f.service_label))
        profiles = [Profile(f.name, f.service_label, tuple(sorted(f.signals)), f.fallback is not None) for f in files]
        last = files[-1].service_label
        for name, query in (overrides or {}).items():
            try:
                if not SIGNAL_RE.match(name):
                    raise ValueError(f"signal {name!r} must be lowercase snake_case")
                check_template(query, f"signals.{name}")
            except ValueError as exc:
                raise ConfigError([f"sources.metrics.signals: {exc}"]) from None
            signals[name] = SignalSpec(query=query)
            labels[name] = last
        if overrides:
            profiles.append(Profile("sources.metrics.signals", last, tuple(sorted(overrides))))
        with_fallback = next((f for f in reversed(files) if f.fallback), None)
        return cls(name="+".join(f.name for f in files), service_label=last, signals=signals,
                   fallback=with_fallback.fallback if with_fallback else None, labels=labels,
                   profiles=tuple(profiles), fallback_label=with_fallback.service_label if with_fallback else None)


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _read_profile(ref: str) -> CatalogFile:
    path = PROFILES_DIR / f"{ref}.yaml" if LABEL_RE.match(ref) else Path(ref)
    if not path.exists():
        raise ConfigError([f"sources.metrics.catalog: {ref!r} is neither a profile ({', '.join(profile_names())}) "
                           "nor an existing YAML file"])
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([f"sources.metrics.catalog: cannot read {path}: {exc}"]) from None
    try:
        return CatalogFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]) from None
