"""``render``: one SpeculativeDeployment in, the Kubernetes objects that serve it out.

Pure and deterministic: the same inputs give byte-identical objects (no
timestamps, no random names), so re-applying on every reconcile is a no-op and
never restarts vLLM by accident. Objects are plain dicts ready for server-side
apply, in a fixed order.
"""

from __future__ import annotations

from typing import Any

from specops.api.v1alpha1 import PlanStatus, ResolvedStatus, SpeculativeDeployment
from specops.render.meta import MODEL_CACHE, SERVER, labels, object_meta, selector_labels
from specops.render.model import RenderDecision, RenderError, RenderOptions
from specops.render.network import network_policy
from specops.render.pod import (
    cache_claim_name,
    cache_size_bytes,
    pod_template,
    shares_cache,
)
from specops.render.quantity import format_bytes
from specops.render.vllm_args import PORT


def _check(
    resource: SpeculativeDeployment,
    resolved: ResolvedStatus,
    plan: PlanStatus,
    decision: RenderDecision,
) -> None:
    if decision.replicas < 0:
        raise RenderError(f"replicas must not be negative, not {decision.replicas}")
    if plan.tensor_parallel_size < 1 or plan.gpus_per_replica != plan.tensor_parallel_size:
        raise RenderError(
            f"plan asks for {plan.gpus_per_replica} GPUs at tensor parallel size "
            f"{plan.tensor_parallel_size}; rendering needs one GPU per tensor-parallel rank"
        )
    if plan.max_model_len < 1:
        raise RenderError("plan.max_model_len must be positive")
    if resolved.verifier.model != resource.spec.verifier.model:
        raise RenderError(
            f"resolved verifier {resolved.verifier.model!r} is not spec.verifier.model "
            f"{resource.spec.verifier.model!r}"
        )
    if decision.speculation_active and (
        resource.spec.speculator is None or resolved.speculator is None
    ):
        raise RenderError("speculation is active but there is no resolved spec.speculator")
    if decision.speculation_active and resource.spec.speculation.mode == "Never":
        raise RenderError("speculation.mode is Never but the decision turns speculation on")


def deployment(
    resource: SpeculativeDeployment,
    resolved: ResolvedStatus,
    plan: PlanStatus,
    decision: RenderDecision,
    options: RenderOptions,
) -> dict[str, Any]:
    """The vLLM Deployment."""
    rollout = resource.spec.rollout
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(resource, resource.name, SERVER),
        "spec": {
            "replicas": decision.replicas,
            "selector": {"matchLabels": selector_labels(resource.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": rollout.max_surge,
                    "maxUnavailable": rollout.max_unavailable,
                },
            },
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": options.progress_deadline_seconds,
            "template": pod_template(
                resource,
                resolved,
                plan,
                decision,
                options,
                claim_labels=labels(resource.name, MODEL_CACHE),
            ),
        },
    }


def service(resource: SpeculativeDeployment) -> dict[str, Any]:
    """ClusterIP Service on port 8000 (``http``): the OpenAI API and ``/metrics``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(resource, resource.name, SERVER),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(resource.name),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def disruption_budget(resource: SpeculativeDeployment) -> dict[str, Any]:
    """One replica at a time may be evicted, so a node drain never takes the model offline
    when there is more than one replica, and never blocks when there is one."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(resource, resource.name, SERVER),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(resource.name)},
        },
    }


def cache_claim(resource: SpeculativeDeployment, plan: PlanStatus) -> dict[str, Any]:
    """The shared (ReadWriteMany) model-cache claim."""
    cache = resource.spec.model_cache
    spec: dict[str, Any] = {
        "accessModes": list(cache.access_modes),
        "resources": {"requests": {"storage": format_bytes(cache_size_bytes(resource, plan))}},
    }
    if cache.storage_class_name:
        spec["storageClassName"] = cache.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": object_meta(resource, cache_claim_name(resource), MODEL_CACHE),
        "spec": spec,
    }


def _endpoint(resource: SpeculativeDeployment) -> dict[str, Any]:
    return {"port": "http", "path": "/metrics", "interval": resource.spec.monitoring.interval}


def pod_monitor(resource: SpeculativeDeployment) -> dict[str, Any]:
    """Prometheus Operator PodMonitor scraping every vLLM pod (per-pod speculation metrics)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": object_meta(
            resource, resource.name, SERVER, extra_labels=resource.spec.monitoring.labels
        ),
        "spec": {
            "selector": {"matchLabels": selector_labels(resource.name)},
            "podMetricsEndpoints": [_endpoint(resource)],
        },
    }


def service_monitor(resource: SpeculativeDeployment) -> dict[str, Any]:
    """Prometheus Operator ServiceMonitor on the Service's ``http`` port."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": object_meta(
            resource, resource.name, SERVER, extra_labels=resource.spec.monitoring.labels
        ),
        "spec": {
            "selector": {"matchLabels": selector_labels(resource.name)},
            "endpoints": [_endpoint(resource)],
        },
    }


def render(
    resource: SpeculativeDeployment,
    resolved: ResolvedStatus,
    plan: PlanStatus,
    decision: RenderDecision,
    *,
    options: RenderOptions | None = None,
) -> list[dict[str, Any]]:
    """All child objects, in apply order: claim, Deployment, Service, PDB, monitors,
    NetworkPolicy.

    Raises :class:`RenderError` when the inputs contradict each other.
    """
    options = options or RenderOptions()
    _check(resource, resolved, plan, decision)
    objects: list[dict[str, Any]] = []
    if shares_cache(resource):
        objects.append(cache_claim(resource, plan))
    objects.append(deployment(resource, resolved, plan, decision, options))
    objects.append(service(resource))
    objects.append(disruption_budget(resource))
    if resource.spec.monitoring.pod_monitor:
        objects.append(pod_monitor(resource))
    if resource.spec.monitoring.service_monitor:
        objects.append(service_monitor(resource))
    if resource.spec.network_policy.enabled:
        objects.append(network_policy(resource, options))
    return objects
