"""The vLLM pod template: download init containers, the server, volumes, probes.

Models are fetched by init containers at their pinned SHAs into the cache
volume, and vLLM then runs with ``HF_HUB_OFFLINE=1``: a pod never serves a
revision other than the one in ``status.resolved``, and a Hub outage cannot
stop a restart once the cache is warm. The security context meets the
"restricted" Pod Security Standard without a fixed UID (platforms such as
OpenShift assign one); ``spec.podSecurity`` can pin IDs where the image's
default user is root.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from specops.api.v1alpha1 import PlanStatus, ResolvedStatus, SpeculativeDeployment
from specops.render.meta import (
    CONFIG_HASH_ANNOTATION,
    MANAGED_BY_LABEL,
    SPECULATION_LABEL,
    selector_labels,
)
from specops.render.model import RenderDecision, RenderOptions
from specops.render.quantity import GI, format_bytes, to_bytes
from specops.render.vllm_args import PORT, vllm_args

CACHE_VOLUME = "model-cache"
SHM_VOLUME = "dshm"
TMP_VOLUME = "tmp"
SHM_PER_GPU_GIB = 2
PROBE_PERIOD_SECONDS = 10
#: vLLM's environment variable for the API key (same as ``--api-key``).
API_KEY_ENV = "VLLM_API_KEY"


def container_security() -> dict[str, Any]:
    """The "restricted" container security context (a fresh dict: objects share nothing)."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def shared_memory_bytes(resource: SpeculativeDeployment, plan: PlanStatus) -> int:
    """``/dev/shm`` size: the user's, or 2 GiB per GPU (NCCL buffers grow with TP)."""
    if resource.spec.resources.shared_memory is not None:
        return to_bytes(resource.spec.resources.shared_memory)
    return SHM_PER_GPU_GIB * GI * max(1, plan.tensor_parallel_size)


def cache_size_bytes(resource: SpeculativeDeployment, plan: PlanStatus) -> int:
    """Cache claim size: the user's, or both models' weights x 1.25 + 10 GiB (tokenizers,
    configs, partial downloads), in whole GiB."""
    if resource.spec.model_cache.size is not None:
        return to_bytes(resource.spec.model_cache.size)
    weights = plan.verifier_weights_gib + plan.speculator_weights_gib
    return math.ceil(weights * 1.25 + 10) * GI


def _download_container(
    name: str,
    repo: str,
    sha: str,
    resource: SpeculativeDeployment,
    options: RenderOptions,
) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "HF_HOME", "value": f"{options.cache_mount_path}/hf"},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
        {"name": "HOME", "value": "/tmp"},
    ]
    if options.hf_endpoint:
        env.append({"name": "HF_ENDPOINT", "value": options.hf_endpoint})
    ref = resource.spec.hf_token_secret_ref
    if ref is not None:
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
        )
    command = ["hf", "download", repo, "--revision", sha]
    for pattern in options.download_exclude:
        command += ["--exclude", pattern]
    return {
        "name": name,
        "image": options.download_image or resource.spec.vllm.image,
        "imagePullPolicy": resource.spec.vllm.image_pull_policy,
        "command": command,
        "env": env,
        "resources": {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"memory": "8Gi"},
        },
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": CACHE_VOLUME, "mountPath": options.cache_mount_path},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
        ],
    }


def _probe(path: str, failure_threshold: int, timeout: int = 5) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": PROBE_PERIOD_SECONDS,
        "timeoutSeconds": timeout,
        "failureThreshold": failure_threshold,
    }


def _server_container(
    resource: SpeculativeDeployment,
    resolved: ResolvedStatus,
    plan: PlanStatus,
    decision: RenderDecision,
    options: RenderOptions,
) -> dict[str, Any]:
    spec = resource.spec
    gpus = str(plan.tensor_parallel_size)
    memory = to_bytes(spec.resources.memory)
    env: list[dict[str, Any]] = [
        {"name": "HF_HOME", "value": f"{options.cache_mount_path}/hf"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "DO_NOT_TRACK", "value": "1"},
    ]
    api_key = spec.vllm.api_key_secret_ref
    if api_key is not None:
        # vLLM reads VLLM_API_KEY as it reads --api-key; from the environment the key
        # stays out of the pod spec, the Deployment and `ps`.
        env.append(
            {
                "name": API_KEY_ENV,
                "valueFrom": {"secretKeyRef": {"name": api_key.name, "key": api_key.key}},
            }
        )
    env += [e.model_dump(by_alias=True, exclude_none=True) for e in spec.vllm.env]
    startup_failures = math.ceil(options.startup_timeout_seconds / PROBE_PERIOD_SECONDS)
    return {
        "name": "vllm",
        "image": spec.vllm.image,
        "imagePullPolicy": spec.vllm.image_pull_policy,
        "command": ["vllm"],
        "args": vllm_args(resource, resolved, plan, decision),
        "env": env,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {
                "cpu": str(spec.resources.cpu),
                "memory": format_bytes(memory),
                spec.gpu.resource_name: gpus,
            },
            # A memory-backed /dev/shm is charged to the pod's memory, so the limit covers it.
            "limits": {
                "memory": format_bytes(memory + shared_memory_bytes(resource, plan)),
                spec.gpu.resource_name: gpus,
            },
        },
        "startupProbe": _probe("/health", startup_failures),
        "readinessProbe": _probe("/health", 3),
        "livenessProbe": _probe("/health", 6, timeout=10),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": CACHE_VOLUME, "mountPath": options.cache_mount_path},
            {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
        ],
    }


def cache_volume(
    resource: SpeculativeDeployment, plan: PlanStatus, claim_labels: dict[str, str]
) -> dict[str, Any]:
    """The model-cache volume: the user's claim, the shared claim, or one ephemeral per pod."""
    cache = resource.spec.model_cache
    if cache.existing_claim_name:
        return {
            "name": CACHE_VOLUME,
            "persistentVolumeClaim": {"claimName": cache.existing_claim_name},
        }
    if shares_cache(resource):
        return {
            "name": CACHE_VOLUME,
            "persistentVolumeClaim": {"claimName": cache_claim_name(resource)},
        }
    claim_spec: dict[str, Any] = {
        "accessModes": list(cache.access_modes),
        "resources": {"requests": {"storage": format_bytes(cache_size_bytes(resource, plan))}},
    }
    if cache.storage_class_name:
        claim_spec["storageClassName"] = cache.storage_class_name
    return {
        "name": CACHE_VOLUME,
        "ephemeral": {
            "volumeClaimTemplate": {"metadata": {"labels": claim_labels}, "spec": claim_spec}
        },
    }


def shares_cache(resource: SpeculativeDeployment) -> bool:
    """Whether one rendered claim serves every replica (ReadWriteMany, no existing claim)."""
    cache = resource.spec.model_cache
    return cache.existing_claim_name is None and "ReadWriteMany" in cache.access_modes


def cache_claim_name(resource: SpeculativeDeployment) -> str:
    """Name of the shared cache claim."""
    return f"{resource.name}-model-cache"


def _node_selector(resource: SpeculativeDeployment) -> dict[str, str]:
    gpu = resource.spec.gpu
    selector = dict(gpu.node_selector)
    value = gpu.product_value or gpu.type
    if value:
        selector[gpu.product_label] = value
    return selector


def _tolerations(resource: SpeculativeDeployment) -> list[dict[str, Any]]:
    gpu = resource.spec.gpu
    default = {"key": gpu.resource_name, "operator": "Exists", "effect": "NoSchedule"}
    user = [t.model_dump(by_alias=True, exclude_none=True) for t in gpu.tolerations]
    return [default] + [t for t in user if t != default]


def _pod_security(resource: SpeculativeDeployment) -> dict[str, Any]:
    ids = resource.spec.pod_security
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if ids.run_as_user is not None:
        context["runAsUser"] = ids.run_as_user
    if ids.run_as_group is not None:
        context["runAsGroup"] = ids.run_as_group
    if ids.fs_group is not None:
        context["fsGroup"] = ids.fs_group
        context["fsGroupChangePolicy"] = "OnRootMismatch"
    return context


def config_hash(pod_spec: dict[str, Any]) -> str:
    """A short, stable digest of the pod spec, to see at a glance which config a pod runs."""
    canonical = json.dumps(pod_spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def pod_template(
    resource: SpeculativeDeployment,
    resolved: ResolvedStatus,
    plan: PlanStatus,
    decision: RenderDecision,
    options: RenderOptions,
    claim_labels: dict[str, str],
) -> dict[str, Any]:
    """The Deployment's pod template."""
    init = [
        _download_container(
            "download-verifier", resolved.verifier.model, resolved.verifier.sha, resource, options
        )
    ]
    if resolved.speculator is not None and resource.spec.speculation.mode != "Never":
        init.append(
            _download_container(
                "download-speculator",
                resolved.speculator.model,
                resolved.speculator.sha,
                resource,
                options,
            )
        )
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        # Service links would inject VLLM_PORT=tcp://... for a Service named "vllm",
        # which vLLM reads as its own setting and fails on.
        "enableServiceLinks": False,
        "securityContext": _pod_security(resource),
        "initContainers": init,
        "containers": [_server_container(resource, resolved, plan, decision, options)],
        "nodeSelector": _node_selector(resource),
        "tolerations": _tolerations(resource),
        "terminationGracePeriodSeconds": options.termination_grace_period_seconds,
        "volumes": [
            cache_volume(resource, plan, claim_labels),
            {
                "name": SHM_VOLUME,
                "emptyDir": {
                    "medium": "Memory",
                    "sizeLimit": format_bytes(shared_memory_bytes(resource, plan)),
                },
            },
            {"name": TMP_VOLUME, "emptyDir": {}},
        ],
    }
    if not spec["nodeSelector"]:
        del spec["nodeSelector"]
    return {
        "metadata": {
            "labels": {
                **selector_labels(resource.name),
                MANAGED_BY_LABEL: "specops",
                SPECULATION_LABEL: "on" if decision.speculation_active else "off",
            },
            "annotations": {
                CONFIG_HASH_ANNOTATION: config_hash(spec),
                "kubectl.kubernetes.io/default-container": "vllm",
            },
        },
        "spec": spec,
    }
