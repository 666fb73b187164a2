"""Architecture facts from config.json, checked against published numbers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from specops.modelarch import GIB, KIB, ConfigError, SafetensorsInfo, from_config

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"


def load(repo: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HUB / repo / "config.json").read_text())
    return data


@pytest.mark.parametrize(
    ("repo", "billions"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", 8.03),
        ("meta-llama/Llama-3.3-70B-Instruct", 70.6),
        ("Qwen/Qwen3-8B", 8.19),
        ("Qwen/Qwen3-32B", 32.8),
        ("openai/gpt-oss-20b", 20.9),
        ("meta-llama/Llama-4-Maverick-17B-128E-Instruct", 400.0),
    ],
)
def test_total_parameters_match_published_totals(repo: str, billions: float) -> None:
    assert from_config(load(repo)).param_count() / 1e9 == pytest.approx(billions, rel=0.005)


def test_gpt_oss_active_parameters_match_openai_count_without_embedding() -> None:
    arch = from_config(load("openai/gpt-oss-20b"))
    assert arch.active_param_count() / 1e9 == pytest.approx(3.61, rel=0.01)


def test_maverick_active_parameters_match_meta_count_with_embedding() -> None:
    arch = from_config(load("meta-llama/Llama-4-Maverick-17B-128E-Instruct"))
    assert arch.num_moe_layers == 24  # every second layer, interleave_moe_layer_step = 2
    assert arch.num_shared_experts == 1
    assert arch.active_param_count(include_embedding=True) / 1e9 == pytest.approx(17.0, rel=0.02)


def test_gpt_oss_mxfp4_checkpoint_is_about_13_gib() -> None:
    arch = from_config(load("openai/gpt-oss-20b"))
    assert arch.quantization == "mxfp4"
    assert 12.8 <= arch.weight_bytes() / GIB <= 13.8
    # Without the quantization the same parameters would take ~39 GiB in BF16.
    dense = from_config(
        {k: v for k, v in load("openai/gpt-oss-20b").items() if k != "quantization_config"}
    )
    assert dense.weight_bytes() / GIB == pytest.approx(20.91e9 * 2 / GIB, rel=0.01)


@pytest.mark.parametrize(
    ("repo", "kib"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", 128),
        ("Qwen/Qwen3-8B", 144),
        ("Qwen/Qwen3-32B", 256),
        ("meta-llama/Llama-3.3-70B-Instruct", 320),
    ],
)
def test_kv_bytes_per_token_match_calibration(repo: str, kib: int) -> None:
    assert from_config(load(repo)).kv_bytes_per_token() == kib * KIB


def test_gpt_oss_sliding_layers_cap_their_cache_at_the_window() -> None:
    arch = from_config(load("openai/gpt-oss-20b"))
    assert (arch.num_sliding_layers, arch.sliding_window, arch.attention_sinks) == (12, 128, True)
    assert arch.kv_bytes_per_token() == 12 * 2 * 8 * 64 * 2
    short, long = arch.kv_bytes_per_sequence(100), arch.kv_bytes_per_sequence(10_000)
    assert short == 100 * 24 * 2 * 8 * 64 * 2
    assert long == 10_000 * arch.kv_bytes_per_token() + 128 * 12 * 2 * 8 * 64 * 2


def test_eagle3_drafter_counts_fc_own_lm_head_and_verifier_embedding() -> None:
    arch = from_config(load("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"))
    assert arch.is_drafter and arch.num_layers == 1
    assert arch.drafter is not None and arch.drafter.draft_vocab_size == 32000
    h = 4096
    attention = 2 * h * (4096 + 2 * 1024) + 4096 * h  # q/k/v read [embedding; hidden]
    mlp = 3 * h * 14336
    fc = 3 * h * h
    lm_head = 32000 * h
    embed = 128256 * h
    norms = 3 * h
    assert arch.param_count() == attention + mlp + fc + lm_head + embed + norms
    assert arch.lm_head_params() == lm_head
    # d2t/t2d map the 32000 draft tokens to the 128256 verifier tokens: buffers, not params.
    assert arch.mapping_tensor_bytes() == 8 * 32000 + 128256
    assert arch.weight_bytes() == arch.param_count() * 2 + 8 * 32000 + 128256


def test_full_vocabulary_drafter_has_no_mapping_tensors() -> None:
    cfg = load("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3")
    cfg["draft_vocab_size"] = 128256
    assert from_config(cfg).mapping_tensor_bytes() == 0


def test_old_and_new_speculators_layouts_parse_alike() -> None:
    old = from_config(load("nm-testing/EAGLE3-LLaMA3.1-Instruct-8B-converted"))
    new = from_config(load("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"))
    assert old.param_count() == new.param_count()
    assert old.dtype == "float32"
    # vLLM serves float32 checkpoints in 16 bits, so the bytes agree too.
    assert old.weight_bytes() == new.weight_bytes()


def test_target_hidden_size_widens_the_fc() -> None:
    cfg = load("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3")
    wide = copy.deepcopy(cfg)
    wide["target_hidden_size"] = 8192
    diff = from_config(wide).param_count() - from_config(cfg).param_count()
    assert diff == 3 * (8192 - 4096) * 4096


def test_tied_embeddings_drop_the_lm_head() -> None:
    cfg = load("Qwen/Qwen3-8B")
    tied = dict(cfg, tie_word_embeddings=True)
    diff = from_config(cfg).param_count() - from_config(tied).param_count()
    assert diff == 151936 * 4096


def test_flops_per_token_is_twice_the_active_weights_plus_attention() -> None:
    arch = from_config(load("meta-llama/Llama-3.1-8B-Instruct"))
    assert arch.flops_per_token() == 2 * arch.active_param_count()
    assert arch.flops_per_token(1000) - arch.flops_per_token() == 4 * 32 * 4096 * 1000


def test_safetensors_bytes_count_packed_and_float32_tensors_correctly() -> None:
    info = SafetensorsInfo({"BF16": 1_000, "U8": 500, "F32": 10})
    assert info.total == 1_510
    assert info.weight_bytes() == 2_000 + 500 + 40
    assert info.weight_bytes(serving_dtype_bytes=2) == 2_000 + 500 + 20


def test_text_config_is_used_for_multimodal_configs() -> None:
    arch = from_config(load("meta-llama/Llama-4-Maverick-17B-128E-Instruct"))
    assert (arch.hidden_size, arch.num_layers, arch.num_experts) == (5120, 48, 128)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("hidden_size"), "hidden_size"),
        (lambda c: c.update(num_hidden_layers="32"), "num_hidden_layers"),
        (lambda c: c.update(num_attention_heads=0), "num_attention_heads"),
        (lambda c: c.update(num_key_value_heads=5), "num_key_value_heads"),
        (lambda c: c.update(vocab_size=None), "vocab_size"),
        (lambda c: c.update(tie_word_embeddings="yes"), "tie_word_embeddings"),
        (lambda c: c.update(quantization_config=[1]), "quantization_config"),
        (lambda c: c.update(architectures="LlamaForCausalLM"), "architectures"),
        (lambda c: c.update(num_local_experts=8), "num_experts_per_tok"),
    ],
)
def test_malformed_configs_raise_config_error_naming_the_key(mutate: Any, message: str) -> None:
    cfg = load("meta-llama/Llama-3.1-8B-Instruct")
    mutate(cfg)
    with pytest.raises(ConfigError, match=message):
        from_config(cfg)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("transformer_layer_config"), "transformer_layer_config"),
        (lambda c: c.update(transformer_layer_config=[]), "transformer_layer_config"),
        (lambda c: c.pop("speculators_model_type"), "speculators_model_type"),
        (lambda c: c.update(target_hidden_size="big"), "target_hidden_size"),
        (lambda c: c["transformer_layer_config"].pop("vocab_size"), "vocab_size"),
    ],
)
def test_malformed_drafter_configs_raise_config_error(mutate: Any, message: str) -> None:
    cfg = load("RedHatAI/Qwen3-8B-speculator.eagle3")
    mutate(cfg)
    with pytest.raises(ConfigError, match=message):
        from_config(cfg)


def test_non_object_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="JSON object"):
        from_config([1, 2])


_json_scalars = (
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats() | st.text(max_size=5)
)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
_KEYS = [
    "rope_scaling",
    "max_position_embeddings",
    "torch_dtype",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "num_hidden_layers",
    "vocab_size",
    "intermediate_size",
    "num_local_experts",
    "num_experts_per_tok",
    "sliding_window",
    "layer_types",
    "quantization_config",
    "tie_word_embeddings",
    "speculators_model_type",
    "transformer_layer_config",
    "target_hidden_size",
    "text_config",
    "interleave_moe_layer_step",
]


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(
        [
            "meta-llama/Llama-3.1-8B-Instruct",
            "openai/gpt-oss-20b",
            "RedHatAI/Qwen3-8B-speculator.eagle3",
        ]
    ),
    edits=st.dictionaries(st.sampled_from(_KEYS), _json, max_size=4),
)
def test_any_edit_either_parses_or_raises_config_error(base: str, edits: dict[str, Any]) -> None:
    cfg = load(base)
    cfg.update(edits)
    try:
        arch = from_config(cfg)
    except ConfigError as exc:
        assert str(exc)
        return
    assert arch.param_count() > 0
    assert arch.weight_bytes() > 0
    assert arch.kv_bytes_per_token() >= 0


@pytest.mark.parametrize(
    ("repo", "rope", "limit"),
    [
        ("Qwen/Qwen3-8B", None, 40960),
        # Qwen's documented YaRN recipe: factor 4 over the original 32768 -> 131072
        (
            "Qwen/Qwen3-8B",
            {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
            131072,
        ),
        ("Qwen/Qwen3-8B", {"type": "linear", "factor": 2.0}, 81920),
        # llama3 RoPE: max_position_embeddings already is the extended length
        ("meta-llama/Llama-3.1-8B-Instruct", "keep", 131072),
        # gpt-oss: YaRN factor 32 over 4096
        ("openai/gpt-oss-20b", "keep", 131072),
    ],
)
def test_context_limit_applies_rope_scaling_like_vllm(repo: str, rope: Any, limit: int) -> None:
    cfg = load(repo)
    if rope != "keep":
        cfg["rope_scaling"] = rope
    assert from_config(cfg).max_context == limit


@pytest.mark.parametrize("factor", ["x", float("inf"), float("nan"), -1.0, True, 4.4e303])
def test_malformed_rope_scaling_is_a_config_error(factor: object) -> None:
    cfg = dict(load("Qwen/Qwen3-8B"), rope_scaling={"rope_type": "yarn", "factor": factor})
    with pytest.raises(ConfigError, match="factor"):
        from_config(cfg)


@settings(max_examples=200, deadline=None)
@given(
    rope=st.fixed_dictionaries(
        {"rope_type": st.sampled_from(["yarn", "linear", "dynamic", "llama3", "default", 3])},
        optional={"factor": _json_scalars, "original_max_position_embeddings": _json_scalars},
    )
)
@example(rope={"rope_type": "yarn", "factor": 4.388899255034951e303})  # overflowed int()
def test_any_rope_scaling_parses_or_raises_config_error(rope: dict[str, Any]) -> None:
    cfg = dict(load("Qwen/Qwen3-8B"), rope_scaling=rope)
    try:
        arch = from_config(cfg)
    except ConfigError:
        return
    assert arch.max_context > 0
