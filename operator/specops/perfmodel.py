"""Roofline physics of one vLLM engine step, shared by the simulator and the policy.

A decode step on a GPU is dominated by streaming bytes from HBM (every weight
once per step, plus every sequence's KV cache) and, as the batch grows, by the
matrix multiplies over the batched tokens. The two are **added**, not
max-ed: SpecDecode-Bench's fitted vLLM step time (calibration point C5) is a
sum of a per-KV-token, a per-batched-token and a constant term, and the
EAGLE-3 speedup tables (C3, C4) decline smoothly with batch size instead of
staying flat up to a compute knee, which a ``max`` would predict. Kernels in
one step do not overlap memory and compute perfectly, so the sum is the
better first-order model at the batch sizes vLLM runs.

One step of a replica with tensor parallelism ``tp`` costs::

    overhead_ms + per_seq_us * seqs                     (host: scheduler, launches)
    + (dense weights + touched experts) / tp / (BW * bandwidth)
    + KV tokens read * KV bytes/token / tp / (BW * bandwidth)
    + tokens * 2 * active params / tp / (FLOPS * compute)   (+ attention FLOPs)
    + 2 * layers * (comm_latency + ring all-reduce bytes / link)   (tp > 1)

and with speculation (``k`` drafted tokens per sequence) the verifier runs
``k + 1`` tokens per decoding sequence in that same forward, plus
``spec_overhead_ms`` (rejection sampling, draft bookkeeping) and ``k``
sequential drafter passes, each costing ``drafter_step_ms`` of launches plus
the drafter's own weights, KV and GEMMs by the same formulas.

Mixture-of-experts weights are read per *touched* expert: ``n`` tokens each
routed to ``topk`` of ``E`` experts touch ``E * (1 - (1 - topk/E)^n)``
experts per layer on average, which is why verifying ``k + 1`` tokens costs
an MoE far more than a dense model (calibration point C9).

The hardware efficiency terms live in :class:`Efficiencies`. Device terms
belong to the GPU; host terms (per-step and per-token overheads) belong to
the serving framework as well, so :data:`FRAMEWORKS` adjusts them: vLLM is
the calibrated default, SGLang hides its host work behind the GPU in plain
decoding but not under EAGLE (C3). The simulator uses the calibrated
defaults (``docs/simulator.md``), the policy fits them
online from observed inter-token latency and batch size. Everything here is
plain float arithmetic on precomputed constants (:class:`Replica`) because
the policy evaluates it thousands of times per decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from specops.gpus import GpuType
from specops.modelarch import MXFP4_BITS_PER_PARAM, ModelArch

ACTIVATION_BYTES = 2
"""Bytes per activation element exchanged by the tensor-parallel all-reduce (bf16)."""


@dataclass(frozen=True)
class Efficiencies:
    """Fractions of datasheet speed a replica reaches, and its fixed costs.

    Each term is one physical effect so that an online fit can move it
    without disturbing the others: ``bandwidth`` scales every HBM byte
    (weights and KV), ``compute`` every FLOP, ``comm`` the all-reduce link,
    ``overhead_ms`` is paid once per step (engine loop, scheduler, kernel
    launches with CUDA graphs), ``per_seq_us`` once per running sequence per
    step (host bookkeeping, sampling), ``spec_overhead_ms`` once per
    speculative step, ``spec_per_token_us`` per verified token (``k + 1`` per
    drafting sequence) and ``drafter_step_ms`` once per drafter pass.
    """

    bandwidth: float = 0.76
    compute: float = 0.75
    comm: float = 0.7
    comm_latency_us: float = 8.0
    overhead_ms: float = 1.2
    per_seq_us: float = 0.0
    spec_overhead_ms: float = 1.2
    drafter_step_ms: float = 0.7
    spec_per_token_us: float = 0.0

    def __post_init__(self) -> None:
        for name in ("bandwidth", "compute", "comm"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"efficiency {name} must be in (0, 1], got {value!r}")
        for name in (
            "comm_latency_us",
            "overhead_ms",
            "per_seq_us",
            "spec_overhead_ms",
            "drafter_step_ms",
            "spec_per_token_us",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)!r}")

    def perturbed(self, factor: float) -> Efficiencies:
        """The same hardware ``factor`` times slower (``factor > 1``) or faster.

        Every speed fraction is divided by ``factor`` (capped at 1) and every
        fixed cost multiplied by it, so a step costs about ``factor`` times as
        much: the knob behind the simulator's slowness injection and the
        policy's robustness checks.
        """
        if not factor > 0:
            raise ValueError(f"perturbation factor must be positive, got {factor!r}")
        return replace(
            self,
            bandwidth=min(1.0, self.bandwidth / factor),
            compute=min(1.0, self.compute / factor),
            comm=min(1.0, self.comm / factor),
            comm_latency_us=self.comm_latency_us * factor,
            overhead_ms=self.overhead_ms * factor,
            per_seq_us=self.per_seq_us * factor,
            spec_overhead_ms=self.spec_overhead_ms * factor,
            drafter_step_ms=self.drafter_step_ms * factor,
            spec_per_token_us=self.spec_per_token_us * factor,
        )


DEFAULT = Efficiencies(
    bandwidth=0.78,
    compute=0.8,
    comm=0.7,
    comm_latency_us=8.0,
    overhead_ms=1.2,
    per_seq_us=3.5,
    spec_overhead_ms=1.15,
    drafter_step_ms=0.68,
    spec_per_token_us=16.0,
)
"""vLLM on an H100 (C1, C2, C5); the prior for any GPU without its own fit.

``per_seq_us`` and ``spec_per_token_us`` (host bookkeeping per running sequence,
and rejection sampling / draft bookkeeping per verified token) shape how the
EAGLE-3 speedup declines with batch size: C5's per-sequence slope bounds the
first, and vLLM's own speedup table (C4, RTX 3090) holds both; C3's table is
SGLang's (:data:`FRAMEWORKS`). The others come from C1, C2, C5."""

DEFAULTS: dict[tuple[str, str], Efficiencies] = {
    ("H100-80GB", "dense"): DEFAULT,
}
"""Calibrated priors by (GPU catalogue name, model family ``dense``|``moe``), as vLLM serves."""

MOE_COMPUTE_FACTOR = 0.5
"""Grouped expert GEMMs reach about half the dense GEMM efficiency (prior, C9)."""

MOE_EXTRA_OVERHEAD_MS = 1.3
"""Routing, top-k, token permutation and grouped-GEMM launches in every MoE layer
cost about 1.3 ms more per step than a dense model's kernels (prior: it puts
gpt-oss-120B's single-stream TPOT on an H200 near 3.9 ms, ~255 tokens/s)."""

FRAMEWORKS: dict[str, dict[str, float]] = {
    "vllm": {},
    "sglang": {
        "overhead_ms": 0.6,
        "spec_overhead_ms": 0.15,
        "spec_per_token_us": 28.0,
    },
}
"""Host-cost terms that differ by serving framework (the device terms do not).

``vllm`` is the calibrated default. ``sglang`` (fitted on C3, EAGLE-3 in
SGLang on an H100):

* ``overhead_ms`` 0.6: SGLang's overlap scheduler prepares the next batch on
  the CPU while the GPU runs the current one, so a plain decode step pays
  only the GPU-side gaps. It puts Llama-3.1-8B's batch-1 TPOT at 6.4 ms,
  SGLang's published 158 tokens/s on MT-bench (SGLang docs, one H100).
* ``spec_overhead_ms`` 0.15 and ``spec_per_token_us`` 28: SGLang turns the
  overlap scheduler off for EAGLE (``server_args.py``: "Overlap scheduler is
  disabled because of using eagle speculative decoding"), so a speculative
  step's host work runs in series with the GPU; its draft loop and verify
  are CUDA graphs with little fixed cost, but the per-request work after
  verification (accepting tokens and checking stop conditions per token,
  assigning and freeing KV slots of rejected drafts) grows with the tokens
  verified, about 28 µs each against vLLM's 16.
"""


def default_efficiencies(gpu: str, family: str = "dense", framework: str = "vllm") -> Efficiencies:
    """The calibrated prior for a GPU, model family and serving framework.

    Falls back to the H100 fit for GPUs without their own entry. MoE models
    without their own entry take the dense entry with the compute
    efficiency scaled by :data:`MOE_COMPUTE_FACTOR` and
    :data:`MOE_EXTRA_OVERHEAD_MS` added to the per-step overhead. A
    framework other than ``vllm`` replaces the host-cost terms listed in
    :data:`FRAMEWORKS`.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown serving framework {framework!r}; known: {sorted(FRAMEWORKS)}")
    found = DEFAULTS.get((gpu, family))
    if found is None:
        found = DEFAULTS.get((gpu, "dense"), DEFAULT)
        if family == "moe":
            found = replace(
                found,
                compute=found.compute * MOE_COMPUTE_FACTOR,
                overhead_ms=found.overhead_ms + MOE_EXTRA_OVERHEAD_MS,
            )
    changes = FRAMEWORKS[framework]
    if not changes:
        return found
    if "overhead_ms" in changes and family == "moe":
        changes = {**changes, "overhead_ms": changes["overhead_ms"] + MOE_EXTRA_OVERHEAD_MS}
    return replace(found, **changes)


def _weight_size(arch: ModelArch) -> tuple[float, float]:
    """(bytes per dense parameter, bytes per routed-expert parameter) as served."""
    size = arch.dtype_bytes
    if arch.quantization == "mxfp4":
        return size, MXFP4_BITS_PER_PARAM / 8
    if arch.quantization == "fp8":
        return 1.0, 1.0
    return size, size


@dataclass(frozen=True)
class ModelCosts:
    """Per-GPU constants of one model under tensor parallelism ``tp``.

    Precomputed once so :func:`forward_seconds` is a handful of multiplies.
    """

    dense_bytes: float
    """Bytes of non-routed weights each GPU reads per forward (no embedding table)."""
    expert_bytes: float
    """Bytes of one routed expert across all MoE layers, per GPU."""
    num_experts: int
    experts_per_token: int
    kv_bytes_per_token: float
    """KV bytes per context token per GPU (full-attention layers)."""
    flops_per_token: float
    """GEMM FLOPs per token per GPU (2 x active parameters / tp)."""
    attention_flops_per_pair: float
    """Attention FLOPs per (query token, context token) pair per GPU."""
    allreduces: int
    """All-reduces per forward (2 per layer when tp > 1, else 0)."""
    allreduce_bytes_per_token: float
    """Bytes each GPU sends per token per all-reduce (ring: 2 (tp-1)/tp x hidden x 2)."""

    @classmethod
    def of(cls, arch: ModelArch, tp: int) -> ModelCosts:
        """Constants for ``arch`` split over ``tp`` GPUs."""
        if tp < 1:
            raise ValueError(f"tensor parallel size must be >= 1, got {tp}")
        dense_size, expert_size = _weight_size(arch)
        active = arch.active_param_count()
        expert_params = 0.0
        if arch.is_moe:
            per_expert = 3 * arch.hidden_size * arch.moe_intermediate_size
            expert_params = float(per_expert * arch.num_moe_layers)
            dense_params = active - arch.experts_per_token * expert_params
        else:
            dense_params = float(active)
        return cls(
            dense_bytes=dense_params * dense_size / tp,
            expert_bytes=expert_params * expert_size / tp,
            num_experts=arch.num_experts if arch.is_moe else 0,
            experts_per_token=arch.experts_per_token if arch.is_moe else 0,
            kv_bytes_per_token=arch.kv_bytes_per_token() / tp,
            flops_per_token=2.0 * active / tp,
            attention_flops_per_pair=4.0 * arch.num_full_attention_layers * arch.q_dim / tp,
            allreduces=2 * arch.num_layers if tp > 1 else 0,
            allreduce_bytes_per_token=(
                2.0 * (tp - 1) / tp * arch.hidden_size * ACTIVATION_BYTES if tp > 1 else 0.0
            ),
        )

    def touched_experts(self, tokens: float) -> float:
        """Expected distinct routed experts per MoE layer that ``tokens`` tokens touch."""
        if not self.num_experts or tokens <= 0:
            return 0.0
        miss = 1.0 - self.experts_per_token / self.num_experts
        return float(self.num_experts * (1.0 - miss**tokens))


@dataclass(frozen=True)
class Replica:
    """One replica's hardware and models: what a step-time prediction needs besides load."""

    gpu: GpuType
    tp: int
    verifier: ModelCosts
    drafter: ModelCosts | None
    family: str
    """``moe`` when the verifier routes experts, else ``dense``."""

    @classmethod
    def build(
        cls,
        verifier: ModelArch,
        gpu: GpuType,
        tp: int = 1,
        drafter: ModelArch | None = None,
        *,
        draft_tp: int | None = None,
    ) -> Replica:
        """Precompute the constants for ``verifier`` (and ``drafter``) on ``tp`` x ``gpu``.

        vLLM runs the drafter with the verifier's TP unless the speculative
        config sets ``draft_tensor_parallel_size`` (1 or equal to TP).
        """
        return cls(
            gpu=gpu,
            tp=tp,
            verifier=ModelCosts.of(verifier, tp),
            drafter=ModelCosts.of(drafter, draft_tp or tp) if drafter is not None else None,
            family="moe" if verifier.is_moe else "dense",
        )

    def default_efficiencies(self, framework: str = "vllm") -> Efficiencies:
        """The calibrated prior for this replica's GPU and model family under ``framework``."""
        return default_efficiencies(self.gpu.name, self.family, framework)


def forward_seconds(
    model: ModelCosts,
    gpu: GpuType,
    eff: Efficiencies,
    *,
    tokens: float,
    kv_tokens: float,
    attention_pairs: float = 0.0,
) -> float:
    """Device time of one forward over ``tokens`` tokens reading ``kv_tokens`` cached tokens.

    No fixed overhead: callers add the per-step and per-pass terms.
    """
    bandwidth = gpu.bandwidth_tb_s * 1e12 * eff.bandwidth
    flops = gpu.bf16_tflops * 1e12 * eff.compute
    weight_bytes = model.dense_bytes
    if model.num_experts:
        weight_bytes += model.touched_experts(tokens) * model.expert_bytes
    seconds = (weight_bytes + kv_tokens * model.kv_bytes_per_token) / bandwidth
    seconds += (
        tokens * model.flops_per_token + attention_pairs * model.attention_flops_per_pair
    ) / (flops)
    if model.allreduces:
        link = gpu.interconnect_gb_s * 1e9 / 2 * eff.comm  # one-way rate of the link
        per_allreduce = eff.comm_latency_us * 1e-6 + tokens * model.allreduce_bytes_per_token / link
        seconds += model.allreduces * per_allreduce
    return seconds


def engine_step_seconds(
    replica: Replica,
    eff: Efficiencies,
    *,
    seqs: int,
    tokens: int,
    kv_tokens: float,
    attention_pairs: float = 0.0,
    k: int = 0,
    drafting_seqs: int = 0,
    draft_kv_tokens: float = 0.0,
) -> float:
    """Wall time of one engine step as the simulator's scheduler built it.

    ``seqs`` sequences are scheduled with ``tokens`` tokens in total (prefill
    chunks, and ``1 + k`` per decoding sequence), reading ``kv_tokens``
    cached tokens; ``drafting_seqs`` of them then draft ``k`` tokens each,
    the drafter's first pass running over the same ``tokens`` and each
    further pass over one token per drafting sequence.
    """
    seconds = eff.overhead_ms * 1e-3 + seqs * eff.per_seq_us * 1e-6
    seconds += forward_seconds(
        replica.verifier,
        replica.gpu,
        eff,
        tokens=tokens,
        kv_tokens=kv_tokens,
        attention_pairs=attention_pairs,
    )
    if k > 0 and drafting_seqs > 0 and replica.drafter is not None:
        verified = drafting_seqs * (k + 1)  # rejection sampling works on decode tokens only
        seconds += eff.spec_overhead_ms * 1e-3 + verified * eff.spec_per_token_us * 1e-6
        drafter = replica.drafter
        for step in range(k):
            pass_tokens = tokens if step == 0 else drafting_seqs
            seconds += eff.drafter_step_ms * 1e-3 + forward_seconds(
                drafter, replica.gpu, eff, tokens=pass_tokens, kv_tokens=draft_kv_tokens
            )
    return seconds


def decode_step_seconds(
    replica: Replica,
    batch_size: int,
    mean_context: float,
    k: int = 0,
    eff: Efficiencies | None = None,
) -> float:
    """Step time of a steady decode batch: the policy's question, "how long is one step?".

    ``batch_size`` sequences with ``mean_context`` cached tokens each, all
    decoding; with ``k > 0`` (and a drafter) each verifies ``k + 1`` tokens.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    eff = eff or replica.default_efficiencies()
    spec = k > 0 and replica.drafter is not None
    per_seq = 1 + k if spec else 1
    kv = batch_size * mean_context
    return engine_step_seconds(
        replica,
        eff,
        seqs=batch_size,
        tokens=batch_size * per_seq,
        kv_tokens=kv,
        attention_pairs=kv * per_seq,
        k=k if spec else 0,
        drafting_seqs=batch_size if spec else 0,
        draft_kv_tokens=kv,
    )


def expected_tokens_per_step(acceptance: float | Sequence[float], k: int) -> float:
    """Mean tokens emitted per verification step (acceptance length, bonus token included).

    ``acceptance`` is a flat per-token alpha or the conditional acceptance of
    each position (position ``i`` accepted given ``0..i-1`` were); the result
    is ``1 + sum_j prod_{i<=j} a_i`` (Leviathan et al. for flat alpha).
    """
    if k <= 0:
        return 1.0
    if isinstance(acceptance, int | float):
        alpha = float(acceptance)
        if alpha >= 1.0:
            return float(k + 1)
        return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)
    total, running = 1.0, 1.0
    for i in range(k):
        a = acceptance[i] if i < len(acceptance) else acceptance[-1]
        running *= a
        total += running
    return total


def tpot_seconds(
    replica: Replica,
    batch_size: int,
    mean_context: float,
    k: int,
    acceptance: float | Sequence[float],
    eff: Efficiencies | None = None,
) -> float:
    """Time per output token of one sequence in a steady decode batch."""
    step = decode_step_seconds(replica, batch_size, mean_context, k, eff)
    tokens = expected_tokens_per_step(acceptance, k) if replica.drafter is not None else 1.0
    return step / tokens


def throughput_tokens_per_second(
    replica: Replica,
    batch_size: int,
    mean_context: float,
    k: int,
    acceptance: float | Sequence[float],
    eff: Efficiencies | None = None,
) -> float:
    """Output tokens per second of the replica at a steady decode batch."""
    return batch_size / tpot_seconds(replica, batch_size, mean_context, k, acceptance, eff)


def best_k(
    replica: Replica,
    batch_size: int,
    mean_context: float,
    acceptance: float | Sequence[float],
    max_k: int = 8,
    eff: Efficiencies | None = None,
) -> int:
    """The number of speculative tokens (0 = off) with the lowest TPOT at this load."""
    if replica.drafter is None:
        return 0
    best, best_tpot = 0, math.inf
    for k in range(max_k + 1):
        tpot = tpot_seconds(replica, batch_size, mean_context, k, acceptance, eff)
        if tpot < best_tpot - 1e-12:
            best, best_tpot = k, tpot
    return best
