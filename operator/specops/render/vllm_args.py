"""The ``vllm serve`` command line.

The long form is used on purpose: ``vllm serve <verifier> --speculative-config
'{...}'``. Serving the speculator repo directly would make vLLM build the
speculative config itself and ignore ours, so neither k, nor the pinned
drafter revision, nor the per-batch-size table could be set (calibration.md,
"vLLM switches that matter"). Every flag and key written here is checked by a
test against the flag lists of the vLLM version the image runs.
"""

from __future__ import annotations

import json
from typing import Any

from specops.api.v1alpha1 import PlanStatus, ResolvedStatus, SpeculativeDeployment
from specops.render.model import RenderDecision, RenderError

PORT = 8000
DEFAULT_METHOD = "eagle3"


def speculative_config(
    resource: SpeculativeDeployment, resolved: ResolvedStatus, decision: RenderDecision
) -> dict[str, Any]:
    """The ``--speculative-config`` value as a dict (drafter pinned to its SHA)."""
    speculator = resource.spec.speculator
    if speculator is None or resolved.speculator is None:
        raise RenderError("speculation is active but the resource has no resolved spec.speculator")
    config: dict[str, Any] = {
        "method": speculator.method or DEFAULT_METHOD,
        "model": resolved.speculator.model,
        "revision": resolved.speculator.sha,
    }
    k = decision.num_speculative_tokens or speculator.num_speculative_tokens
    if k is not None:
        if k < 1:
            raise RenderError(f"num_speculative_tokens must be at least 1, not {k}")
        config["num_speculative_tokens"] = k
    if decision.speculative_table:
        bands = [[int(lo), int(hi), int(kk)] for lo, hi, kk in decision.speculative_table]
        for lo, hi, kk in bands:
            if lo < 1 or hi < lo or kk < 0:
                raise RenderError(f"bad num_speculative_tokens_per_batch_size band {[lo, hi, kk]}")
        config["num_speculative_tokens_per_batch_size"] = bands
    return config


def served_model_name(resource: SpeculativeDeployment) -> str:
    """The name clients send in ``model``; the verifier's repo id unless overridden."""
    return resource.spec.served_model_name or resource.spec.verifier.model


def vllm_args(
    resource: SpeculativeDeployment,
    resolved: ResolvedStatus,
    plan: PlanStatus,
    decision: RenderDecision,
) -> list[str]:
    """Arguments after ``vllm``: ``serve <verifier> --flag value ...`` then ``extraArgs``."""
    args = [
        "serve",
        resolved.verifier.model,
        "--revision",
        resolved.verifier.sha,
        "--served-model-name",
        served_model_name(resource),
        "--tensor-parallel-size",
        str(plan.tensor_parallel_size),
        "--max-model-len",
        str(plan.max_model_len),
        "--gpu-memory-utilization",
        str(resource.spec.gpu_memory_utilization),
        "--port",
        str(PORT),
    ]
    if decision.speculation_active:
        config = speculative_config(resource, resolved, decision)
        args += [
            "--speculative-config",
            json.dumps(config, sort_keys=True, separators=(",", ":")),
        ]
    return args + list(resource.spec.vllm.extra_args)
