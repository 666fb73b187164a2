"""What the demo installs: Helm values and the example resource's overlay (pure).

Why an overlay rather than a second example file: the demo must show the
shipped example, only with the time constants shortened so the operator's
decisions fit in a few minutes (a 30 s window instead of 300 s, a short
scale-down stabilisation) and the namespace the demo owns.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RELEASE = "specops"
RELEASE_NAMESPACE = "specops-system"
DEMO_NAMESPACE = "demo"


@dataclass(frozen=True)
class DemoTiming:
    """Time constants of the demo (seconds of wall time)."""

    evaluation_s: float = 5.0
    window_s: int = 30
    scale_down_stabilization_s: int = 20
    resync_s: float = 60.0


def helm_values(
    *, prometheus_url: str, hub_mirror: Path, metrics_port: int, timing: DemoTiming
) -> dict[str, Any]:
    """Chart values for the demo: local Prometheus, the fixture mirror, loopback metrics.

    ``bindAddress`` is 127.0.0.1 because the "pod" is a process on this
    machine: its /metrics must not listen on other interfaces, and the local
    Prometheus scrapes it on loopback.
    """
    return {
        "settings": {
            "prometheusUrl": prometheus_url,
            "hubMirror": str(hub_mirror),
            "logFormat": "text",
            "logLevel": "INFO",
            "metricsPort": metrics_port,
            "bindAddress": "127.0.0.1",
            "evaluationSeconds": timing.evaluation_s,
            "resyncSeconds": timing.resync_s,
        },
        "podDisruptionBudget": {"enabled": False},
        # The operator is a CPU workload: keep it off the simulated GPU nodes.
        "nodeSelector": {"specops.dev/node-pool": "cpu"},
    }


def overlay(
    example: dict[str, Any],
    *,
    namespace: str = DEMO_NAMESPACE,
    max_replicas: int = 4,
    target_itl_ms: float | None = None,
    timing: DemoTiming | None = None,
) -> dict[str, Any]:
    """The example with the demo's namespace, replica range and short windows."""
    if example.get("kind") != "SpeculativeDeployment":
        raise ValueError(f"expected a SpeculativeDeployment, got kind {example.get('kind')!r}")
    timing = timing or DemoTiming()
    out = copy.deepcopy(example)
    out.setdefault("metadata", {})["namespace"] = namespace
    spec = out.setdefault("spec", {})
    auto = spec.setdefault("autoscaling", {})
    auto["minReplicas"] = min(int(auto.get("minReplicas", 1)), max_replicas)
    auto["maxReplicas"] = max_replicas
    auto["scaleDownStabilizationSeconds"] = timing.scale_down_stabilization_s
    if target_itl_ms is not None:
        auto["targetITLMilliseconds"] = target_itl_ms
    speculation = spec.setdefault("speculation", {})
    speculation["mode"] = "Auto"
    speculation["windowSeconds"] = timing.window_s
    # In the twin the pod runner plays the PodMonitor (file SD with the same labels);
    # without the Prometheus Operator's CRDs a PodMonitor would only raise a warning.
    spec.setdefault("monitoring", {})["podMonitor"] = False
    return out
