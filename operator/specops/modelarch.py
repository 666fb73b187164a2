"""Architecture facts computed from a Hugging Face ``config.json``.

Sizing must know how many bytes of weights a model loads and how many bytes
of KV cache each token costs, and the serving simulator needs the FLOPs per
token; all of it follows from the handful of shape numbers in ``config.json``.
Computing them here (instead of trusting a parameter count in a model name)
lets SpecOps size any checkpoint, including drafters, whose sizes appear
nowhere else.

Supported shapes: dense decoders (Llama, Qwen2/3, Mistral, ...), Qwen3's
q/k norms, MoE with routed and shared experts and interleaved MoE layers
(Llama 4), gpt-oss (MoE, MXFP4 expert weights, attention sinks, sliding-window
layers), configs nested under ``text_config``, and Speculators drafters
(``speculators_model_type`` + ``transformer_layer_config``), whose EAGLE-3
head adds an ``fc`` over the verifier's three auxiliary hidden states and its
own ``lm_head`` of ``draft_vocab_size`` rows. When the draft vocabulary is
smaller than the verifier's, the checkpoint also holds the ``d2t`` (int64,
one per draft token) and ``t2d`` (bool, one per verifier token) mapping
tensors; they are buffers, not parameters, so they count in ``weight_bytes``
but not in ``param_count``. The drafter's input embedding (verifier vocab x
hidden) is counted: vLLM only shares the verifier's when the checkpoint
omits it, which a config does not tell, so the estimate stays on the safe side.

Counting conventions:

* ``param_count`` counts every weight matrix, bias and norm the model loads,
  the input embedding and (unless tied) the ``lm_head``.
* ``active_param_count`` counts what one token touches: all dense weights and
  ``experts_per_token`` routed experts (plus shared experts). By default it
  excludes the input embedding table (a lookup, not a matmul), which is how
  OpenAI reports gpt-oss (3.6B active); Meta's "17B active" for Llama 4
  includes it, hence ``include_embedding``.
* MXFP4 (gpt-oss) stores expert matrices at 4 bits plus one 8-bit scale per
  32 values, i.e. 4.25 bits per parameter; everything listed in
  ``modules_to_not_convert`` (attention, router, embeddings) stays BF16.

Malformed configs raise :class:`ConfigError` with a message naming the key,
never ``KeyError``/``TypeError``: a bad config is user input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KIB = 1024
GIB = 1024**3

DTYPE_BYTES: dict[str, float] = {
    "float32": 4,
    "fp32": 4,
    "float": 4,
    "bfloat16": 2,
    "bf16": 2,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "fp8": 1,
    "int8": 1,
}
"""Bytes per element of the ``torch_dtype`` names configs use."""

SAFETENSORS_DTYPE_BYTES: dict[str, float] = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F4": 0.5,
}
"""Bytes per element of the dtype names in safetensors headers and Hub metadata."""

MXFP4_BITS_PER_PARAM = 4.25
"""4-bit E2M1 values plus one E8M0 scale byte per block of 32."""

SPECULATOR_TYPES_WITH_FC = frozenset({"eagle3", "peagle"})
"""Speculators drafters that project the verifier's 3 auxiliary hidden states."""


class ConfigError(ValueError):
    """A config.json that is missing a key, has a wrong type or an impossible value."""


@dataclass(frozen=True)
class SafetensorsInfo:
    """Exact tensor element counts by safetensors dtype, from the checkpoint's metadata.

    Counts are *elements*, as the Hub reports them; packed formats (MXFP4 in
    ``U8``) hold two parameters per element, so bytes are exact while the
    parameter count is not. Sizing therefore uses :meth:`weight_bytes`.
    """

    parameters: Mapping[str, int]

    @property
    def total(self) -> int:
        """Total tensor elements across dtypes."""
        return sum(self.parameters.values())

    def weight_bytes(self, serving_dtype_bytes: float | None = None) -> float:
        """Bytes of weights as loaded for serving.

        ``F32`` tensors are counted at ``serving_dtype_bytes`` when given,
        because vLLM serves float32 checkpoints in the 16-bit dtype ("auto").
        """
        total = 0.0
        for dtype, count in self.parameters.items():
            size = SAFETENSORS_DTYPE_BYTES.get(dtype.upper(), 2.0)
            if dtype.upper() == "F32" and serving_dtype_bytes is not None:
                size = serving_dtype_bytes
            total += size * count
        return total


@dataclass(frozen=True)
class DrafterHead:
    """What a Speculators drafter adds around its decoder layers."""

    speculator_type: str
    draft_vocab_size: int
    target_hidden_size: int
    fc_inputs: int
    """Number of verifier hidden states concatenated into ``fc`` (3 for EAGLE-3, 0 for none)."""
    fc_norm: bool


@dataclass(frozen=True)
class ModelArch:
    """Shape of one decoder-only model (or drafter) and the sizes that follow from it."""

    model_type: str
    architectures: tuple[str, ...]
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int
    max_position_embeddings: int
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    num_moe_layers: int = 0
    tie_word_embeddings: bool = False
    quantization: str | None = None
    dtype: str = "bfloat16"
    attention_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    attention_sinks: bool = False
    sliding_window: int | None = None
    num_sliding_layers: int = 0
    drafter: DrafterHead | None = None
    context_limit: int = 0
    """Longest context vLLM accepts without an override (0: ``max_position_embeddings``)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # ---- derived shapes -------------------------------------------------
    @property
    def q_dim(self) -> int:
        """Width of the query projection (heads x head_dim; not always hidden_size)."""
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of one of the key/value projections (GQA: kv_heads x head_dim)."""
        return self.num_kv_heads * self.head_dim

    @property
    def max_context(self) -> int:
        """The context limit vLLM derives: RoPE scaling applied (see :func:`_context_limit`)."""
        return self.context_limit or self.max_position_embeddings

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0 and self.num_moe_layers > 0

    @property
    def is_drafter(self) -> bool:
        return self.drafter is not None

    @property
    def num_full_attention_layers(self) -> int:
        """Layers whose KV cache grows with the context."""
        return self.num_layers - self.num_sliding_layers

    @property
    def dtype_bytes(self) -> float:
        """Bytes per unquantized weight as served.

        vLLM's ``--dtype auto`` serves float32 checkpoints in BF16, so float32
        counts as 2 bytes here.
        """
        size = DTYPE_BYTES.get(self.dtype, 2.0)
        return 2.0 if size > 2 else size

    # ---- parameter counts by part --------------------------------------
    def _attention_params(self) -> int:
        q_in = self.hidden_size * (2 if self.drafter and self.drafter.fc_inputs else 1)
        weights = q_in * (self.q_dim + 2 * self.kv_dim) + self.q_dim * self.hidden_size
        bias = (self.q_dim + 2 * self.kv_dim + self.hidden_size) if self.attention_bias else 0
        norms = 2 * self.head_dim if self.qk_norm else 0
        sinks = self.num_attention_heads if self.attention_sinks else 0
        return weights + bias + norms + sinks

    def _mlp_params(self, intermediate: int) -> int:
        weights = 3 * self.hidden_size * intermediate
        bias = (2 * intermediate + self.hidden_size) if self.mlp_bias else 0
        return weights + bias

    def _expert_matrix_params(self) -> int:
        """Weight-matrix parameters of one routed expert (no biases)."""
        return 3 * self.hidden_size * self.moe_intermediate_size

    def _expert_bias_params(self) -> int:
        return (2 * self.moe_intermediate_size + self.hidden_size) if self.mlp_bias else 0

    def _router_params(self) -> int:
        return self.hidden_size * self.num_experts + (self.num_experts if self.mlp_bias else 0)

    def _dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers if self.is_moe else self.num_layers

    def embedding_params(self) -> int:
        """Input embedding table (verifier vocab rows, also for drafters)."""
        return self.vocab_size * self.hidden_size

    def lm_head_params(self) -> int:
        """Output projection; a drafter's has ``draft_vocab_size`` rows."""
        if self.drafter is not None:
            return self.drafter.draft_vocab_size * self.hidden_size
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    def _drafter_extra_params(self) -> int:
        """EAGLE-3's ``fc`` (3 x target hidden -> hidden) and its optional norm."""
        if self.drafter is None or not self.drafter.fc_inputs:
            return 0
        fc_in = self.drafter.fc_inputs * self.drafter.target_hidden_size
        norm = fc_in if self.drafter.fc_norm else 0
        return fc_in * self.hidden_size + norm

    def _moe_layer_params(self, *, experts: int) -> tuple[int, int]:
        """(matrix params that may be quantized, other params) for one MoE layer's FFN."""
        matrices = (experts + self.num_shared_experts) * self._expert_matrix_params()
        other = (experts + self.num_shared_experts) * self._expert_bias_params()
        return matrices, other + self._router_params()

    def _param_split(self, *, active: bool) -> tuple[int, int]:
        """(expert matrix params, everything else), total or per token."""
        norms_per_layer = 2 * self.hidden_size
        dense = self._dense_layers() * self._mlp_params(self.intermediate_size)
        attn = self.num_layers * (self._attention_params() + norms_per_layer)
        experts, moe_other = 0, 0
        if self.is_moe:
            routed = self.experts_per_token if active else self.num_experts
            m, o = self._moe_layer_params(experts=routed)
            experts, moe_other = m * self.num_moe_layers, o * self.num_moe_layers
        rest = (
            attn
            + dense
            + moe_other
            + self.hidden_size  # final norm
            + self.lm_head_params()
            + self._drafter_extra_params()
        )
        return experts, rest

    def param_count(self) -> int:
        """All parameters the checkpoint holds (see the module docstring)."""
        experts, rest = self._param_split(active=False)
        return experts + rest + self.embedding_params()

    def active_param_count(self, *, include_embedding: bool = False) -> int:
        """Parameters one token touches (routed experts counted ``experts_per_token`` times)."""
        experts, rest = self._param_split(active=True)
        return experts + rest + (self.embedding_params() if include_embedding else 0)

    def weight_bytes(self, dtype_bytes: float | None = None) -> float:
        """Bytes of weights as served, honouring MXFP4/FP8 quantization of checkpoints.

        ``dtype_bytes`` overrides the unquantized weight size (a drafter is
        served in its verifier's dtype).
        """
        size = self.dtype_bytes if dtype_bytes is None else dtype_bytes
        experts, rest = self._param_split(active=False)
        rest += self.embedding_params()
        buffers = self.mapping_tensor_bytes()
        if self.quantization == "mxfp4":
            return experts * MXFP4_BITS_PER_PARAM / 8 + rest * size + buffers
        if self.quantization == "fp8":
            # Linear layers in 8 bits; embeddings and lm_head stay 16-bit.
            head = self.embedding_params() + self.lm_head_params()
            return (experts + rest - head) * 1.0 + head * size + buffers
        return (experts + rest) * size + buffers

    def mapping_tensor_bytes(self) -> int:
        """EAGLE-3's ``d2t`` (int64 per draft token) and ``t2d`` (bool per verifier token)."""
        if self.drafter is None or self.drafter.draft_vocab_size >= self.vocab_size:
            return 0
        return 8 * self.drafter.draft_vocab_size + self.vocab_size

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """KV cache bytes per token of context over the layers whose cache grows.

        Sliding-window layers hold at most ``sliding_window`` tokens; their
        cost is in :meth:`kv_bytes_per_sequence`, not here.
        """
        return 2 * self.num_full_attention_layers * self.kv_dim * dtype_bytes

    def kv_bytes_per_sequence(self, seq_len: int, dtype_bytes: int = 2) -> int:
        """KV bytes for one sequence of ``seq_len`` tokens, sliding layers capped."""
        full = self.kv_bytes_per_token(dtype_bytes) * seq_len
        window = min(seq_len, self.sliding_window or seq_len)
        sliding = 2 * self.num_sliding_layers * self.kv_dim * dtype_bytes * window
        return full + sliding

    def flops_per_token(self, context_len: int = 0) -> float:
        """Forward FLOPs for one token: 2 per active weight plus attention over the context."""
        matmul = 2.0 * self.active_param_count()
        attention = 4.0 * self.num_full_attention_layers * self.q_dim * context_len
        window = min(context_len, self.sliding_window or context_len)
        attention += 4.0 * self.num_sliding_layers * self.q_dim * window
        return matmul + attention


# ---- parsing -------------------------------------------------------------


def _int(cfg: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = cfg.get(key)
    if value is None:
        if default is None:
            raise ConfigError(f"{where}: missing required key {key!r}")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: {key!r} must be an integer, got {value!r}")
    if value < 0:
        raise ConfigError(f"{where}: {key!r} must not be negative, got {value}")
    return value


def _positive(cfg: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = _int(cfg, key, where, default)
    if value <= 0:
        raise ConfigError(f"{where}: {key!r} must be positive, got {value}")
    return value


def _bool(cfg: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key!r} must be true or false, got {value!r}")
    return value


def _dtype(cfg: Mapping[str, Any], fallback: str = "bfloat16") -> str:
    value = cfg.get("torch_dtype", cfg.get("dtype"))
    if isinstance(value, str) and value.lower() in DTYPE_BYTES:
        return value.lower()
    return fallback


def _quantization(cfg: Mapping[str, Any], where: str) -> str | None:
    quant = cfg.get("quantization_config")
    if quant is None:
        return None
    if not isinstance(quant, Mapping):
        raise ConfigError(f"{where}: 'quantization_config' must be an object")
    method = quant.get("quant_method")
    if not isinstance(method, str):
        raise ConfigError(f"{where}: 'quantization_config.quant_method' must be a string")
    method = method.lower()
    if method == "compressed-tensors":
        fmt = quant.get("format")
        if isinstance(fmt, str) and "float" in fmt.lower():
            return "fp8"
    return method


_UNSCALED_ROPE = frozenset({"su", "longrope", "llama3", "default"})


def _context_limit(cfg: Mapping[str, Any], max_pos: int, model_type: str, where: str) -> int:
    """``max_position_embeddings`` with RoPE scaling applied, the way vLLM derives it.

    vLLM multiplies by ``factor`` for every RoPE type except su/longrope/llama3
    (whose ``max_position_embeddings`` already is the extended length), and
    for YaRN starts from ``original_max_position_embeddings``; Gemma 3's is
    already scaled. Accepts transformers 4 ``rope_scaling`` and 5 ``rope_parameters``.
    """
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    if rope is None or "gemma3" in model_type:
        return max_pos
    if not isinstance(rope, Mapping):
        raise ConfigError(f"{where}: 'rope_scaling' must be an object or null")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if not isinstance(rope_type, str) or rope_type in _UNSCALED_ROPE:
        return max_pos
    factor = rope.get("factor", 1.0)
    if (
        isinstance(factor, bool)
        or not isinstance(factor, int | float)
        or not math.isfinite(factor)
        or factor <= 0
    ):
        raise ConfigError(f"{where}: rope_scaling 'factor' must be a positive number")
    base = max_pos
    if rope_type == "yarn" and rope.get("original_max_position_embeddings") is not None:
        base = _positive(rope, "original_max_position_embeddings", f"{where} rope_scaling")
    scaled = base * factor
    if not math.isfinite(scaled):
        raise ConfigError(
            f"{where}: rope_scaling 'factor' {factor:g} times {base} positions is not a finite "
            "context length"
        )
    return int(scaled)


def _text_config(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    """Multimodal configs (Llama 4, Qwen-VL) keep the decoder under ``text_config``."""
    inner = cfg.get("text_config")
    if "hidden_size" not in cfg and isinstance(inner, Mapping):
        return inner
    return cfg


def _decoder(
    cfg: Mapping[str, Any], where: str, *, dtype_fallback: str, drafter: DrafterHead | None
) -> ModelArch:
    hidden = _positive(cfg, "hidden_size", where)
    heads = _positive(cfg, "num_attention_heads", where)
    kv_heads = _positive(cfg, "num_key_value_heads", where, default=heads)
    if cfg.get("head_dim") is None and hidden % heads:
        raise ConfigError(f"{where}: hidden_size {hidden} is not divisible by {heads} heads")
    head_dim = _positive(cfg, "head_dim", where, default=max(hidden // heads, 1))
    if kv_heads > heads or heads % kv_heads:
        raise ConfigError(
            f"{where}: num_attention_heads {heads} is not a multiple of "
            f"num_key_value_heads {kv_heads}"
        )
    layers = _positive(cfg, "num_hidden_layers", where)
    vocab = _positive(cfg, "vocab_size", where)
    intermediate = _int(cfg, "intermediate_size", where, default=0)
    max_pos = _positive(cfg, "max_position_embeddings", where, default=2048)
    model_type = cfg.get("model_type", "")
    if not isinstance(model_type, str):
        raise ConfigError(f"{where}: 'model_type' must be a string")
    archs = cfg.get("architectures") or ()
    if not isinstance(archs, list | tuple) or not all(isinstance(a, str) for a in archs):
        raise ConfigError(f"{where}: 'architectures' must be a list of strings")

    # Mixture of experts: Mixtral/Qwen-MoE/gpt-oss/Llama-4/DeepSeek spell it differently.
    experts = 0
    for key in ("num_local_experts", "num_experts", "n_routed_experts"):
        if cfg.get(key) is not None:
            experts = _int(cfg, key, where)
            break
    per_token = 0
    for key in ("num_experts_per_tok", "experts_per_token", "num_experts_per_token"):
        if cfg.get(key) is not None:
            per_token = _int(cfg, key, where)
            break
    if experts and not per_token:
        raise ConfigError(f"{where}: MoE config with {experts} experts lacks num_experts_per_tok")
    if per_token > experts:
        raise ConfigError(f"{where}: {per_token} experts per token but only {experts} experts")
    moe_intermediate = intermediate
    if cfg.get("moe_intermediate_size") is not None:
        moe_intermediate = _positive(cfg, "moe_intermediate_size", where)
    dense_intermediate = intermediate
    if cfg.get("intermediate_size_mlp") is not None:  # Llama 4: dense layers are wider
        dense_intermediate = _positive(cfg, "intermediate_size_mlp", where)
    shared = 0
    if cfg.get("n_shared_experts") is not None:
        shared = _int(cfg, "n_shared_experts", where)
    elif model_type.startswith("llama4") and experts:
        shared = 1  # Llama 4 MoE layers add one always-on shared expert
    moe_layers = 0
    if experts:
        step = _positive(cfg, "interleave_moe_layer_step", where, default=1)
        moe_layers = len(range(step - 1, layers, step))
    if not experts and intermediate <= 0:
        raise ConfigError(f"{where}: 'intermediate_size' must be positive")

    # Sliding-window layers keep a bounded cache (gpt-oss alternates them).
    sliding_window: int | None = None
    sliding_layers = 0
    window = cfg.get("sliding_window")
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise ConfigError(f"{where}: 'sliding_window' must be a positive integer or null")
        layer_types = cfg.get("layer_types")
        if isinstance(layer_types, list):
            if len(layer_types) != layers:
                raise ConfigError(
                    f"{where}: 'layer_types' lists {len(layer_types)} layers, "
                    f"num_hidden_layers is {layers}"
                )
            sliding_layers = sum(1 for t in layer_types if t == "sliding_attention")
        elif cfg.get("use_sliding_window", True) is not False:
            sliding_layers = layers
        sliding_window = window if sliding_layers else None

    return ModelArch(
        model_type=model_type,
        architectures=tuple(archs),
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=vocab,
        intermediate_size=dense_intermediate,
        max_position_embeddings=max_pos,
        num_experts=experts,
        experts_per_token=per_token,
        moe_intermediate_size=moe_intermediate,
        num_shared_experts=shared,
        num_moe_layers=moe_layers,
        tie_word_embeddings=_bool(cfg, "tie_word_embeddings", where, False),
        quantization=_quantization(cfg, where),
        dtype=_dtype(cfg, dtype_fallback),
        attention_bias=_bool(cfg, "attention_bias", where, False),
        mlp_bias=_bool(cfg, "mlp_bias", where, model_type == "gpt_oss"),
        qk_norm=model_type.startswith("qwen3") or bool(cfg.get("use_qk_norm") is True),
        attention_sinks=model_type == "gpt_oss",
        sliding_window=sliding_window,
        num_sliding_layers=sliding_layers,
        drafter=drafter,
        context_limit=_context_limit(cfg, max_pos, model_type, where),
    )


def is_speculators_config(cfg: Mapping[str, Any]) -> bool:
    """True for a config written by the Speculators library (either layout)."""
    return "speculators_model_type" in cfg or "speculators_config" in cfg


def _drafter_head(cfg: Mapping[str, Any], layer: Mapping[str, Any]) -> DrafterHead:
    where = "speculator config"
    kind = cfg.get("speculators_model_type")
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"{where}: missing required key 'speculators_model_type'")
    kind = kind.lower()
    hidden = _positive(layer, "hidden_size", "transformer_layer_config")
    vocab = _positive(layer, "vocab_size", "transformer_layer_config")
    draft_vocab = _positive(cfg, "draft_vocab_size", where, default=vocab)
    target_hidden = cfg.get("target_hidden_size")
    if target_hidden is None:
        target_hidden = hidden
    elif (
        isinstance(target_hidden, bool) or not isinstance(target_hidden, int) or target_hidden <= 0
    ):
        raise ConfigError(f"{where}: 'target_hidden_size' must be a positive integer or null")
    return DrafterHead(
        speculator_type=kind,
        draft_vocab_size=draft_vocab,
        target_hidden_size=target_hidden,
        fc_inputs=3 if kind in SPECULATOR_TYPES_WITH_FC else 0,
        fc_norm=_bool(cfg, "fc_norm", where, False),
    )


def from_config(cfg: object) -> ModelArch:
    """Parse a config.json dict (model or Speculators drafter) into a :class:`ModelArch`."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config must be a JSON object, got {type(cfg).__name__}")
    if is_speculators_config(cfg):
        layer = cfg.get("transformer_layer_config")
        if not isinstance(layer, Mapping):
            raise ConfigError(
                "speculator config: missing required object 'transformer_layer_config'"
            )
        head = _drafter_head(cfg, layer)
        return _decoder(
            layer,
            "transformer_layer_config",
            dtype_fallback=_dtype(cfg),
            drafter=head,
        )
    text = _text_config(cfg)
    where = "config.json" if text is cfg else "config.json text_config"
    return _decoder(text, where, dtype_fallback=_dtype(cfg), drafter=None)
