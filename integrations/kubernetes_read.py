"""Kubernetes, read side (kubernetes_asyncio): events, pod states (OOMKilled, CrashLoopBackOff, Evicted,
restarts), Deployment rollout history (ReplicaSet revisions and their images) and object descriptions
(Deployment, Pod, Node; ``kubernetes_describe``).

This client only lists; it never holds the write credential (``write_kubeconfig`` is the executor's). Lists
are read raw (``_preload_content=False``) with ``limit`` and a byte cap, so a huge cluster cannot flood the
engine; a list cut short by the cap says so in the log and returns what fitted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from integrations.base import (
    ChangeEvent,
    ClusterEvent,
    Edge,
    SourceBadResponse,
    SourceRejected,
    SourceTimeout,
    SourceTooLarge,
    SourceUnavailable,
    TimeWindow,
)
from integrations.http import run_all
from integrations.kubernetes_describe import (
    MAX_RELATED,
    SUMMARISERS,
    DescribeResult,
    ObjectDescription,
    ObjectKind,
    api_time,
    event_time,
    meta_of,
    object_events,
    pod_health,
    pod_line,
)
from integrations.settings import KubernetesSettings

log = logging.getLogger(__name__)

WAITING_REASONS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
                             "CreateContainerError", "RunContainerError"})
NORMAL_REASONS = frozenset({"Killing", "ScalingReplicaSet", "SuccessfulRescale", "Preempted", "Evicted"})
_POD_SUFFIX = re.compile(r"^(.+?)(?:-[a-z0-9]{6,10})?-(?:[a-z0-9]{5}|[0-9]+)$")
REVISION = "deployment.kubernetes.io/revision"
ONGOING_S = 600.0  # a state still present counts for windows ending this close to now


@dataclass(frozen=True, slots=True)
class Revision:
    """One ReplicaSet revision of a Deployment."""

    namespace: str
    deployment: str
    service: str
    revision: int
    images: tuple[str, ...]
    created: float
    replicas: int
    replica_set: str


class KubernetesReader:
    """``ClusterSource`` over the API server; ``rollouts()`` gives the matching ``ChangeSource``."""

    name = "kubernetes"

    def __init__(self, settings: KubernetesSettings, *, api_factory: Callable[[], Awaitable[client.ApiClient]]
                 | None = None):
        self.s = settings
        self._factory = api_factory or self._default_api
        self._api: client.ApiClient | None = None
        self._lock = asyncio.Lock()
        self._sem = asyncio.Semaphore(settings.concurrency)

    async def _default_api(self) -> client.ApiClient:
        cfg = client.Configuration()
        if self.s.in_cluster:
            config.load_incluster_config(client_configuration=cfg)
        else:
            await config.load_kube_config(
                config_file=str(self.s.kubeconfig) if self.s.kubeconfig else None,
                context=self.s.context, client_configuration=cfg, persist_config=False,
            )
        return client.ApiClient(configuration=cfg)

    async def api(self) -> client.ApiClient:
        async with self._lock:
            if self._api is None:
                try:
                    self._api = await self._factory()
                except (ConfigException, OSError) as exc:
                    raise SourceUnavailable(self.name, f"cannot load the cluster credentials: {exc}") from None
            return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    def rollouts(self) -> KubernetesRollouts:
        return KubernetesRollouts(self)

    # ---------------------------------------------------------------- raw lists

    async def _list(self, plural: str) -> list[dict[str, Any]]:
        """Every item of a kind in the configured namespaces (all namespaces when none are configured)."""
        api = await self.api()
        namespaces: list[str | None] = list(self.s.namespaces) or [None]
        items: list[dict[str, Any]] = []
        for ns in namespaces:
            items += await self._list_one(api, plural, ns)
        return items

    async def _list_one(self, api: client.ApiClient, plural: str, ns: str | None) -> list[dict[str, Any]]:
        core = client.CoreV1Api(api)
        apps = client.AppsV1Api(api)
        calls: dict[tuple[str, bool], Callable[..., Awaitable[Any]]] = {
            ("events", True): core.list_namespaced_event, ("events", False): core.list_event_for_all_namespaces,
            ("pods", True): core.list_namespaced_pod, ("pods", False): core.list_pod_for_all_namespaces,
            ("deployments", True): apps.list_namespaced_deployment,
            ("deployments", False): apps.list_deployment_for_all_namespaces,
            ("replicasets", True): apps.list_namespaced_replica_set,
            ("replicasets", False): apps.list_replica_set_for_all_namespaces,
            ("nodes", False): core.list_node,
        }
        call = calls[(plural, ns is not None)]
        args = (ns,) if ns is not None else ()
        what = f"{plural} in {ns or 'all namespaces'}"
        attempt = 0
        async with self._sem:
            while True:
                try:
                    async with asyncio.timeout(self.s.timeout_s):
                        resp = await call(*args, limit=self.s.max_items, _preload_content=False,
                                          _request_timeout=self.s.timeout_s)
                        try:
                            status = resp.status
                            body = await _read_capped(resp, self.s.max_bytes, self.name, what)
                        finally:
                            resp.release()
                except TimeoutError:
                    raise SourceTimeout(self.name, f"listing {what} timed out after {self.s.timeout_s:g} s") from None
                except ApiException as exc:  # raised before a response exists (bad parameters)
                    raise SourceRejected(self.name, f"listing {what}: {exc.status} {exc.reason}") from None
                except aiohttp.ClientError as exc:
                    err: Exception = SourceUnavailable(self.name, f"cannot reach the API server: {exc}")
                else:
                    if 200 <= status < 300:
                        break
                    text = body[:300].decode("utf-8", "replace")
                    if status != 429 and status < 500:
                        raise SourceRejected(self.name, f"listing {what}: HTTP {status}: {_k8s_message(text)}")
                    err = SourceUnavailable(self.name, f"listing {what}: HTTP {status}: {_k8s_message(text)}")
                if attempt >= self.s.retries:
                    raise err
                attempt += 1
                await asyncio.sleep(min(4.0, 0.2 * 2**attempt))
        try:
            doc = json.loads(body)
            items = list(doc.get("items") or [])
        except (ValueError, AttributeError, TypeError) as exc:
            raise SourceBadResponse(self.name, f"listing {what}: not a Kubernetes list ({exc})") from None
        if (doc.get("metadata") or {}).get("continue"):
            log.warning("kubernetes: %s cut at %d items (max_items)", what, len(items))
        return [i for i in items if isinstance(i, dict)]

    # ---------------------------------------------------------------- mapping to services

    def service_of(self, meta: dict[str, Any]) -> str:
        labels = meta.get("labels") or {}
        for key in (self.s.service_label, "app.kubernetes.io/name", "app", "k8s-app"):
            if labels.get(key):
                return str(labels[key])
        name = str(meta.get("name", ""))
        m = _POD_SUFFIX.match(name)
        return m.group(1) if m else name

    # ---------------------------------------------------------------- ClusterSource

    async def events(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[ClusterEvent]:
        raw_events, pods = await run_all([self._list("events"), self._list("pods")])
        by_pod = {((p.get("metadata") or {}).get("namespace"), (p.get("metadata") or {}).get("name")):
                  self.service_of(p.get("metadata") or {}) for p in pods}
        out = self._from_events(raw_events, by_pod, window) + self.pod_states(pods, window)
        if services is not None:
            wanted = set(services)
            out = [e for e in out if e.service in wanted]
        return sorted(out, key=lambda e: (e.time, e.service, e.reason))

    def _from_events(self, events: list[dict[str, Any]], by_pod: dict[tuple[Any, Any], str],
                     window: TimeWindow) -> list[ClusterEvent]:
        out: list[ClusterEvent] = []
        for e in events:
            reason = str(e.get("reason", ""))
            if e.get("type") != "Warning" and reason not in NORMAL_REASONS:
                continue
            meta = e.get("metadata") or {}
            t = event_time(e)
            if t is None or not window.start <= t <= window.end:
                continue
            obj = e.get("involvedObject") or {}
            ns, name = obj.get("namespace") or meta.get("namespace"), str(obj.get("name", ""))
            service = by_pod.get((ns, name)) or self.service_of({"name": name})
            out.append(ClusterEvent(
                time=t, service=service, reason=reason, message=str(e.get("message", ""))[:1000],
                object=f"{obj.get('kind', '')}/{ns}/{name}", node=str((e.get("source") or {}).get("host", "")),
                count=int(e.get("count") or (e.get("series") or {}).get("count") or 1),
            ))
        return out

    def pod_states(self, pods: list[dict[str, Any]], window: TimeWindow, now: float | None = None) -> list[ClusterEvent]:
        """OOMKilled, CrashLoopBackOff (and other waiting reasons), Evicted and restarts, read off pod status."""
        now = time.time() if now is None else now
        present = window.end >= now - ONGOING_S
        out: list[ClusterEvent] = []
        for p in pods:
            meta, status = p.get("metadata") or {}, p.get("status") or {}
            service = self.service_of(meta)
            obj = f"Pod/{meta.get('namespace', '')}/{meta.get('name', '')}"
            node = str((p.get("spec") or {}).get("nodeName", ""))
            if status.get("reason") == "Evicted":
                t = max((api_time(c.get("lastTransitionTime")) or 0.0 for c in status.get("conditions") or []), default=0.0)
                t = t or api_time(status.get("startTime")) or 0.0
                if window.start <= t <= window.end or (present and t < window.start):
                    out.append(ClusterEvent(max(t, window.start) if t < window.start else t, service, "Evicted",
                                            str(status.get("message", ""))[:1000], obj, node))
            for cs in status.get("containerStatuses") or []:
                last = (cs.get("lastState") or {}).get("terminated") or {}
                finished = api_time(last.get("finishedAt"))
                restarts = int(cs.get("restartCount") or 0)
                where = f"{obj} container {cs.get('name', '')}"
                if last.get("reason") == "OOMKilled" and finished and window.start <= finished <= window.end:
                    out.append(ClusterEvent(finished, service, "OOMKilled",
                                            f"{where} was OOM-killed (exit {last.get('exitCode', '')})", obj, node,
                                            count=max(1, restarts)))
                if restarts and finished and window.start <= finished <= window.end:
                    out.append(ClusterEvent(finished, service, "Restarted",
                                            f"{where} restarted {restarts} times; last exit: "
                                            f"{last.get('reason', '')} ({last.get('exitCode', '')})", obj, node,
                                            count=restarts))
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in WAITING_REASONS:
                    t = finished or api_time(status.get("startTime")) or window.end
                    if window.start <= t <= window.end or present:
                        out.append(ClusterEvent(min(max(t, window.start), window.end), service, str(waiting["reason"]),
                                                f"{where}: {waiting.get('message', '')}"[:1000], obj, node,
                                                count=max(1, restarts)))
        return out

    # ---------------------------------------------------------------- describe (the LLM investigator's tool)

    async def describe(self, kind: ObjectKind, name: str, namespace: str | None,
                       window: TimeWindow) -> DescribeResult:
        """A Deployment, Pod or Node as ``kubectl describe`` shows it, trimmed (``kubernetes_describe``).

        ``name`` is the object's name or, for a Deployment or a Pod, the service it belongs to (a service's
        least healthy pod is described, its other pods listed)."""
        if kind is ObjectKind.NODE:
            nodes = await self._list_one(await self.api(), "nodes", None)
            objs, events = [n for n in nodes if meta_of(n).get("name") == name], await self._list("events")
            known = sorted(str(meta_of(n).get("name", "")) for n in nodes)
            return self._described(kind, objs, [], events, window, known)
        plural = "deployments" if kind is ObjectKind.DEPLOYMENT else "pods"
        items, pods, events = await run_all([self._list(plural), self._list("pods"), self._list("events")])
        here = [o for o in items if namespace in (None, meta_of(o).get("namespace"))]
        objs = [o for o in here if meta_of(o).get("name") == name] or \
            [o for o in here if self.service_of(meta_of(o)) == name]
        if kind is ObjectKind.POD:
            objs.sort(key=pod_health)
        known = sorted({str(meta_of(o).get("name", "")) for o in here} | {self.service_of(meta_of(o)) for o in here})
        return self._described(kind, objs, pods, events, window, known)

    def _described(self, kind: ObjectKind, objs: list[dict[str, Any]], pods: list[dict[str, Any]],
                   events: list[dict[str, Any]], window: TimeWindow, known: list[str]) -> DescribeResult:
        if not objs:
            return DescribeResult(None, tuple(known[:60]))
        obj = objs[0]
        meta = meta_of(obj)
        ns, name, service = str(meta.get("namespace", "")), str(meta.get("name", "")), self.service_of(meta)
        spec, status, conds = SUMMARISERS[kind](obj)
        related: list[dict[str, Any]] = []
        if kind is ObjectKind.NODE:
            def involved(o: dict[str, Any]) -> bool:
                return o.get("kind") == "Node" and o.get("name") == name
        else:
            siblings = [p for p in pods if meta_of(p).get("namespace") == ns and self.service_of(meta_of(p)) == service]
            if kind is ObjectKind.DEPLOYMENT:
                related = [pod_line(p) for p in sorted(siblings, key=pod_health)[:MAX_RELATED]]
                names = {name} | {str(meta_of(p).get("name")) for p in siblings}

                def involved(o: dict[str, Any]) -> bool:
                    return o.get("namespace", ns) == ns and (o.get("name") in names or (
                        o.get("kind") == "ReplicaSet" and self.service_of({"name": o.get("name", "")}) == service))
            else:
                related = [pod_line(p) for p in objs[1:MAX_RELATED + 1]]

                def involved(o: dict[str, Any]) -> bool:
                    return o.get("namespace", ns) == ns and o.get("name") == name
        return DescribeResult(ObjectDescription(kind, ns, name, service, spec, status, conds,
                                                object_events(events, involved, window), related))

    # ---------------------------------------------------------------- rollouts

    async def rollout_history(self, services: Sequence[str] | None = None) -> list[Revision]:
        """ReplicaSet revisions of every Deployment (newest ``rollout_history`` kept per Deployment)."""
        raw_deps, raw_rs = await run_all([self._list("deployments"), self._list("replicasets")])
        deployments = {str((d.get("metadata") or {}).get("uid")): d for d in raw_deps}
        revs: dict[str, list[Revision]] = {}
        for rs in raw_rs:
            meta = rs.get("metadata") or {}
            owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == "Deployment"), None)
            dep = deployments.get(str(owner.get("uid"))) if owner else None
            if dep is None:
                continue
            dmeta = dep.get("metadata") or {}
            service = self.service_of(dmeta)
            if services is not None and service not in services:
                continue
            try:
                number = int((meta.get("annotations") or {}).get(REVISION, "0"))
            except ValueError:
                number = 0
            containers = (((rs.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
            revs.setdefault(str(dmeta.get("uid")), []).append(Revision(
                namespace=str(meta.get("namespace", "")), deployment=str(dmeta.get("name", "")), service=service,
                revision=number, images=tuple(str(c.get("image", "")) for c in containers),
                created=api_time(meta.get("creationTimestamp")) or 0.0,
                replicas=int((rs.get("status") or {}).get("replicas") or 0), replica_set=str(meta.get("name", "")),
            ))
        out: list[Revision] = []
        for rows in revs.values():
            rows.sort(key=lambda r: r.revision)
            out += rows[-self.s.rollout_history:]
        return sorted(out, key=lambda r: (r.namespace, r.deployment, r.revision))


class KubernetesRollouts:
    """Deployment rollouts as ``ChangeEvent``s: one per ReplicaSet revision created in the window."""

    name = "kubernetes-rollouts"

    def __init__(self, reader: KubernetesReader):
        self.reader = reader

    async def changes(self, window: TimeWindow, services: Sequence[str] | None = None) -> list[ChangeEvent]:
        history = await self.reader.rollout_history(services)
        out: list[ChangeEvent] = []
        previous: dict[tuple[str, str], Revision] = {}
        for r in history:
            key = (r.namespace, r.deployment)
            prev = previous.get(key)
            previous[key] = r
            if not window.start <= r.created <= window.end:
                continue
            out.append(ChangeEvent(
                service=r.service, time=r.created, kind="deploy", version=", ".join(r.images),
                previous_version=", ".join(prev.images) if prev else "",
                description=f"Deployment {r.namespace}/{r.deployment} revision {r.revision} "
                            f"(ReplicaSet {r.replica_set})",
                source="kubernetes",
            ))
        return sorted(out, key=lambda c: c.time)


DEPENDS_ON = "onwatch.io/depends-on"


class KubernetesTopology:
    """Call dependencies declared on workloads: annotation ``onwatch.io/depends-on: "payments-db, redis"``.

    Teams that know their dependencies write them next to the Deployment; the engine uses them like the
    topology from settings or traces (caller -> callee).
    """

    name = "kubernetes-topology"

    def __init__(self, reader: KubernetesReader):
        self.reader = reader

    async def edges(self) -> list[Edge]:
        out: set[Edge] = set()
        for dep in await self.reader._list("deployments"):
            meta = dep.get("metadata") or {}
            declared = str((meta.get("annotations") or {}).get(DEPENDS_ON, ""))
            caller = self.reader.service_of(meta)
            for callee in (c.strip() for c in declared.split(",")):
                if callee and callee != caller:
                    out.add(Edge(caller, callee))
        return sorted(out, key=lambda e: (e.caller, e.callee))


async def _read_capped(resp: Any, cap: int, source: str, what: str) -> bytes:
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        buf += chunk
        if len(buf) > cap:
            raise SourceTooLarge(source, f"listing {what}: answer exceeds the {cap} byte cap")
    return bytes(buf)


def _k8s_message(text: str) -> str:
    try:
        return str(json.loads(text).get("message", text))[:300]
    except (ValueError, AttributeError):
        return " ".join(text.split())[:300]
