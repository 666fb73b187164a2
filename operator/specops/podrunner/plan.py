"""What should run, computed from API objects (pure: dicts in, frozen values out).

The pod runner is the local cluster's stand-in for kubelet + container
runtime + kube-proxy: a pod Running on a simulated (kwok) node gets one
simulator process, started with the pod's own ``vllm serve`` arguments; a
Service gets one loopback front door over its pods' simulators. Keeping
that mapping pure lets unit tests pin down exactly which arguments reach
the simulator and which labels reach Prometheus.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "specops"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
CONTAINER = "vllm"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPU_TYPE_LABEL = "specops.dev/gpu-type"
POD_LABEL_PREFIX = "app.kubernetes.io/"
GATED_REASON_PREFIX = "Simulator"
"""Reasons of a pod's Ready condition that the pod runner owns: kwok starts
SpecOps pods NotReady with ``SimulatorLoading`` on clusters with simulated
readiness (``specops.devcluster.kwokconfig``), and the runner then writes
``SimulatorReady`` / ``SimulatorNotReady``. On other clusters kwok marks pods
Ready itself and the runner leaves their status alone."""

# Flags that say where vLLM listens: the runner decides that (loopback, free port).
_LISTEN_FLAGS = frozenset({"--host", "--port", "--uds"})


@dataclass(frozen=True)
class Replica:
    """One simulated vLLM replica: a Running pod on a kwok node."""

    uid: str
    namespace: str
    pod: str
    node: str
    gpu: str
    serve_args: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    gated: bool = False
    """The pod runner reports this pod's readiness (see :data:`GATED_REASON_PREFIX`)."""
    pod_ready: bool = False
    """The pod's Ready condition when the replica was planned."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pod}"

    @property
    def seed(self) -> int:
        """A stable per-pod seed, so a pod's simulated acceptance is reproducible."""
        return zlib.crc32(self.uid.encode())


@dataclass(frozen=True)
class FrontDoor:
    """One managed Service: the pods its selector picks become the door's backends."""

    namespace: str
    name: str
    selector: Mapping[str, str]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, replica: Replica) -> bool:
        return (
            bool(self.selector)
            and replica.namespace == self.namespace
            and all(replica.labels.get(k) == v for k, v in self.selector.items())
        )


@dataclass(frozen=True)
class Skipped:
    """A managed pod that will not get a simulator, and why (logged once)."""

    key: str
    reason: str


def serve_args(container: Mapping[str, Any]) -> tuple[str, ...] | None:
    """``serve <model> [flags]`` from a container's command + args, minus listen flags.

    Accepts ``command: [vllm], args: [serve, ...]`` (what SpecOps renders) as
    well as ``command: [vllm, serve]``; ``None`` when there is no ``serve``.
    """
    words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
    if "serve" not in words:
        return None
    words = words[words.index("serve") :]
    out: list[str] = []
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        name = word.split("=", 1)[0]
        if name in _LISTEN_FLAGS:
            skip_next = "=" not in word
            continue
        out.append(word)
    return tuple(out) if len(out) >= 2 else None


def _running(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and not meta.get("deletionTimestamp")


def _ready_condition(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def readiness(pod: Mapping[str, Any]) -> tuple[bool, bool]:
    """(gated, ready): whether the runner owns the pod's readiness, and its Ready status."""
    condition = _ready_condition(pod)
    gated = str(condition.get("reason") or "").startswith(GATED_REASON_PREFIX)
    return gated, condition.get("status") == "True"


def replicas(
    pods: Iterable[Mapping[str, Any]], nodes: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, Replica], list[Skipped]]:
    """Replicas by pod UID for every managed pod Running on a simulated GPU node."""
    out: dict[str, Replica] = {}
    skipped: list[Skipped] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE or not _running(pod):
            continue
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        node = nodes.get(node_name)
        if node is None:
            skipped.append(Skipped(key, f"node {node_name!r} not found"))
            continue
        node_meta = node.get("metadata") or {}
        if KWOK_ANNOTATION not in (node_meta.get("annotations") or {}):
            skipped.append(Skipped(key, f"node {node_name} is not simulated (no kwok annotation)"))
            continue
        gpu = (node_meta.get("labels") or {}).get(GPU_TYPE_LABEL)
        if not gpu:
            skipped.append(Skipped(key, f"node {node_name} has no {GPU_TYPE_LABEL} label"))
            continue
        containers = (pod.get("spec") or {}).get("containers") or []
        container = next((c for c in containers if c.get("name") == CONTAINER), None)
        if container is None:
            skipped.append(Skipped(key, f"no container named {CONTAINER!r}"))
            continue
        args = serve_args(container)
        if args is None:
            skipped.append(Skipped(key, "container does not run `vllm serve <model>`"))
            continue
        gated, ready = readiness(pod)
        out[str(meta["uid"])] = Replica(
            uid=str(meta["uid"]),
            namespace=str(meta["namespace"]),
            pod=str(meta["name"]),
            node=node_name,
            gpu=gpu,
            serve_args=args,
            labels=dict(labels),
            gated=gated,
            pod_ready=ready,
        )
    return out, skipped


def front_doors(services: Iterable[Mapping[str, Any]]) -> dict[str, FrontDoor]:
    """Front doors by ``namespace/name`` for managed Services that select pods."""
    out = {}
    for svc in services:
        meta = svc.get("metadata") or {}
        if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
            continue
        selector = (svc.get("spec") or {}).get("selector") or {}
        if not selector:
            continue
        door = FrontDoor(str(meta["namespace"]), str(meta["name"]), dict(selector))
        out[door.key] = door
    return out


_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def prometheus_label(name: str) -> str:
    """A Kubernetes label name as Prometheus spells it (``a.b/c`` -> ``a_b_c``)."""
    return _LABEL_CHARS.sub("_", name)


def target_labels(replica: Replica) -> dict[str, str]:
    """Labels attached to a replica's scrape target (see docs/podrunner.md).

    ``namespace``, ``pod``, ``container`` and ``endpoint`` are what a
    Prometheus Operator PodMonitor attaches; the pod's ``app.kubernetes.io/*``
    labels are added as a PodMonitor with ``podTargetLabels`` would, so
    ``app_kubernetes_io_instance`` names the SpeculativeDeployment.
    """
    labels = {
        "namespace": replica.namespace,
        "pod": replica.pod,
        "container": CONTAINER,
        "endpoint": "http",
    }
    for name, value in replica.labels.items():
        if name.startswith(POD_LABEL_PREFIX):
            labels[prometheus_label(name)] = value
    return labels


def simulator_argv(
    replica: Replica,
    port: int,
    *,
    hub_mirror: str | None = None,
    time_scale: float | None = None,
    load_time_s: float | None = None,
) -> list[str]:
    """Arguments after ``specops sim`` for one replica (``serve <model> ... --port``)."""
    argv = [*replica.serve_args, "--gpu", replica.gpu, "--port", str(port)]
    argv += ["--seed", str(replica.seed)]
    if hub_mirror:
        argv += ["--hub-mirror", hub_mirror]
    if time_scale is not None:
        argv += ["--time-scale", f"{time_scale:g}"]
    if load_time_s is not None:
        argv += ["--load-time", f"{load_time_s:g}"]
    return argv


def restart_delay(crashes: int, base_s: float, cap_s: float = 60.0) -> float:
    """Seconds to wait before restarting a simulator that crashed ``crashes`` times.

    Doubling from ``base_s`` and capped, like kubelet's CrashLoopBackOff: a
    pod whose arguments the simulator rejects must not burn the shared CPU
    restarting every poll.
    """
    if crashes <= 0:
        return 0.0
    return float(min(cap_s, base_s * 2.0 ** (crashes - 1)))
