"""How many GPUs a replica needs, and the memory arithmetic behind the answer.

vLLM fails at start-up (after minutes of loading) when weights plus one
full-length sequence of KV cache do not fit, and it serves badly when only a
few sequences fit. Sizing answers before anything is scheduled: it picks the
smallest tensor-parallel size in {1, 2, 4, 8} that divides the attention heads
and leaves KV cache for ``min_concurrent_sequences`` sequences of
``max_model_len`` tokens, counting the drafter's weights and KV layers too,
and it records each step of the arithmetic so a user can check it.

Choices, stated once:

* ``max_model_len`` defaults to ``min(max_position_embeddings, 32768)``
  (``max_position_embeddings`` scaled by RoPE scaling, as vLLM derives it):
  long enough for chat, RAG and code, short enough that a 128k-context model
  does not demand 4x the GPUs for context nobody asked for. Set it to serve
  longer contexts.
* ``min_concurrent_sequences`` defaults to 4 full-length sequences. vLLM
  itself only needs one to start, but a replica that holds one request at
  a time is not a service, and 4 leaves a margin for the estimates below.
* Memory vLLM may use: ``memory_gib x gpu_memory_utilization`` per GPU,
  ``memory_gib`` being what the device reports (see :mod:`specops.gpus`).
* Weights: exact bytes from safetensors metadata when known, otherwise
  computed from config.json (:mod:`specops.modelarch`); sharded evenly over
  TP ranks. The drafter runs with the verifier's TP (vLLM's default).
* Reserve per GPU for activations, CUDA graphs and non-torch memory (NCCL,
  cuBLAS workspaces): a fixed 1.5 GiB plus the activations of one
  ``max_num_batched_tokens`` (8192) profile step and FP32 logits for 256
  sequences, which is what vLLM's profiling run measures.
* KV cache in the model's 16-bit dtype; sliding-window layers hold at most
  their window; when TP exceeds the KV heads, vLLM replicates them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from specops.api.v1alpha1 import PlanStatus
from specops.gpus import GIB, GpuType
from specops.modelarch import KIB, ModelArch, SafetensorsInfo, from_config

Plan = PlanStatus
"""The sizing result is the status model the operator records (``status.plan``)."""

TP_SIZES: tuple[int, ...] = (1, 2, 4, 8)
"""Tensor-parallel sizes tried, smallest first; 8 is one node (multi-node is out of scope)."""
MAX_GPUS_PER_NODE = 8
DEFAULT_MAX_MODEL_LEN_CAP = 32768
DEFAULT_MIN_CONCURRENT_SEQUENCES = 4
FIXED_RESERVE_GIB = 1.5
PROFILE_BATCHED_TOKENS = 8192
PROFILE_MAX_SEQS = 256
KV_DTYPE_BYTES = 2


class SizingError(ValueError):
    """No tensor-parallel size fits (or the requested one does not); the message says why."""


def default_max_model_len(arch: ModelArch) -> int:
    """``min(context limit, 32768)``; see the module docstring."""
    return min(arch.max_context, DEFAULT_MAX_MODEL_LEN_CAP)


def tp_compatible(arch: ModelArch, tp: int) -> str | None:
    """Why ``tp`` cannot shard this model's attention, or None if it can.

    vLLM splits query heads evenly across ranks; KV heads must split evenly
    too, or be fewer than ranks and a divisor of TP (then they are replicated).
    """
    if arch.num_attention_heads % tp:
        return f"{arch.num_attention_heads} attention heads are not divisible by TP {tp}"
    kv = arch.num_kv_heads
    if kv % tp and tp % kv:
        return f"{kv} KV heads neither divide nor are divisible by TP {tp}"
    return None


def _kv_replication(arch: ModelArch, tp: int) -> int:
    return max(1, tp // arch.num_kv_heads)


def activation_reserve_gib(
    arch: ModelArch,
    tp: int,
    *,
    batched_tokens: int = PROFILE_BATCHED_TOKENS,
    max_seqs: int = PROFILE_MAX_SEQS,
    fixed_gib: float = FIXED_RESERVE_GIB,
) -> float:
    """Per-GPU reserve for activations, CUDA graphs and non-torch allocations.

    vLLM sizes its KV cache after a profiling forward pass of
    ``batched_tokens`` tokens and a sampler pass over ``max_seqs`` fp32
    logits; the peak of those plus ``fixed_gib`` (CUDA graphs, workspaces,
    NCCL) is what the KV cache cannot use. Sizing plans with generous
    defaults; the simulator passes the limits the replica really runs with.
    """
    ffn = arch.moe_intermediate_size if arch.is_moe else arch.intermediate_size
    per_token = (4 * arch.hidden_size + 2 * ffn * max(arch.experts_per_token, 1) // tp) * 2
    activations = batched_tokens * per_token
    logits = max_seqs * arch.vocab_size * 4
    return fixed_gib + (activations + logits) / GIB


@dataclass(frozen=True)
class _Weights:
    bytes: float
    how: str


def _weights(
    arch: ModelArch, safetensors: SafetensorsInfo | None, serving_bytes: float
) -> _Weights:
    if safetensors is not None and safetensors.total > 0:
        return _Weights(
            safetensors.weight_bytes(serving_dtype_bytes=serving_bytes),
            f"{safetensors.total / 1e9:.2f}B tensor elements from safetensors metadata",
        )
    quant = f", {arch.quantization}" if arch.quantization else ""
    return _Weights(
        arch.weight_bytes(serving_bytes),
        f"{arch.param_count() / 1e9:.2f}B params computed from config.json{quant}",
    )


def _arch(cfg: Mapping[str, Any] | ModelArch) -> ModelArch:
    return cfg if isinstance(cfg, ModelArch) else from_config(cfg)


@dataclass(frozen=True)
class _Candidate:
    tp: int
    usable: float
    reserve: float
    kv_budget: float
    kv_per_token: int
    kv_per_sequence: int
    sequences: int


def _evaluate(
    verifier: ModelArch,
    drafter: ModelArch | None,
    tp: int,
    *,
    gpu_gib: float,
    utilisation: float,
    weights: float,
    max_model_len: int,
) -> _Candidate:
    usable = gpu_gib * utilisation * tp
    reserve = activation_reserve_gib(verifier, tp) * tp
    kv_budget = usable - weights / GIB - reserve
    rep = _kv_replication(verifier, tp)
    per_token = verifier.kv_bytes_per_token(KV_DTYPE_BYTES) * rep
    per_seq = verifier.kv_bytes_per_sequence(max_model_len, KV_DTYPE_BYTES) * rep
    if drafter is not None:
        drep = _kv_replication(drafter, tp)
        per_token += drafter.kv_bytes_per_token(KV_DTYPE_BYTES) * drep
        per_seq += drafter.kv_bytes_per_sequence(max_model_len, KV_DTYPE_BYTES) * drep
    sequences = max(0, math.floor(kv_budget * GIB / per_seq)) if per_seq else 0
    return _Candidate(tp, usable, reserve, kv_budget, per_token, per_seq, sequences)


def _gib(value: float) -> str:
    return f"{value:.2f} GiB"


def plan(
    verifier_cfg: Mapping[str, Any] | ModelArch,
    drafter_cfg: Mapping[str, Any] | ModelArch | None,
    gpu: GpuType,
    *,
    tensor_parallel_size: int | None = None,
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    min_concurrent_sequences: int = DEFAULT_MIN_CONCURRENT_SEQUENCES,
    verifier_safetensors: SafetensorsInfo | None = None,
    drafter_safetensors: SafetensorsInfo | None = None,
    verifier_name: str = "verifier",
    drafter_name: str = "drafter",
) -> PlanStatus:
    """Choose the tensor-parallel size and explain the memory budget behind it.

    Raises :class:`SizingError` when nothing fits on one node or the explicit
    ``tensor_parallel_size`` is impossible, and
    :class:`specops.modelarch.ConfigError` for malformed configs.
    """
    verifier = _arch(verifier_cfg)
    drafter = _arch(drafter_cfg) if drafter_cfg is not None else None
    if not 0 < gpu_memory_utilization <= 1:
        raise SizingError(f"gpuMemoryUtilization must be in (0, 1], got {gpu_memory_utilization}")
    if min_concurrent_sequences < 1:
        raise SizingError("the minimum number of concurrent sequences must be at least 1")
    if max_model_len is not None and max_model_len < 1:
        raise SizingError(f"maxModelLen must be positive, got {max_model_len}")
    length = max_model_len if max_model_len is not None else default_max_model_len(verifier)

    serving = verifier.dtype_bytes
    vw = _weights(verifier, verifier_safetensors, serving)
    dw = _weights(drafter, drafter_safetensors, serving) if drafter is not None else None
    weights = vw.bytes + (dw.bytes if dw is not None else 0.0)

    lines = [
        f"GPU {gpu.name}: {gpu.memory_gib:g} GiB reported per device;"
        f" vLLM may use {gpu_memory_utilization:g} of it",
        f"{verifier_name} weights: {vw.how} -> {_gib(vw.bytes / GIB)}",
    ]
    if dw is not None:
        lines.append(f"{drafter_name} weights: {dw.how} -> {_gib(dw.bytes / GIB)}")
    length_note = (
        "" if max_model_len is not None else " (default: min(max_position_embeddings, 32768))"
    )
    lines.append(
        f"max_model_len {length}{length_note}; need KV cache for at least"
        f" {min_concurrent_sequences} full-length sequences"
    )

    if tensor_parallel_size is not None:
        if tensor_parallel_size < 1 or tensor_parallel_size > MAX_GPUS_PER_NODE:
            raise SizingError(
                f"tensorParallelSize {tensor_parallel_size} is outside 1..{MAX_GPUS_PER_NODE}"
                " (one node; multi-node serving is not supported yet)"
            )
        candidates: Sequence[int] = (tensor_parallel_size,)
    else:
        candidates = TP_SIZES

    rejected: list[str] = []
    chosen: _Candidate | None = None
    for tp in candidates:
        why = tp_compatible(verifier, tp)
        if why is None and drafter is not None:
            drafter_why = tp_compatible(drafter, tp)
            why = f"{drafter_name}: {drafter_why}" if drafter_why else None
        if why is not None:
            rejected.append(f"TP {tp} rejected: {why}")
            continue
        cand = _evaluate(
            verifier,
            drafter,
            tp,
            gpu_gib=gpu.memory_gib,
            utilisation=gpu_memory_utilization,
            weights=weights,
            max_model_len=length,
        )
        if cand.sequences >= min_concurrent_sequences:
            chosen = cand
            break
        if cand.kv_budget <= 0:
            what = "weights (verifier + drafter)" if drafter is not None else "weights"
            rejected.append(
                f"TP {tp} rejected: {what} {_gib(weights / GIB)} + reserve {_gib(cand.reserve)}"
                f" exceed the usable {_gib(cand.usable)}"
            )
        else:
            rejected.append(
                f"TP {tp} rejected: KV budget {_gib(cand.kv_budget)} holds {cand.sequences}"
                f" sequences of {length} tokens ({_gib(cand.kv_per_sequence / GIB)} each),"
                f" fewer than {min_concurrent_sequences}"
            )
    lines.extend(rejected)

    if chosen is None:
        raise SizingError(
            _no_fit_message(
                verifier,
                drafter,
                gpu,
                tensor_parallel_size,
                rejected,
                length,
                gpu_memory_utilization,
                weights,
                min_concurrent_sequences,
            )
        )

    c = chosen
    lines.append(
        f"TP {c.tp}: usable memory {gpu.memory_gib:g} GiB x {gpu_memory_utilization:g} x {c.tp}"
        f" = {_gib(c.usable)}"
    )
    lines.append(
        f"reserve for activations, CUDA graphs and non-torch memory:"
        f" {_gib(c.reserve / c.tp)} per GPU x {c.tp} = {_gib(c.reserve)}"
    )
    parts = [f"{_gib(c.usable)}", f"{_gib(vw.bytes / GIB)} verifier"]
    if dw is not None:
        parts.append(f"{_gib(dw.bytes / GIB)} drafter")
    parts.append(f"{_gib(c.reserve)} reserve")
    lines.append(f"KV budget: {' - '.join(parts)} = {_gib(c.kv_budget)}")
    kv_note = f"{c.kv_per_token / KIB:g} KiB per token"
    if drafter is not None:
        kv_note += f" ({drafter_name} layers included)"
    if verifier.num_sliding_layers:
        kv_note += f", sliding-window layers capped at {verifier.sliding_window} tokens"
    lines.append(
        f"KV cache: {kv_note}; one {length}-token sequence takes {_gib(c.kv_per_sequence / GIB)}"
    )
    lines.append(
        f"holds {c.sequences} full-length sequences (need {min_concurrent_sequences}):"
        f" TP {c.tp} on {c.tp} x {gpu.name}"
    )
    return PlanStatus(
        tensor_parallel_size=c.tp,
        gpus_per_replica=c.tp,
        gpu_type=gpu.name,
        gpu_memory_gib=round(gpu.memory_gib, 3),
        usable_memory_gib=round(c.usable, 3),
        verifier_weights_gib=round(vw.bytes / GIB, 3),
        speculator_weights_gib=round(dw.bytes / GIB, 3) if dw is not None else 0.0,
        activation_reserve_gib=round(c.reserve, 3),
        kv_budget_gib=round(c.kv_budget, 3),
        kv_bytes_per_token=c.kv_per_token,
        max_model_len=length,
        max_concurrent_sequences=c.sequences,
        explanation=lines,
    )


def _no_fit_message(
    verifier: ModelArch,
    drafter: ModelArch | None,
    gpu: GpuType,
    requested: int | None,
    rejected: list[str],
    length: int,
    utilisation: float,
    weights: float,
    need: int,
) -> str:
    detail = "; ".join(rejected)
    if requested is not None:
        return f"tensorParallelSize {requested} does not work on {gpu.name}: {detail}"
    hint = ""
    largest = max(
        (
            tp
            for tp in TP_SIZES
            if tp_compatible(verifier, tp) is None
            and (drafter is None or tp_compatible(drafter, tp) is None)
        ),
        default=None,
    )
    if largest is not None:
        best = _evaluate(
            verifier,
            drafter,
            largest,
            gpu_gib=gpu.memory_gib,
            utilisation=utilisation,
            weights=weights,
            max_model_len=length,
        )
        if best.kv_budget > 0:
            fit_len = _longest_fitting_length(
                verifier, drafter, largest, best.kv_budget, need, length
            )
            if fit_len:
                hint = f"; at TP {largest} a maxModelLen of {fit_len} would fit"
    return (
        f"no tensor-parallel size up to {MAX_GPUS_PER_NODE} x {gpu.name} fits"
        f" (multi-node serving is not supported yet): {detail}{hint}."
        " Use a GPU with more memory, a lower maxModelLen or a quantized checkpoint."
    )


def _longest_fitting_length(
    verifier: ModelArch,
    drafter: ModelArch | None,
    tp: int,
    budget_gib: float,
    need: int,
    upper: int,
) -> int:
    """Largest context (multiple of 1024) whose ``need`` sequences fit ``budget_gib``."""

    def fits(n: int) -> bool:
        per = verifier.kv_bytes_per_sequence(n) * _kv_replication(verifier, tp)
        if drafter is not None:
            per += drafter.kv_bytes_per_sequence(n) * _kv_replication(drafter, tp)
        return per * need <= budget_gib * GIB

    lo, hi = 0, upper // 1024
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid * 1024):
            lo = mid
        else:
            hi = mid - 1
    return lo * 1024
