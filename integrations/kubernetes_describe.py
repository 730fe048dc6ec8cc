"""What ``kubectl describe`` would tell an SRE about a Deployment, a Pod or a Node, read from raw API objects.

Only the essentials are kept — replicas and strategy, containers with their images, resources and probes,
status counters, conditions, restarts and last terminations, node capacity, pressure and taints — and the
recent events of the object (for a Deployment, of its ReplicaSets and pods too). Container environment
variables, commands and annotations are left out on purpose: they are where credentials live (including the
``last-applied-configuration`` copy of a whole manifest). Every string is cut to ``MAX_TEXT`` characters
and every list to a few dozen items, so one description stays small whatever the object holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from integrations.base import TimeWindow, parse_rfc3339

MAX_TEXT = 300
MAX_CONTAINERS = 10
MAX_EVENTS = 20
MAX_RELATED = 20
KEPT_ANNOTATIONS = ("deployment.kubernetes.io/revision", "kubernetes.io/change-cause")


class ObjectKind(StrEnum):
    DEPLOYMENT = "Deployment"
    POD = "Pod"
    NODE = "Node"


@dataclass(frozen=True, slots=True)
class ObjectDescription:
    """One object, described. Times are Unix seconds (the caller shows them relative to the incident)."""

    kind: ObjectKind
    namespace: str
    name: str
    service: str
    spec: dict[str, Any]
    status: dict[str, Any]
    conditions: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    related: list[dict[str, Any]] = field(default_factory=list)  # a Deployment's pods, a service's other pods


@dataclass(frozen=True, slots=True)
class DescribeResult:
    """The description, or None with the names of that kind there are (so the caller can ask again)."""

    description: ObjectDescription | None
    known: tuple[str, ...] = ()


@runtime_checkable
class ObjectDescriber(Protocol):
    """A cluster source that can describe objects (the Kubernetes reader)."""

    name: str

    async def describe(self, kind: ObjectKind, name: str, namespace: str | None,
                       window: TimeWindow) -> DescribeResult: ...


def _d(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (API objects are read raw and trusted for nothing)."""
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _i(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _s(value: Any) -> str:
    return str(value if value is not None else "")[:MAX_TEXT]


def api_time(value: Any) -> float | None:
    """An API timestamp (RFC 3339) as Unix seconds; None when absent or unreadable."""
    try:
        return parse_rfc3339(str(value)) if value else None
    except ValueError:
        return None


def meta_of(obj: dict[str, Any]) -> dict[str, Any]:
    return _d(obj.get("metadata"))


def _probe(p: Any) -> dict[str, Any] | None:
    if not isinstance(p, dict):
        return None
    how = next((k for k in ("httpGet", "tcpSocket", "exec", "grpc") if k in p), "")
    target = p.get(how) if how else None
    where = ""
    if how == "httpGet" and isinstance(target, dict):
        where = f"{_s(target.get('path'))}:{_s(target.get('port'))}"
    elif how in ("tcpSocket", "grpc") and isinstance(target, dict):
        where = f":{_s(target.get('port'))}"
    return {"type": how, "target": where, "period_s": p.get("periodSeconds"), "timeout_s": p.get("timeoutSeconds"),
            "failure_threshold": p.get("failureThreshold"), "initial_delay_s": p.get("initialDelaySeconds")}


def containers(pod_spec: Any) -> list[dict[str, Any]]:
    """Name, image, resources, ports and probes of each container (no env, command or args)."""
    spec = pod_spec if isinstance(pod_spec, dict) else {}
    out = []
    for c in _l(spec.get("containers"))[:MAX_CONTAINERS]:
        if not isinstance(c, dict):
            continue
        res = _d(c.get("resources"))
        out.append({
            "name": _s(c.get("name")), "image": _s(c.get("image")),
            "requests": {k: _s(v) for k, v in _d(res.get("requests")).items()},
            "limits": {k: _s(v) for k, v in _d(res.get("limits")).items()},
            "ports": [p.get("containerPort") for p in _l(c.get("ports")) if isinstance(p, dict)][:10],
            **{name: probe for name in ("readinessProbe", "livenessProbe", "startupProbe")
               if (probe := _probe(c.get(name))) is not None},
        })
    return out


def conditions(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": _s(c.get("type")), "status": _s(c.get("status")), "reason": _s(c.get("reason")),
             "message": _s(c.get("message")), "since": api_time(c.get("lastTransitionTime"))}
            for c in _l(status.get("conditions"))[:20] if isinstance(c, dict)]


def container_states(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Ready, restarts, the current state and the last termination of each container."""
    out = []
    for cs in _l(status.get("containerStatuses"))[:MAX_CONTAINERS]:
        if not isinstance(cs, dict):
            continue
        state = _d(cs.get("state"))
        now = next(iter(state), "")
        detail = _d(state.get(now))
        last = _d(_d(cs.get("lastState")).get("terminated"))
        out.append({
            "name": _s(cs.get("name")), "ready": bool(cs.get("ready")), "restarts": _i(cs.get("restartCount")),
            "state": now, "state_reason": _s(detail.get("reason")), "state_message": _s(detail.get("message")),
            **({"last_terminated": {"reason": _s(last.get("reason")), "exit_code": last.get("exitCode"),
                                    "finished": api_time(last.get("finishedAt"))}} if last else {}),
        })
    return out


def deployment(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    spec = _d(obj.get("spec"))
    status = _d(obj.get("status"))
    meta = meta_of(obj)
    annotations = _d(meta.get("annotations"))
    strategy = _d(spec.get("strategy"))
    template = _d(spec.get("template"))
    essentials = {
        "replicas": spec.get("replicas"), "strategy": _s(strategy.get("type")),
        "rolling_update": {k: _s(v) for k, v in _d(strategy.get("rollingUpdate")).items()},
        "paused": bool(spec.get("paused")),
        "selector": {k: _s(v) for k, v in _d(_d(spec.get("selector")).get("matchLabels")).items()},
        "containers": containers(template.get("spec")),
        "annotations": {k: _s(annotations[k]) for k in KEPT_ANNOTATIONS if k in annotations},
    }
    counters = {k: status.get(k) for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
                                           "unavailableReplicas")}
    counters["generation"], counters["observed_generation"] = meta.get("generation"), status.get("observedGeneration")
    return essentials, counters, conditions(status)


def pod(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    spec = _d(obj.get("spec"))
    status = _d(obj.get("status"))
    owners = [f"{_s(o.get('kind'))}/{_s(o.get('name'))}" for o in _l(meta_of(obj).get("ownerReferences"))
              if isinstance(o, dict)]
    essentials = {"node": _s(spec.get("nodeName")), "owners": owners[:5], "containers": containers(spec),
                  "restart_policy": _s(spec.get("restartPolicy"))}
    state = {"phase": _s(status.get("phase")), "reason": _s(status.get("reason")),
             "message": _s(status.get("message")), "qos_class": _s(status.get("qosClass")),
             "started": api_time(status.get("startTime")), "pod_ip": _s(status.get("podIP")),
             "containers": container_states(status)}
    return essentials, state, conditions(status)


def node(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    spec = _d(obj.get("spec"))
    status = _d(obj.get("status"))
    info = _d(status.get("nodeInfo"))
    keep = ("cpu", "memory", "pods", "ephemeral-storage")
    essentials = {"unschedulable": bool(spec.get("unschedulable")),
                  "taints": [{"key": _s(t.get("key")), "value": _s(t.get("value")), "effect": _s(t.get("effect"))}
                             for t in _l(spec.get("taints"))[:20] if isinstance(t, dict)]}
    state = {"capacity": {k: _s(v) for k, v in _d(status.get("capacity")).items() if k in keep},
             "allocatable": {k: _s(v) for k, v in _d(status.get("allocatable")).items() if k in keep},
             "kubelet": _s(info.get("kubeletVersion")), "os_image": _s(info.get("osImage"))}
    return essentials, state, conditions(status)


SUMMARISERS: dict[ObjectKind, Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]]] = {
    ObjectKind.DEPLOYMENT: deployment, ObjectKind.POD: pod, ObjectKind.NODE: node,
}


def pod_health(p: dict[str, Any]) -> tuple[int, int, str]:
    """A sort key: not-ready pods first, then the most restarted (the one an SRE would look at)."""
    states = container_states(_d(p.get("status")))
    ready = all(s["ready"] for s in states) and bool(states)
    return (1 if ready else 0, -sum(s["restarts"] for s in states), _s(meta_of(p).get("name")))


def pod_line(p: dict[str, Any]) -> dict[str, Any]:
    status = _d(p.get("status"))
    states = container_states(status)
    return {"name": _s(meta_of(p).get("name")), "phase": _s(status.get("phase")),
            "ready": all(s["ready"] for s in states) and bool(states),
            "restarts": sum(s["restarts"] for s in states),
            "waiting": next((s["state_reason"] for s in states if s["state"] == "waiting"), "")}


def event_time(e: dict[str, Any]) -> float | None:
    """When an event last happened: its last timestamp, event time, series' last observation or creation."""
    return (api_time(e.get("lastTimestamp")) or api_time(e.get("eventTime"))
            or api_time(_d(e.get("series")).get("lastObservedTime")) or api_time(meta_of(e).get("creationTimestamp")))


def object_events(events: Sequence[dict[str, Any]], involved: Callable[[dict[str, Any]], bool],
                  window: TimeWindow) -> list[dict[str, Any]]:
    """The newest ``MAX_EVENTS`` events about the object (``involved`` picks them) up to the window's end."""
    out: list[dict[str, Any]] = []
    for e in events:
        obj = _d(e.get("involvedObject"))
        if not involved(obj):
            continue
        t = event_time(e)
        if t is None or not window.start <= t <= window.end:
            continue
        out.append({"time": t, "type": _s(e.get("type")), "reason": _s(e.get("reason")),
                    "object": f"{_s(obj.get('kind'))}/{_s(obj.get('name'))}", "count": max(1, _i(e.get("count"))),
                    "message": _s(e.get("message"))})
    out.sort(key=lambda r: float(r["time"]), reverse=True)
    return out[:MAX_EVENTS]
