"""The policy seam and the compatibility verdicts on the real fixture configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from specops.api.v1alpha1 import SpeculativeDeployment, SpeculativeDeploymentSpec
from specops.controller import checks
from specops.controller.decision import decide, desired_replicas, drafter_default_k
from specops.hub import Resolver

ROOT = Path(__file__).resolve().parents[2]
MIRROR = ROOT / "tests" / "fixtures" / "hub"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


def spec(**kw: Any) -> SpeculativeDeploymentSpec:
    base: dict[str, Any] = {
        "verifier": {"model": "Qwen/Qwen3-8B"},
        "speculator": {"model": "RedHatAI/Qwen3-8B-speculator.eagle3"},
        "gpu": {"type": "H100-80GB"},
    }
    base.update(kw)
    return SpeculativeDeploymentSpec.model_validate(base)


def resolve(ref: str) -> Any:
    return Resolver().resolve(ref, mirror_dir=MIRROR)


DRAFTER = resolve("RedHatAI/Qwen3-8B-speculator.eagle3")


@pytest.mark.parametrize(
    ("kw", "active", "k", "reason"),
    [
        pytest.param({}, True, 3, "AutoInitial", id="auto-starts-on-with-the-drafters-k"),
        pytest.param({"speculation": {"mode": "Always"}}, True, 3, "ModeAlways", id="always-is-on"),
        pytest.param(
            {
                "speculator": {
                    "model": "RedHatAI/Qwen3-8B-speculator.eagle3",
                    "numSpeculativeTokens": 5,
                }
            },
            True,
            5,
            "AutoInitial",
            id="k-from-the-spec-wins-over-the-drafter",
        ),
        pytest.param(
            {"speculation": {"mode": "Never"}}, False, None, "ModeNever", id="never-is-off"
        ),
        pytest.param(
            {"speculator": None}, False, None, "NoSpeculator", id="no-drafter-is-plain-serving"
        ),
    ],
)
def test_speculation_decision(kw: dict[str, Any], active: bool, k: int | None, reason: str) -> None:
    render_decision, verdict, _ = decide(spec(**kw), DRAFTER.config)
    assert (render_decision.speculation_active, render_decision.num_speculative_tokens) == (
        active,
        k,
    )
    assert (verdict.active, verdict.num_speculative_tokens, verdict.reason) == (active, k, reason)


def test_replicas_are_pinned_or_the_autoscaler_floor() -> None:
    assert desired_replicas(spec(replicas=3, autoscaling={"minReplicas": 2, "maxReplicas": 2})) == (
        3,
        "Pinned",
    )
    assert desired_replicas(spec(autoscaling={"minReplicas": 2, "maxReplicas": 5})) == (
        2,
        "MinReplicas",
    )


def test_drafter_default_k_ignores_junk() -> None:
    assert drafter_default_k(None) is None
    assert drafter_default_k({"speculators_config": {"proposal_methods": "x"}}) is None
    assert drafter_default_k({"num_speculative_tokens": True}) is None
    assert drafter_default_k({"num_lookahead_tokens": 4}) == 4


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_is_compatible_and_planned(path: Path) -> None:
    resource = SpeculativeDeployment.model_validate(yaml.safe_load(path.read_text()))
    verifier = resolve(resource.spec.verifier.model)
    drafter = resolve(resource.spec.speculator.model) if resource.spec.speculator else None
    result = checks.check(resource.spec, verifier, drafter)
    assert result.verdict.status == "True", result.verdict.message
    assert result.plan is not None and result.plan.gpus_per_replica >= 1


@pytest.mark.parametrize(
    ("kw", "drafter", "reason"),
    [
        pytest.param(
            {"speculator": {"model": "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"}},
            "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3",
            "VerifierMismatch",
            id="a-drafter-trained-for-another-verifier-is-incompatible",
        ),
        pytest.param(
            {
                "verifier": {"model": "meta-llama/Llama-3.3-70B-Instruct"},
                "speculator": None,
                "gpu": {"type": "L4-24GB"},
            },
            None,
            "InsufficientGpuMemory",
            id="a-70b-model-does-not-fit-on-l4s",
        ),
        pytest.param(
            {"tensorParallelSize": 8, "verifier": {"model": "Qwen/Qwen3-8B"}, "speculator": None},
            None,
            None,
            id="tp-8-divides-qwen3-8b-heads",
        ),
    ],
)
def test_incompatible_specs_get_the_first_error_as_reason(
    kw: dict[str, Any], drafter: str | None, reason: str | None
) -> None:
    s = spec(**kw)
    result = checks.check(s, resolve(s.verifier.model), resolve(drafter) if drafter else None)
    if reason is None:
        assert result.verdict.status == "True", result.verdict.message
    else:
        assert (result.verdict.status, result.verdict.reason) == ("False", reason), (
            result.verdict.message
        )
        assert result.plan is None


def test_memory_override_of_a_catalogue_gpu() -> None:
    gpu = checks.gpu_type(spec(gpu={"type": "A100-40GB", "memoryGiB": 80}).gpu)
    assert gpu.memory_gib == 80
