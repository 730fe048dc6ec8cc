"""Build the ``Sources`` an investigation reads from the ``sources`` settings section.

Either every source comes from one replay case bundle (``sources.replay``), or each configured live system
gets its client. Building is cheap and does no I/O beyond reading credentials from the environment: a source
that is down is discovered at query time and reported as missing evidence.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.errors import ConfigError
from integrations.base import ChangeSource, ClusterSource, LogSource, MetricsSource, Sources, TraceSource
from integrations.settings import SourcesSettings

log = logging.getLogger(__name__)


def build_sources(settings: SourcesSettings, *, db: Any = None, now: float | None = None) -> Sources:
    """Live sources from settings, or everything from a replay case when ``sources.replay`` is set.

    ``db`` (a ``bot.store.db.Database``) is needed by the change webhook source; ``now`` fixes the clock
    (replay defaults to the case's end). Raises ``ConfigError`` on a missing credential or bad catalog.
    """
    if settings.replay is not None:
        from integrations.replay import ReplayCase, replay_sources

        sources = replay_sources(ReplayCase(settings.replay.path))
        if now is not None:
            sources.now = now
        return sources

    from integrations.grafana import GrafanaLinks

    grafana = GrafanaLinks(settings.grafana) if settings.grafana else None
    errors: list[str] = []
    sources = Sources(now=now)
    try:
        sources.metrics = _metrics(settings, grafana)
    except ConfigError as exc:
        errors += exc.errors
    try:
        sources.logs = _logs(settings, grafana)
    except ConfigError as exc:
        errors += exc.errors
    try:
        sources.traces = _traces(settings, grafana)
    except ConfigError as exc:
        errors += exc.errors
    for i, cs in enumerate(settings.changes):
        try:
            change = _change(cs, i, db)
        except ConfigError as exc:
            errors += exc.errors
            continue
        if change is not None:
            sources.changes.append(change)
    if settings.kubernetes is not None:
        from integrations.kubernetes_read import KubernetesReader, KubernetesTopology

        kube = KubernetesReader(settings.kubernetes)
        sources.cluster = kube
        sources.changes.append(kube.rollouts())
        sources.topology.append(KubernetesTopology(kube))
    if errors:
        raise ConfigError(errors)
    return sources


def _metrics(settings: SourcesSettings, grafana: Any) -> MetricsSource | None:
    s = settings.metrics
    if s is None:
        return None
    from integrations.catalog import Catalog
    from integrations.http import HttpSource, config_from_settings
    from integrations.prometheus import PrometheusClient, PrometheusSource

    catalog = Catalog.load(s.catalog, s.signals)
    http = HttpSource("prometheus", config_from_settings(s, s.url, where="sources.metrics"))
    return PrometheusSource(
        PrometheusClient(http), catalog, base_url=s.url, max_points=s.max_points, min_step_s=s.min_step_s,
        rate_window_s=s.rate_window_s, service_label=s.service_label, grafana=grafana,
    )


def _logs(settings: SourcesSettings, grafana: Any) -> LogSource | None:
    s = settings.logs
    if s is None:
        return None
    from integrations.loki import LokiSource

    return LokiSource.from_settings(s, grafana=grafana)


def _traces(settings: SourcesSettings, grafana: Any) -> TraceSource | None:
    s = settings.traces
    if s is None:
        return None
    if s.kind == "jaeger":
        from integrations.jaeger import JaegerSource

        return JaegerSource.from_settings(s, grafana=grafana)
    from integrations.tempo import TempoSource

    return TempoSource.from_settings(s, grafana=grafana)


def _change(cs: Any, i: int, db: Any) -> ChangeSource | None:
    where = f"sources.changes[{i}]"
    if cs.kind == "github":
        from integrations.github import GitHubChanges

        return GitHubChanges.from_settings(cs, where=where)
    if cs.kind == "argocd":
        from integrations.argocd import ArgoCDChanges

        return ArgoCDChanges.from_settings(cs, where=where)
    if db is None:
        log.warning("%s: the change webhook source needs the database; not reading webhook changes", where)
        return None
    from integrations.change_webhook import WebhookChangeSource

    return WebhookChangeSource(db)


__all__ = ["build_sources", "ClusterSource"]
