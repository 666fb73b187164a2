"""kwok's configuration file: options plus the stages the cluster needs.

kwok falls back to its built-in ``node-fast`` and ``pod-fast`` stages (from its
kustomize directory) for Nodes and Pods when the config lists none for them:
nodes become Ready at once and pods go Running and Ready as soon as they are
bound. That is what most tests want. The config is written explicitly (rather
than letting kwok read ``~/.kwok/kwok.yaml``) so a developer's own kwok set-up
cannot change how the test cluster behaves.

A cluster started with ``simulated_readiness`` (the demo, and tests of the
twin's rollouts) lists its own Pod stages instead: the three of ``pod-fast``
(kwok v0.7.0, Apache-2.0), except that pods managed by SpecOps start Running
but **not Ready**. The pod runner, which plays kubelet for them, marks each
Ready when its simulator has loaded the model and answers ``/health``, and
NotReady again when it stops answering. So the Deployment controller's rolling
updates, Services and the operator's Ready condition wait for the simulated
model load as they wait for a real one, and a restart costs capacity.

The extra stage recycles released PersistentVolumes of the pre-created pool: it
clears ``spec.claimRef`` once a claim is gone, and the real PV controller then
marks the volume Available again. Without it a test session would drain the pool.
"""

from __future__ import annotations

from typing import Any

from specops.devcluster.nodepools import KWOK_ANNOTATION, KWOK_ANNOTATION_VALUE
from specops.devcluster.storage import POOL_LABEL

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "specops"
LOADING_REASON = "SimulatorLoading"
"""Reason on the Ready=False condition of a gated pod until the pod runner takes over;
the pod runner recognises gated pods by its prefix (``podrunner.plan.GATED_REASON_PREFIX``)."""

_CONDITIONS = """\
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "READY"
  type: Ready
  REASON
- lastTransitionTime: {{ $now | Quote }}
  status: "READY"
  type: ContainersReady
  REASON
{{ range .spec.readinessGates }}
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: {{ .conditionType | Quote }}
{{ end }}
"""

_CONTAINERS = """\
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: READY
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  {{ if eq .restartPolicy "Always" }}
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
  {{ else }}
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ $now | Quote }}
  {{ end }}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) \
( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Running
startTime: {{ $now | Quote }}
"""


def _pod_status_template(*, ready: bool) -> str:
    """kwok's ``pod-ready`` status template, Ready or (for gated pods) not yet."""
    reason = "" if ready else f"reason: {LOADING_REASON}"
    conditions = _CONDITIONS.replace("READY", "True" if ready else "False")
    conditions = conditions.replace("  REASON\n", f"  {reason}\n" if reason else "")
    containers = _CONTAINERS.replace("ready: READY", f"ready: {'true' if ready else 'false'}")
    return "{{ $now := Now }}\n" + conditions + containers.replace("\\\n", "")


def _stage(
    name: str, kind: str, expressions: list[dict[str, Any]], next_: dict[str, Any]
) -> dict[str, Any]:
    """One kwok Stage: when an object of ``kind`` matches ``expressions``, apply ``next_``."""
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": kind},
            "selector": {"matchExpressions": expressions},
            "next": next_,
        },
    }


def _pod_stage(name: str, managed: str, *, ready: bool) -> dict[str, Any]:
    expressions: list[dict[str, Any]] = [
        {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
        {"key": ".status.podIP", "operator": "DoesNotExist"},
        {
            "key": f'.metadata.labels["{MANAGED_BY_LABEL}"]',
            "operator": managed,
            "values": [MANAGED_BY_VALUE],
        },
    ]
    return _stage(name, "Pod", expressions, {"statusTemplate": _pod_status_template(ready=ready)})


def pod_stages() -> list[dict[str, Any]]:
    """``pod-fast`` with SpecOps-managed pods started NotReady (see the module docstring)."""
    complete = _stage(
        "pod-complete",
        "Pod",
        [
            {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
            {"key": ".status.phase", "operator": "In", "values": ["Running"]},
            {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
        ],
        {
            "statusTemplate": (
                "{{ $now := Now }}\n{{ $root := . }}\ncontainerStatuses:\n"
                "{{ range $index, $item := .spec.containers }}\n"
                "- image: {{ $item.image | Quote }}\n  name: {{ $item.name | Quote }}\n"
                "  ready: false\n  restartCount: 0\n  started: false\n  state:\n"
                "    terminated:\n      exitCode: 0\n"
                "      finishedAt: {{ $now | Quote }}\n      reason: Completed\n"
                "      startedAt: {{ $now | Quote }}\n{{ end }}\nphase: Succeeded\n"
            )
        },
    )
    delete = _stage(
        "pod-delete",
        "Pod",
        [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
        {"finalizers": {"empty": True}, "delete": True},
    )
    return [
        _pod_stage("pod-ready", "NotIn", ready=True),
        _pod_stage("specops-pod-loading", "In", ready=False),
        complete,
        delete,
    ]


def documents(
    *, pod_cidr: str = "10.244.0.1/16", simulated_readiness: bool = False
) -> list[dict[str, Any]]:
    """The YAML documents of kwok's ``--config`` file."""
    configuration = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "options": {
            "cidr": pod_cidr,
            "nodeIP": "127.0.0.1",
            "manageNodesWithAnnotationSelector": f"{KWOK_ANNOTATION}={KWOK_ANNOTATION_VALUE}",
            "nodeLeaseDurationSeconds": 40,
        },
    }
    recycle = _stage(
        "specops-volume-recycle",
        "PersistentVolume",
        [
            {"key": ".status.phase", "operator": "In", "values": ["Released"]},
            {"key": f'.metadata.labels["{POOL_LABEL}"]', "operator": "Exists"},
        ],
        {"patches": [{"type": "merge", "root": "spec", "template": "claimRef: null"}]},
    )
    return [configuration, recycle, *(pod_stages() if simulated_readiness else [])]
