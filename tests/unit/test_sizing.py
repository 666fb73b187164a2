"""GPU sizing: the TP each released pair gets, and the arithmetic that justifies it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specops import gpus
from specops.modelarch import GIB, KIB, SafetensorsInfo, from_config
from specops.sizing import (
    DEFAULT_MIN_CONCURRENT_SEQUENCES,
    SizingError,
    activation_reserve_gib,
    plan,
    tp_compatible,
)

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"


def load(repo: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HUB / repo / "config.json").read_text())
    return data


H100 = gpus.lookup("H100-80GB")
A100 = gpus.lookup("A100-80GB")


@pytest.mark.parametrize(
    ("verifier", "drafter", "gpu", "tp"),
    [
        ("Qwen/Qwen3-8B", "RedHatAI/Qwen3-8B-speculator.eagle3", H100, 1),
        ("Qwen/Qwen3-32B", "RedHatAI/Qwen3-32B-speculator.eagle3", H100, 2),
        (
            "meta-llama/Llama-3.1-8B-Instruct",
            "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3",
            H100,
            1,
        ),
        (
            "meta-llama/Llama-3.3-70B-Instruct",
            "RedHatAI/Llama-3.3-70B-Instruct-speculator.eagle3",
            A100,
            4,
        ),
        ("openai/gpt-oss-20b", "RedHatAI/gpt-oss-20b-speculator.eagle3", H100, 1),
    ],
    ids=[
        "qwen3-8b on one H100",
        "qwen3-32b on two H100",
        "llama-8b on one H100",
        "llama-70b on four A100 like the release",
        "gpt-oss-20b on one H100",
    ],
)
def test_released_pairs_get_the_expected_tensor_parallel_size(
    verifier: str, drafter: str, gpu: gpus.GpuType, tp: int
) -> None:
    result = plan(load(verifier), load(drafter), gpu)
    assert result.tensor_parallel_size == tp
    assert result.gpus_per_replica == tp
    assert result.max_concurrent_sequences >= DEFAULT_MIN_CONCURRENT_SEQUENCES


def test_budget_adds_up_and_is_explained() -> None:
    result = plan(load("Qwen/Qwen3-8B"), load("RedHatAI/Qwen3-8B-speculator.eagle3"), H100)
    assert result.usable_memory_gib == pytest.approx(79.2 * 0.9)
    assert result.kv_budget_gib == pytest.approx(
        result.usable_memory_gib
        - result.verifier_weights_gib
        - result.speculator_weights_gib
        - result.activation_reserve_gib,
        abs=0.01,
    )
    # 144 KiB verifier + 4 KiB for the drafter's single layer
    assert result.kv_bytes_per_token == 148 * KIB
    assert result.max_model_len == 32768  # min(40960, 32768)
    per_seq = result.kv_bytes_per_token * result.max_model_len
    assert result.max_concurrent_sequences == math.floor(result.kv_budget_gib * GIB / per_seq)
    text = "\n".join(result.explanation)
    for needle in ("15.26 GiB", "1.90 GiB", "71.28 GiB", "KV budget", "TP 1"):
        assert needle in text


def test_qwen3_32b_explains_why_one_gpu_is_not_enough() -> None:
    result = plan(load("Qwen/Qwen3-32B"), None, H100)
    assert result.tensor_parallel_size == 2
    assert any(line.startswith("TP 1 rejected") for line in result.explanation)


def test_shorter_context_lets_qwen3_32b_fit_one_gpu() -> None:
    result = plan(load("Qwen/Qwen3-32B"), None, H100, max_model_len=2048)
    assert result.tensor_parallel_size == 1
    assert result.max_model_len == 2048


def test_gpt_oss_sliding_layers_keep_the_kv_small() -> None:
    result = plan(load("openai/gpt-oss-20b"), None, H100)
    assert 12.8 <= result.verifier_weights_gib <= 13.8
    assert result.kv_bytes_per_token == 24 * KIB
    assert result.max_concurrent_sequences > 50


def test_exact_safetensors_bytes_replace_the_estimate() -> None:
    exact = SafetensorsInfo({"BF16": 9_000_000_000})
    result = plan(load("meta-llama/Llama-3.1-8B-Instruct"), None, H100, verifier_safetensors=exact)
    assert result.verifier_weights_gib == pytest.approx(18e9 / GIB, abs=0.001)
    assert any("safetensors metadata" in line for line in result.explanation)


def test_explicit_tp_is_honoured_even_when_smaller_would_do() -> None:
    result = plan(load("meta-llama/Llama-3.1-8B-Instruct"), None, H100, tensor_parallel_size=4)
    assert result.tensor_parallel_size == 4


@pytest.mark.parametrize(
    ("tp", "message"),
    [(3, "not divisible by TP 3"), (16, "outside 1..8"), (0, "outside 1..8")],
)
def test_impossible_explicit_tp_is_an_error(tp: int, message: str) -> None:
    with pytest.raises(SizingError, match=message):
        plan(load("meta-llama/Llama-3.1-8B-Instruct"), None, H100, tensor_parallel_size=tp)


def test_explicit_tp_too_small_says_the_memory_does_not_fit() -> None:
    with pytest.raises(SizingError, match=r"tensorParallelSize 1 does not work.*exceed"):
        plan(load("meta-llama/Llama-3.3-70B-Instruct"), None, A100, tensor_parallel_size=1)


def test_model_beyond_one_node_says_multi_node_is_not_supported() -> None:
    with pytest.raises(SizingError, match="multi-node"):
        plan(load("meta-llama/Llama-4-Maverick-17B-128E-Instruct"), None, H100)


def test_no_fit_suggests_a_context_that_would_fit() -> None:
    with pytest.raises(SizingError, match=r"maxModelLen of \d+ would fit"):
        plan(load("meta-llama/Llama-3.3-70B-Instruct"), None, gpus.lookup("L4"))


def test_tp_must_divide_query_heads() -> None:
    arch = from_config(dict(load("Qwen/Qwen3-8B"), num_attention_heads=28, num_key_value_heads=4))
    assert tp_compatible(arch, 4) is None
    assert tp_compatible(arch, 8) == "28 attention heads are not divisible by TP 8"


def test_tp_must_divide_or_be_divided_by_kv_heads() -> None:
    arch = from_config(dict(load("Qwen/Qwen3-8B"), num_attention_heads=48, num_key_value_heads=6))
    assert tp_compatible(arch, 2) is None
    assert tp_compatible(arch, 4) == "6 KV heads neither divide nor are divisible by TP 4"


def test_heads_that_no_tp_divides_make_a_model_that_needs_tp_unservable() -> None:
    cfg = dict(load("Qwen/Qwen3-32B"), num_attention_heads=45, num_key_value_heads=9)
    with pytest.raises(SizingError, match="45 attention heads are not divisible by TP 2"):
        plan(cfg, None, H100)


def test_kv_heads_fewer_than_tp_are_replicated() -> None:
    cfg = dict(load("meta-llama/Llama-3.1-8B-Instruct"), num_key_value_heads=2)
    arch = from_config(cfg)
    assert tp_compatible(arch, 8) is None
    result = plan(cfg, None, H100, tensor_parallel_size=8)
    assert result.kv_bytes_per_token == arch.kv_bytes_per_token() * 4


def test_reserve_grows_with_vocab_and_shrinks_with_tp() -> None:
    arch = from_config(load("Qwen/Qwen3-32B"))
    assert activation_reserve_gib(arch, 1) > activation_reserve_gib(arch, 8) > 1.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gpu_memory_utilization": 0.0},
        {"gpu_memory_utilization": 1.5},
        {"max_model_len": 0},
        {"min_concurrent_sequences": 0},
    ],
)
def test_bad_settings_are_sizing_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SizingError):
        plan(load("Qwen/Qwen3-8B"), None, H100, **kwargs)


def test_custom_gpu_memory() -> None:
    card = gpus.custom(24.0)
    result = plan(load("Qwen/Qwen3-8B"), None, card, max_model_len=4096)
    assert result.gpu_memory_gib == 24.0
    assert result.tensor_parallel_size == 1
    # 4 GiB less and the 15 GiB of weights no longer leave room: TP 2.
    assert (
        plan(
            load("Qwen/Qwen3-8B"), None, gpus.custom(20.0), max_model_len=4096
        ).tensor_parallel_size
        == 2
    )


@settings(max_examples=200, deadline=None)
@given(
    repo=st.sampled_from(
        [
            "Qwen/Qwen3-8B",
            "Qwen/Qwen3-32B",
            "meta-llama/Llama-3.1-8B-Instruct",
            "meta-llama/Llama-3.3-70B-Instruct",
            "openai/gpt-oss-20b",
        ]
    ),
    gpu=st.sampled_from(list(gpus.CATALOGUE.values())),
    length=st.integers(1, 131072),
    utilisation=st.floats(0.3, 0.98),
)
def test_any_plan_fits_its_own_budget(
    repo: str, gpu: gpus.GpuType, length: int, utilisation: float
) -> None:
    try:
        result = plan(
            load(repo), None, gpu, max_model_len=length, gpu_memory_utilization=utilisation
        )
    except SizingError as exc:
        assert "TP" in str(exc)
        return
    assert result.tensor_parallel_size in (1, 2, 4, 8)
    assert result.kv_budget_gib > 0
    used = result.verifier_weights_gib + result.activation_reserve_gib + result.kv_budget_gib
    assert used <= result.usable_memory_gib + 0.01
    assert result.max_concurrent_sequences >= DEFAULT_MIN_CONCURRENT_SEQUENCES
    # Monotone: a smaller TP that divides the heads would not have fitted.
    for smaller in (1, 2, 4):
        if smaller < result.tensor_parallel_size:
            assert any(line.startswith(f"TP {smaller} rejected") for line in result.explanation)
