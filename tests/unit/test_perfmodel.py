"""The step-time physics: monotone in load, honest about speculation, cheap to call."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from specops import gpus, modelarch
from specops import perfmodel as pm

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"


def arch(ref: str) -> modelarch.ModelArch:
    return modelarch.from_config(json.loads((HUB / ref / "config.json").read_text()))


@pytest.fixture(scope="module")
def llama8b() -> pm.Replica:
    return pm.Replica.build(
        arch("meta-llama/Llama-3.1-8B-Instruct"),
        gpus.lookup("H100"),
        1,
        arch("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"),
    )


def test_batch_one_step_is_weights_over_bandwidth_plus_overhead(llama8b: pm.Replica) -> None:
    eff = pm.DEFAULT
    weights = llama8b.verifier.dense_bytes / (3.35e12 * eff.bandwidth)
    step = pm.decode_step_seconds(llama8b, 1, 0, 0, eff)
    gemm = llama8b.verifier.flops_per_token / (989e12 * eff.compute)
    host = eff.overhead_ms / 1e3 + eff.per_seq_us / 1e6
    assert step == pytest.approx(weights + gemm + host)


def test_step_time_grows_with_batch_context_and_k(llama8b: pm.Replica) -> None:
    base = pm.decode_step_seconds(llama8b, 8, 1000)
    assert pm.decode_step_seconds(llama8b, 16, 1000) > base
    assert pm.decode_step_seconds(llama8b, 8, 4000) > base
    assert pm.decode_step_seconds(llama8b, 8, 1000, k=3) > pm.decode_step_seconds(
        llama8b, 8, 1000, k=2
    )


def test_tensor_parallelism_splits_weights_but_adds_allreduces() -> None:
    v = arch("meta-llama/Llama-3.3-70B-Instruct")
    h100 = gpus.lookup("H100")
    tp1, tp4 = pm.Replica.build(v, h100, 1), pm.Replica.build(v, h100, 4)
    assert tp4.verifier.dense_bytes == pytest.approx(tp1.verifier.dense_bytes / 4)
    assert tp1.verifier.allreduces == 0 and tp4.verifier.allreduces == 2 * v.num_layers
    t1, t4 = pm.decode_step_seconds(tp1, 1, 100), pm.decode_step_seconds(tp4, 1, 100)
    assert t4 < t1 / 2  # weights dominate; comm costs less than the saving


def test_moe_verification_touches_more_experts() -> None:
    moe = pm.ModelCosts.of(arch("openai/gpt-oss-20b"), 1)
    assert moe.touched_experts(1) == pytest.approx(4)
    assert 4 < moe.touched_experts(4) < 16
    assert moe.touched_experts(10_000) == pytest.approx(32)


def test_expected_tokens_matches_leviathan_for_flat_alpha() -> None:
    assert pm.expected_tokens_per_step(0.8, 3) == pytest.approx((1 - 0.8**4) / 0.2)
    assert pm.expected_tokens_per_step([0.8, 0.8, 0.8], 3) == pytest.approx((1 - 0.8**4) / 0.2)
    assert pm.expected_tokens_per_step(0.8, 0) == 1.0
    assert pm.expected_tokens_per_step(1.0, 4) == 5.0


def test_speculation_helps_at_batch_one_and_less_at_high_batch(llama8b: pm.Replica) -> None:
    alpha = 0.75

    def speedup(batch: int) -> float:
        on = pm.throughput_tokens_per_second(llama8b, batch, 1000, 3, alpha)
        off = pm.throughput_tokens_per_second(llama8b, batch, 1000, 0, alpha)
        return on / off

    assert speedup(1) > 1.5
    assert speedup(256) < speedup(1)
    assert pm.best_k(llama8b, 1, 1000, alpha) >= 2


def test_perturbed_scales_a_step_by_about_the_factor(llama8b: pm.Replica) -> None:
    slow = pm.DEFAULT.perturbed(2.0)
    ratio = pm.decode_step_seconds(llama8b, 4, 1000, 3, slow) / pm.decode_step_seconds(
        llama8b, 4, 1000, 3, pm.DEFAULT
    )
    assert ratio == pytest.approx(2.0, rel=0.05)
    with pytest.raises(ValueError, match="positive"):
        pm.DEFAULT.perturbed(0)
    with pytest.raises(ValueError, match="bandwidth"):
        pm.Efficiencies(bandwidth=1.5)


def test_defaults_fall_back_to_h100_and_moe_loses_compute() -> None:
    assert pm.default_efficiencies("L4-24GB") == pm.DEFAULT
    assert pm.default_efficiencies("H100-80GB", "moe").compute < pm.DEFAULT.compute


def test_a_prediction_costs_microseconds(llama8b: pm.Replica) -> None:
    start = time.perf_counter()
    for batch in range(1, 1001):
        pm.decode_step_seconds(llama8b, batch, 1000, 3)
    assert time.perf_counter() - start < 0.5


def test_sglang_hides_host_work_in_plain_decode_but_not_under_eagle(llama8b: pm.Replica) -> None:
    vllm, sglang = llama8b.default_efficiencies(), llama8b.default_efficiencies("sglang")
    assert vllm == pm.default_efficiencies("H100-80GB", "dense", "vllm") == pm.DEFAULT
    # Device terms are the hardware's; only host costs differ by framework.
    assert (sglang.bandwidth, sglang.compute) == (vllm.bandwidth, vllm.compute)
    # Overlap scheduler: a plain decode step is cheaper (SGLang's 158 tokens/s at batch 1) ...
    plain = pm.decode_step_seconds(llama8b, 1, 300, 0, sglang)
    assert plain < pm.decode_step_seconds(llama8b, 1, 300, 0, vllm)
    assert 1 / plain == pytest.approx(158, rel=0.05)
    # ... while EAGLE turns it off, so speculative steps grow faster with the batch.
    growth = {
        name: pm.decode_step_seconds(llama8b, 64, 1024, 3, eff)
        - pm.decode_step_seconds(llama8b, 2, 1024, 3, eff)
        for name, eff in (("vllm", vllm), ("sglang", sglang))
    }
    assert growth["sglang"] > growth["vllm"]
    moe = pm.default_efficiencies("H100-80GB", "moe", "sglang")
    assert moe.overhead_ms == pytest.approx(sglang.overhead_ms + pm.MOE_EXTRA_OVERHEAD_MS)
    with pytest.raises(ValueError, match="framework"):
        pm.default_efficiencies("H100-80GB", "dense", "tgi")
