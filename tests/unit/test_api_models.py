"""The SpeculativeDeployment models: defaults, aliases and the rules CEL mirrors."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from specops.api.errors import describe
from specops.api.v1alpha1 import (
    GPU_TYPES,
    PlanStatus,
    SpeculativeDeployment,
    SpeculativeDeploymentStatus,
)

MINIMAL: dict[str, Any] = {
    "apiVersion": "serving.specops.dev/v1alpha1",
    "kind": "SpeculativeDeployment",
    "metadata": {"name": "qwen3-8b", "namespace": "llm"},
    "spec": {
        "verifier": {"model": "Qwen/Qwen3-8B"},
        "speculator": {"model": "RedHatAI/Qwen3-8B-speculator.eagle3"},
        "gpu": {"type": "H100-80GB"},
    },
}


def with_spec(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL)
    doc["spec"].update(changes)
    return doc


def test_minimal_resource_gets_documented_defaults() -> None:
    sd = SpeculativeDeployment.model_validate(MINIMAL)
    assert sd.name == "qwen3-8b"
    assert sd.namespace == "llm"
    assert sd.spec.verifier.revision == "main"
    assert sd.spec.speculator is not None
    assert sd.spec.speculator.num_speculative_tokens is None
    assert sd.spec.gpu.resource_name == "nvidia.com/gpu"
    assert sd.spec.gpu_memory_utilization == 0.9
    assert (sd.spec.autoscaling.min_replicas, sd.spec.autoscaling.max_replicas) == (1, 1)
    assert sd.spec.speculation.mode == "Auto"
    assert sd.spec.model_cache.access_modes == ["ReadWriteOnce"]
    assert (sd.spec.rollout.max_surge, sd.spec.rollout.max_unavailable) == (0, 1)


def test_camel_case_round_trip() -> None:
    doc = with_spec(
        tensorParallelSize=2,
        gpu={"memoryGiB": 48, "resourceName": "amd.com/gpu"},
        autoscaling={"minReplicas": 1, "maxReplicas": 3, "targetITLMilliseconds": 20},
    )
    sd = SpeculativeDeployment.model_validate(doc)
    assert sd.spec.gpu.memory_gib == 48
    assert sd.spec.autoscaling.target_itl_milliseconds == 20
    dumped = sd.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["spec"]["gpu"]["memoryGiB"] == 48
    assert dumped["spec"]["autoscaling"]["targetITLMilliseconds"] == 20
    assert SpeculativeDeployment.model_validate(dumped) == sd


def test_speculator_block_is_optional_for_plain_serving() -> None:
    doc = copy.deepcopy(MINIMAL)
    del doc["spec"]["speculator"]
    assert SpeculativeDeployment.model_validate(doc).spec.speculator is None


INVALID = [
    pytest.param(
        {"gpu": {}}, "gpu.type or gpu.memoryGiB", id="a gpu needs a type or a memory size"
    ),
    pytest.param(
        {"gpu": {"type": "RTX-9999"}}, "H100-80GB", id="an unknown gpu type lists choices"
    ),
    pytest.param({"tensorParallelSize": 3}, "1, 2, 4 or 8", id="tensor parallel size 3 is refused"),
    pytest.param(
        {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}},
        "minReplicas must not exceed",
        id="min replicas above max replicas is refused",
    ),
    pytest.param(
        {"replicas": 2, "autoscaling": {"minReplicas": 1, "maxReplicas": 4}},
        "needs autoscaling off",
        id="pinned replicas conflict with the autoscaler",
    ),
    pytest.param(
        {"speculator": {"model": "x/y", "numSpeculativeTokens": 0}},
        "greater than or equal to 1",
        id="zero speculative tokens are refused",
    ),
    pytest.param(
        {"vllm": {"extraArgs": ["--tensor-parallel-size=2"]}},
        "flags the operator manages",
        id="extra args cannot override a managed flag",
    ),
    pytest.param(
        {"servedModelName": "--hf-overrides.x"},
        "should match pattern",
        id="a served model name cannot be read by vLLM as an option",
    ),
    pytest.param(
        {"vllm": {"env": [{"name": "HF_HUB_OFFLINE", "value": "0"}]}},
        "variables the operator manages",
        id="env cannot override a managed variable",
    ),
    pytest.param(
        {"modelCache": {"existingClaimName": "c", "size": "10Gi"}},
        "excludes size",
        id="an existing claim excludes a size",
    ),
    pytest.param(
        {"modelCache": {"size": "lots"}}, "not a Kubernetes quantity", id="a bad quantity"
    ),
    pytest.param(
        {"gpuMemoryUtilization": 1.5}, "less than or equal to 1", id="utilisation above 1"
    ),
    pytest.param({"replicas": "2"}, "valid integer", id="strings are not coerced to numbers"),
    pytest.param({"unknownField": 1}, "Extra inputs", id="a misspelt field is an error"),
    pytest.param(
        {"rollout": {"maxSurge": 0, "maxUnavailable": 0}},
        "cannot both be 0",
        id="a rollout that cannot progress",
    ),
    pytest.param(
        {"speculator": None, "speculation": {"mode": "Always"}},
        "Always needs spec.speculator",
        id="always speculating needs a speculator",
    ),
]


@pytest.mark.parametrize(("changes", "message"), INVALID)
def test_invalid_specs_are_refused_with_a_clear_message(
    changes: dict[str, Any], message: str
) -> None:
    doc = with_spec(**changes)
    if doc["spec"].get("speculator", ...) is None:
        del doc["spec"]["speculator"]
    with pytest.raises(ValidationError) as info:
        SpeculativeDeployment.model_validate(doc)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({}, "metadata.name is required"),
        ({"name": "Qwen3"}, "DNS label"),
        ({"name": "3qwen"}, "DNS label"),
        ({"name": "a" * 64}, "DNS label"),
    ],
    ids=["no name", "upper case", "leading digit", "too long for a Service"],
)
def test_metadata_name_must_be_usable_as_a_service_name(
    metadata: dict[str, Any], message: str
) -> None:
    doc = copy.deepcopy(MINIMAL)
    doc["metadata"] = metadata
    with pytest.raises(ValidationError, match=message):
        SpeculativeDeployment.model_validate(doc)


def test_status_parses_what_the_api_server_returns() -> None:
    status = SpeculativeDeploymentStatus.model_validate(
        {
            "observedGeneration": 3,
            "replicas": 2,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "ReplicasReady",
                    "message": "2/2 ready",
                    "lastTransitionTime": "2026-11-28T12:00:00Z",
                }
            ],
            "speculation": {"active": True, "numSpeculativeTokens": 3, "acceptanceRate": 0.61},
            "plan": {
                "tensorParallelSize": 1,
                "gpusPerReplica": 1,
                "gpuMemoryGiB": 80,
                "usableMemoryGiB": 72,
                "verifierWeightsGiB": 15.3,
                "activationReserveGiB": 4,
                "kvBudgetGiB": 52,
                "kvBytesPerToken": 147456,
                "maxModelLen": 40960,
                "maxConcurrentSequences": 9,
            },
        }
    )
    assert status.conditions[0].last_transition_time.year == 2026
    assert status.plan is not None and status.plan.kv_budget_gib == 52
    assert status.speculation is not None and status.speculation.acceptance_rate == 0.61


def test_plan_status_is_built_by_python_names() -> None:
    plan = PlanStatus(
        tensor_parallel_size=2,
        gpus_per_replica=2,
        gpu_type="A100-80GB",
        gpu_memory_gib=80,
        usable_memory_gib=144,
        verifier_weights_gib=61,
        speculator_weights_gib=1.9,
        activation_reserve_gib=6,
        kv_budget_gib=75,
        kv_bytes_per_token=262144,
        max_model_len=40960,
        max_concurrent_sequences=7,
        explanation=["..."],
    )
    assert plan.model_dump(by_alias=True)["kvBudgetGiB"] == 75


def test_gpu_enum_matches_the_catalogue() -> None:
    from specops import gpus

    assert sorted(GPU_TYPES) == sorted(gpus.CATALOGUE)


def test_validation_errors_read_as_one_line_per_field() -> None:
    doc = with_spec(gpu={}, tensorParallelSize=3)
    del doc["spec"]["verifier"]
    with pytest.raises(ValidationError) as info:
        SpeculativeDeployment.model_validate(doc)
    text = describe(info.value)
    assert "\n" not in text
    assert "spec.verifier: Field required" in text
    assert "spec.gpu: gpu.type or gpu.memoryGiB must be set" in text
    assert "spec.tensorParallelSize: tensorParallelSize must be 1, 2, 4 or 8" in text
