"""Compatibility findings over the released pairs and mismatches built from them."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specops import gpus
from specops.compat import CODES, CheckSettings, Finding, check, evaluate
from specops.modelarch import SafetensorsInfo

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"

PAIRS = [
    ("Qwen/Qwen3-8B", "RedHatAI/Qwen3-8B-speculator.eagle3"),
    ("Qwen/Qwen3-32B", "RedHatAI/Qwen3-32B-speculator.eagle3"),
    ("meta-llama/Llama-3.1-8B-Instruct", "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"),
    ("meta-llama/Llama-3.3-70B-Instruct", "RedHatAI/Llama-3.3-70B-Instruct-speculator.eagle3"),
    ("openai/gpt-oss-20b", "RedHatAI/gpt-oss-20b-speculator.eagle3"),
    ("meta-llama/Llama-3.1-8B-Instruct", "nm-testing/EAGLE3-LLaMA3.1-Instruct-8B-converted"),
]


def load(repo: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HUB / repo / "config.json").read_text())
    return data


@dataclass(frozen=True)
class Model:
    """Shaped like specops.hub.ResolvedModel (compat only reads these)."""

    ref: str
    config: dict[str, Any]
    safetensors: SafetensorsInfo | None = None


def model(repo: str) -> Model:
    return Model(repo, load(repo))


def codes(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.code, f.severity) for f in findings}


@pytest.mark.parametrize(("verifier", "drafter"), PAIRS, ids=[p[1] for p in PAIRS])
def test_released_pairs_are_compatible_on_their_gpu(verifier: str, drafter: str) -> None:
    gpu = gpus.lookup("A100-80GB" if "70B" in verifier else "H100-80GB")
    report = evaluate(model(verifier), model(drafter), CheckSettings(gpu=gpu))
    assert report.findings == []
    assert report.compatible
    assert report.plan is not None


def test_drafter_for_another_verifier_is_an_error() -> None:
    found = check(model("Qwen/Qwen3-8B"), model("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"))
    assert ("VerifierMismatch", "error") in codes(found)
    assert ("VocabSizeMismatch", "error") in codes(found)
    mismatch = next(f for f in found if f.code == "VerifierMismatch")
    assert "meta-llama/Llama-3.1-8B-Instruct" in mismatch.message


def test_same_shape_different_name_is_a_warning() -> None:
    """A quantized or fine-tuned copy of the verifier keeps the drafter usable."""
    quantized = Model(
        "RedHatAI/Llama-3.1-8B-Instruct-FP8", load("meta-llama/Llama-3.1-8B-Instruct")
    )
    found = check(quantized, model("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"))
    assert codes(found) == {("VerifierMismatch", "warning")}


def test_hidden_size_mismatch_from_target_hidden_size() -> None:
    drafter = load("RedHatAI/Qwen3-8B-speculator.eagle3")
    drafter["target_hidden_size"] = 5120
    found = check(model("Qwen/Qwen3-8B"), Model("x/drafter", drafter))
    assert ("HiddenSizeMismatch", "error") in codes(found)
    assert "target_hidden_size" in next(f for f in found if f.code == "HiddenSizeMismatch").message


def test_hidden_size_mismatch_from_drafter_hidden_when_target_is_null() -> None:
    # Qwen3-32B's drafter (hidden 5120) against Qwen3-8B (hidden 4096): same vocab.
    found = check(
        model("Qwen/Qwen3-8B"),
        model("RedHatAI/Qwen3-32B-speculator.eagle3"),
        CheckSettings(verifier_ref="Qwen/Qwen3-8B"),
    )
    assert ("HiddenSizeMismatch", "error") in codes(found)
    assert ("VocabSizeMismatch", "error") not in codes(found)


def test_aux_layers_beyond_the_verifier() -> None:
    drafter = load("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3")
    drafter["eagle_aux_hidden_state_layer_ids"] = [2, 16, 40]
    found = check(model("meta-llama/Llama-3.1-8B-Instruct"), Model("x/d", drafter))
    finding = next(f for f in found if f.code == "AuxLayerOutOfRange")
    assert "[40]" in finding.message and "0..31" in finding.message


def test_aux_layers_inside_the_verifier_are_fine() -> None:
    drafter = load("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3")
    drafter["eagle_aux_hidden_state_layer_ids"] = [2, 16, 29]
    found = check(
        model("meta-llama/Llama-3.1-8B-Instruct"),
        Model("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3", drafter),
    )
    assert found == []


def test_plain_model_as_speculator_says_to_convert() -> None:
    found = check(model("meta-llama/Llama-3.1-8B-Instruct"), model("Qwen/Qwen3-8B"))
    assert codes(found) == {("NotSpeculatorsFormat", "error")}
    assert "speculators convert" in found[0].message


@pytest.mark.parametrize("kind", ["eagle", "hass", "medusa", "something-new"])
def test_unsupported_speculator_types(kind: str) -> None:
    drafter = load("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3")
    drafter["speculators_model_type"] = kind
    found = check(model("meta-llama/Llama-3.1-8B-Instruct"), Model("x/d", drafter))
    assert codes(found) == {("UnsupportedSpeculatorType", "error")}
    assert "EAGLE-3" in found[0].message or "eagle3" in found[0].message


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda c: c.pop("speculators_model_type"), "speculators_model_type"),
        (lambda c: c.pop("transformer_layer_config"), "transformer_layer_config"),
        (
            lambda c: c["speculators_config"]["proposal_methods"][0].pop("speculative_tokens"),
            "speculative_tokens",
        ),
        (lambda c: c["speculators_config"]["proposal_methods"].clear(), "proposal_methods"),
        (lambda c: c["speculators_config"]["verifier"].pop("name_or_path"), "name_or_path"),
        (lambda c: c.update(norm_before_fc=True, fc_norm=True), "norm_before_fc"),
        (lambda c: c.update(eagle_aux_hidden_state_layer_ids="1,2,3"), "eagle_aux"),
        (lambda c: c["transformer_layer_config"].update(hidden_size="4096"), "hidden_size"),
        (lambda c: c.update(speculators_config=None), "speculators_config"),
    ],
)
def test_invalid_speculator_configs(mutate: Any, needle: str) -> None:
    drafter = copy.deepcopy(load("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"))
    mutate(drafter)
    found = check(model("meta-llama/Llama-3.1-8B-Instruct"), Model("x/d", drafter))
    invalid = [f for f in found if f.code == "InvalidConfig"]
    assert invalid and all(f.severity == "error" for f in invalid)
    assert needle in invalid[0].message


def test_truncated_json_is_invalid_config() -> None:
    text = (HUB / "RedHatAI/Qwen3-8B-speculator.eagle3/config.json").read_text()
    found = check(model("Qwen/Qwen3-8B"), text[: len(text) // 2])
    assert codes(found) == {("InvalidConfig", "error")}
    assert "not valid JSON" in found[0].message


def test_verifier_that_is_a_drafter_is_invalid() -> None:
    found = check(model("RedHatAI/Qwen3-8B-speculator.eagle3"), None)
    assert codes(found) == {("InvalidConfig", "error")}


def test_local_verifier_path_is_a_warning_when_the_verifier_is_named() -> None:
    drafter = load("RedHatAI/Qwen3-8B-speculator.eagle3")
    drafter["speculators_config"]["verifier"]["name_or_path"] = "/home/alice/models/qwen3-8b"
    found = check(model("Qwen/Qwen3-8B"), Model("x/d", drafter))
    assert codes(found) == {("LocalVerifierPath", "warning")}


def test_local_verifier_path_is_an_error_when_the_verifier_comes_from_the_drafter() -> None:
    drafter = load("RedHatAI/Qwen3-8B-speculator.eagle3")
    drafter["speculators_config"]["verifier"]["name_or_path"] = "./checkpoints/verifier"
    found = check(
        model("Qwen/Qwen3-8B"), Model("x/d", drafter), CheckSettings(verifier_explicit=False)
    )
    assert codes(found) == {("LocalVerifierPath", "error")}


def test_more_tokens_than_trained_is_a_warning() -> None:
    pair = (model("Qwen/Qwen3-8B"), model("RedHatAI/Qwen3-8B-speculator.eagle3"))
    assert check(*pair, CheckSettings(num_speculative_tokens=3)) == []
    found = check(*pair, CheckSettings(num_speculative_tokens=5))
    assert codes(found) == {("SpeculativeTokensAboveTrained", "warning")}
    assert "<= 3" in found[0].message


def test_old_layout_trained_for_five_tokens() -> None:
    pair = (
        model("meta-llama/Llama-3.1-8B-Instruct"),
        model("nm-testing/EAGLE3-LLaMA3.1-Instruct-8B-converted"),
    )
    assert check(*pair, CheckSettings(num_speculative_tokens=5)) == []


def test_heads_not_divisible_by_tp() -> None:
    found = check(
        model("meta-llama/Llama-3.1-8B-Instruct"),
        model("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"),
        CheckSettings(tensor_parallel_size=3),
    )
    assert {f.code for f in found} == {"HeadsNotDivisible"}
    assert {f.message.split(":")[0] for f in found} == {"verifier", "drafter"}


def test_context_longer_than_the_verifier() -> None:
    found = check(model("Qwen/Qwen3-8B"), None, CheckSettings(max_model_len=65536))
    assert codes(found) == {("ContextLengthExceeded", "error")}
    assert "40960" in found[0].message


def test_rope_scaling_extends_the_context_limit() -> None:
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    verifier = Model("Qwen/Qwen3-8B", dict(load("Qwen/Qwen3-8B"), rope_scaling=yarn))
    assert check(verifier, None, CheckSettings(max_model_len=131072)) == []
    found = check(verifier, None, CheckSettings(max_model_len=131073))
    assert codes(found) == {("ContextLengthExceeded", "error")}
    assert "scaled by its rope_scaling" in found[0].message


def test_does_not_fit_the_gpu() -> None:
    report = evaluate(
        model("meta-llama/Llama-3.3-70B-Instruct"),
        model("RedHatAI/Llama-3.3-70B-Instruct-speculator.eagle3"),
        CheckSettings(gpu=gpus.lookup("A100-80GB"), tensor_parallel_size=2),
    )
    assert codes(report.findings) == {("InsufficientGpuMemory", "error")}
    assert report.plan is None
    assert not report.compatible


def test_plan_uses_exact_safetensors_counts() -> None:
    verifier = Model(
        "meta-llama/Llama-3.1-8B-Instruct",
        load("meta-llama/Llama-3.1-8B-Instruct"),
        SafetensorsInfo({"BF16": 8_030_261_248}),
    )
    report = evaluate(verifier, None, CheckSettings(gpu=gpus.lookup("H100")))
    assert report.plan is not None
    assert any("safetensors" in line for line in report.plan.explanation)


# ---- property tests --------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers(-3, 300_000) | st.floats() | st.text(max_size=6)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_DRAFTER_KEYS = [
    "speculators_model_type",
    "speculators_config",
    "transformer_layer_config",
    "target_hidden_size",
    "eagle_aux_hidden_state_layer_ids",
    "draft_vocab_size",
    "norm_before_fc",
    "fc_norm",
]
_LAYER_KEYS = [
    "hidden_size",
    "vocab_size",
    "num_attention_heads",
    "num_key_value_heads",
    "num_hidden_layers",
    "head_dim",
    "intermediate_size",
]


def _assert_well_formed(found: list[Finding]) -> None:
    for f in found:
        assert f.code in CODES
        assert f.severity in ("error", "warning")
        assert f.message


@settings(max_examples=300, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    top=st.dictionaries(st.sampled_from(_DRAFTER_KEYS), _json, max_size=3),
    layer=st.dictionaries(st.sampled_from(_LAYER_KEYS), _json, max_size=3),
    verifier_edits=st.dictionaries(
        st.sampled_from([*_LAYER_KEYS, "max_position_embeddings", "rope_scaling"]),
        _json,
        max_size=2,
    ),
    tp=st.none() | st.integers(1, 8),
    k=st.none() | st.integers(1, 10),
    length=st.none() | st.integers(1, 300_000),
)
def test_edited_configs_only_ever_produce_findings(
    pair: tuple[str, str],
    top: dict[str, Any],
    layer: dict[str, Any],
    verifier_edits: dict[str, Any],
    tp: int | None,
    k: int | None,
    length: int | None,
) -> None:
    verifier = dict(load(pair[0]), **verifier_edits)
    drafter = load(pair[1])
    drafter.update(top)
    if isinstance(drafter.get("transformer_layer_config"), dict):
        drafter["transformer_layer_config"].update(layer)
    found = check(
        Model(pair[0], verifier),
        Model(pair[1], drafter),
        CheckSettings(
            tensor_parallel_size=tp,
            num_speculative_tokens=k,
            max_model_len=length,
            gpu=gpus.lookup("H100"),
        ),
    )
    _assert_well_formed(found)


@settings(max_examples=200, deadline=None)
@given(verifier=_json, drafter=_json | st.text(max_size=40) | st.binary(max_size=40))
def test_arbitrary_json_only_ever_produces_findings(verifier: Any, drafter: Any) -> None:
    _assert_well_formed(check(verifier, drafter))


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 2000))
def test_any_truncation_of_a_real_config_is_invalid_config(cut: int) -> None:
    text = (HUB / "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3/config.json").read_text()
    cut = min(cut, len(text) - 2)
    found = check(model("meta-llama/Llama-3.1-8B-Instruct"), text[:cut])
    assert [f.code for f in found] == ["InvalidConfig"]
