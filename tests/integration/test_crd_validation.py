"""The generated CRD on the real API server: bad resources are refused with clear messages.

The CRD in ``crds/`` is applied as a user would; every resource is created
with a server-side dry run, so nothing is left behind and no operator runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_harness import (
    EXAMPLES,
    GROUP,
    PLURAL,
    VERSION,
    example,
    install_crd,
    qwen_spec,
    resource,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def custom(kube_cluster: Any) -> Iterator[client.CustomObjectsApi]:
    with kube_cluster.api_client() as api:
        install_crd(api)
        yield client.CustomObjectsApi(api)


def create(custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> Any:
    return custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, dry_run="All"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_is_accepted(
    path: Path, custom: client.CustomObjectsApi, namespace: str
) -> None:
    created = create(custom, namespace, example(path))
    assert created["spec"]["verifier"]["model"]


def test_defaults_are_filled_in_by_the_server(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    created = create(custom, namespace, resource("defaults", qwen_spec()))
    spec = created["spec"]
    assert spec["autoscaling"]["minReplicas"] == 1 and spec["autoscaling"]["maxReplicas"] == 1
    assert spec["verifier"]["revision"] == "main"
    assert spec["gpuMemoryUtilization"] == 0.9


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        pytest.param(
            {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}},
            "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
            id="min-replicas-above-max-is-refused",
        ),
        pytest.param(
            {"speculation": {"mode": "Sometimes"}},
            'Unsupported value: "Sometimes"',
            id="an-unknown-speculation-mode-is-refused",
        ),
        pytest.param(
            {
                "speculator": {
                    "model": "RedHatAI/Qwen3-8B-speculator.eagle3",
                    "numSpeculativeTokens": -1,
                }
            },
            "numSpeculativeTokens",
            id="a-negative-k-is-refused",
        ),
        pytest.param(
            {"tensorParallelSize": 3},
            "tensorParallelSize must be 1, 2, 4 or 8",
            id="tp-3-is-refused",
        ),
        pytest.param(
            {"replicas": 2, "autoscaling": {"minReplicas": 1, "maxReplicas": 4}},
            "spec.replicas (the scale subresource) needs autoscaling off",
            id="pinned-replicas-with-the-autoscaler-on-is-refused",
        ),
        pytest.param(
            {"speculator": None, "speculation": {"mode": "Always"}},
            "speculation.mode Always needs spec.speculator",
            id="always-speculating-without-a-drafter-is-refused",
        ),
        pytest.param(
            {"vllm": {"extraArgs": ["--tensor-parallel-size=2"]}},
            "vllm.extraArgs may not set flags the operator manages",
            id="extra-args-may-not-override-managed-flags",
        ),
        pytest.param(
            {"gpu": {"resourceName": "nvidia.com/gpu"}},
            "gpu.type or gpu.memoryGiB must be set",
            id="a-gpu-without-type-or-memory-is-refused",
        ),
    ],
)
def test_invalid_resources_are_refused_with_a_clear_message(
    overrides: dict[str, Any], fragment: str, custom: client.CustomObjectsApi, namespace: str
) -> None:
    spec = qwen_spec(**overrides)
    spec = {k: v for k, v in spec.items() if v is not None}
    with pytest.raises(ApiException) as info:
        create(custom, namespace, resource("invalid", spec))
    assert info.value.status == 422
    message = json.loads(info.value.body)["message"]
    assert fragment in message, message


MANAGED_FLAGS_REFUSED = "vllm.extraArgs may not set flags the operator manages"


@pytest.mark.parametrize(
    "extra_args",
    [
        pytest.param(["--tensor_parallel_size=8"], id="underscores"),
        pytest.param(["-tp", "4"], id="short-alias"),
        pytest.param(["--tensor-parallel=8"], id="abbreviation-equals"),
        pytest.param(["--max-model", "77"], id="abbreviation"),
        pytest.param(["-sc", '{"method":"ngram"}'], id="short-alias-sc"),
        pytest.param(["--speculative_config", '{"method":"ngram"}'], id="underscore-json"),
        pytest.param(["--speculative-config.num_speculative_tokens", "9"], id="dotted-key"),
        pytest.param(["--config", "/etc/vllm.yaml"], id="config-file"),
        pytest.param(["--enable-prefix-caching", "--port=9000"], id="port-after-a-normal-arg"),
        pytest.param(["--gpu_mem=0.5"], id="gpu-memory"),
        pytest.param(["--device-memory-utilization", "0.5"], id="alias"),
        pytest.param(["--model=other/model"], id="model"),
        pytest.param(["--rev", "main"], id="revision"),
        pytest.param(["--served_model_name", "x"], id="served-model-name"),
        pytest.param(["-t=4"], id="single-dash-abbreviation"),
    ],
)
def test_managed_flags_are_refused_at_admission_in_common_spellings(
    extra_args: list[str], custom: client.CustomObjectsApi, namespace: str
) -> None:
    """The CRD's regex (built from vLLM's option table) is accepted by the API server's
    CEL cost estimate and refuses the spellings from vLLM 0.33.0's README table."""
    spec = qwen_spec(vllm={"extraArgs": extra_args})
    with pytest.raises(ApiException) as info:
        create(custom, namespace, resource("flags", spec))
    assert info.value.status == 422
    assert MANAGED_FLAGS_REFUSED in json.loads(info.value.body)["message"]


@pytest.mark.parametrize(
    "extra_args",
    [
        pytest.param(["--max-num-seqs", "64"], id="ordinary"),
        pytest.param(["--enable-prefix-caching"], id="flag"),
        pytest.param(["-O3", "--seed=1", "--no-enforce-eager"], id="several"),
        pytest.param(["--compilation-config.mode", "3"], id="dotted-key-of-an-unmanaged-flag"),
        pytest.param(["--model-impl", "vllm"], id="longer-than-a-managed-flag"),
        pytest.param(
            ["--long-prefill-token-threshold=" + "1" * 993] * 64,
            id="the-most-the-schema-allows-fits-the-cel-cost-limit",
        ),
    ],
)
def test_ordinary_extra_args_are_accepted_at_admission(
    extra_args: list[str], custom: client.CustomObjectsApi, namespace: str
) -> None:
    created = create(
        custom, namespace, resource("ordinary", qwen_spec(vllm={"extraArgs": extra_args}))
    )
    assert created["spec"]["vllm"]["extraArgs"] == extra_args
