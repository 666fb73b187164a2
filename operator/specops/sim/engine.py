"""A discrete-event model of vLLM V1's scheduler with speculative decoding.

The simulator has to reproduce what a control loop sees from a real replica:
batch sizes that grow with load, queueing when the KV cache or
``max_num_seqs`` is full, preemptions, and speculative decoding's accepted
tokens. So the engine follows vLLM V1's scheduler step by step rather than
a queueing formula:

* **Continuous batching.** Each step first schedules the running requests in
  order (decodes take ``1 + k`` tokens, unfinished prefills a chunk), then
  admits waiting requests first-come first-served, all within
  ``max_num_batched_tokens`` (chunked prefill) and ``max_num_seqs``.
* **KV cache in blocks of 16 tokens.** A waiting request is admitted only
  if its chunk's blocks fit; a running request that cannot grow preempts the
  last-scheduled running request, which gives up its blocks and waits at the
  head of the queue to recompute (``vllm:num_preemptions``).
* **Prefix caching (on by default in V1).** Freed full blocks stay cached
  until they are needed: allocation takes never-used blocks first, then
  evicts the least recently freed cached ones. A request that names a
  prefix (a conversation's earlier turn, or its own work before a
  preemption) reuses whatever of it is still cached when it is admitted and
  recomputes the rest. Under memory pressure the free pool turns over fast,
  so a follow-up turn that waits in the queue often finds its prefix gone:
  the cost of a small KV cache is paid in prefill, as on the GPU.
* **Step time** comes from :mod:`specops.perfmodel`.
* **Speculation.** Every decoding request drafts ``k`` tokens; the number
  accepted is drawn from the acceptance profile with a counter-based RNG
  keyed by (seed, request number, decode step), so runs are reproducible
  regardless of how they are driven; emitted tokens = accepted + 1, capped by
  the tokens the request still wants. ``num_speculative_tokens_per_batch_size``
  picks ``k`` from the number of running requests, as vLLM's dynamic
  speculative decoding does.

The engine is pure: it never reads a clock. A virtual-time driver
(:func:`simulate`) and the real-time HTTP server both call :meth:`Engine.step`
with their notion of "now".
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from specops import perfmodel, sizing
from specops.modelarch import ModelArch
from specops.sim.acceptance import (
    AcceptanceProfile,
    draw_accepted,
    exponential,
    uniform,
    uniform_at,
)
from specops.sim.acceptance import key as rng_key

BLOCK_SIZE = 16
"""vLLM's default KV-cache block size in tokens."""

GIB = 1024**3

# Purposes mixed into the counter-based RNG so that draws for different uses never collide.
PURPOSE_ACCEPT = 1
PURPOSE_ARRIVAL = 2
PURPOSE_PROMPT = 3
PURPOSE_OUTPUT = 4


def vllm_default_limits(gpu_memory_gib: float, gpu_name: str) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) vLLM picks for ``vllm serve``.

    vLLM's ``EngineArgs._set_default_args`` uses 8192 tokens / 1024 sequences
    for the OpenAI server on GPUs with at least 70 GiB that are not A100s
    (H100, H200, MI300X, B200), else 2048 / 256.
    """
    if gpu_memory_gib >= 70 and "A100" not in gpu_name.upper():
        return 8192, 1024
    return 2048, 256


NON_TORCH_GIB = 0.3
"""Per-GPU memory vLLM's profile counts outside PyTorch's allocator on one GPU
(cuBLAS workspaces, allocator slack); NCCL buffers add :data:`NCCL_GIB` under
tensor parallelism. vLLM logs both as ``non_torch_memory``."""
NCCL_GIB = 0.3


def profiled_reserve_gib(
    verifier: ModelArch, tp: int, *, max_num_batched_tokens: int, max_num_seqs: int
) -> float:
    """Per-GPU memory vLLM's profiling run holds back from the KV cache.

    The peak activations of one forward pass over ``max_num_batched_tokens``
    tokens, the sampler's fp32 logits for ``max_num_seqs`` sequences, and
    non-torch allocations (the same activation formula the operator's sizing
    uses, at the limits this replica runs with). CUDA graphs are captured
    after the KV cache is allocated, out of the share that
    ``gpu_memory_utilization`` leaves, so they are not subtracted here. The
    reserve matters on small cards: with a 2,048-token budget it is about
    0.6 GiB for an 8B model, a fifth of a 24 GB card's KV cache.
    """
    fixed = NON_TORCH_GIB + (NCCL_GIB if tp > 1 else 0.0)
    return sizing.activation_reserve_gib(
        verifier,
        tp,
        batched_tokens=max_num_batched_tokens,
        max_seqs=max_num_seqs,
        fixed_gib=fixed,
    )


def kv_cache_blocks(
    replica: perfmodel.Replica,
    *,
    gpu_memory_utilization: float,
    weights_bytes: float,
    kv_bytes_per_token: float,
    activation_reserve_gib: float,
    block_size: int = BLOCK_SIZE,
) -> int:
    """KV blocks the replica can hold, as vLLM sizes them after profiling.

    Per GPU: memory x utilisation, minus its shard of the weights, minus the
    profiling run's reserve (:func:`profiled_reserve_gib`); what is left
    holds KV blocks of ``block_size`` tokens (``kv_bytes_per_token`` for the
    whole replica, verifier plus drafter).
    """
    tp = replica.tp
    per_gpu = replica.gpu.memory_gib * GIB * gpu_memory_utilization
    free = per_gpu - weights_bytes / tp - activation_reserve_gib * GIB
    per_block = kv_bytes_per_token / tp * block_size
    if free <= 0 or per_block <= 0:
        return 0
    return int(free // per_block)


def served_weight_bytes(verifier: ModelArch, drafter: ModelArch | None = None) -> float:
    """Bytes of weights the replica loads: the verifier's plus the drafter's own.

    An EAGLE-style drafter whose vocabulary and width match the verifier's
    shares the verifier's input embedding in vLLM, so that table is not
    counted twice; a drafter is served in the verifier's dtype.
    """
    total = verifier.weight_bytes()
    if drafter is not None:
        own = drafter.weight_bytes(verifier.dtype_bytes)
        if drafter.is_drafter and (drafter.vocab_size, drafter.hidden_size) == (
            verifier.vocab_size,
            verifier.hidden_size,
        ):
            own -= drafter.embedding_params() * verifier.dtype_bytes
        total += own
    return total


@dataclass(frozen=True)
class EngineConfig:
    """Everything that fixes a replica's behaviour, as vLLM's flags and the GPU define it."""

    replica: perfmodel.Replica
    num_gpu_blocks: int
    max_model_len: int
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    num_speculative_tokens: int = 0
    k_by_batch_size: tuple[tuple[int, int, int], ...] = ()
    """vLLM's ``num_speculative_tokens_per_batch_size``: ``(lo, hi, k)`` bands."""
    acceptance: AcceptanceProfile | None = None
    efficiencies: perfmodel.Efficiencies = perfmodel.DEFAULT
    seed: int = 0
    block_size: int = BLOCK_SIZE

    def __post_init__(self) -> None:
        if self.num_gpu_blocks <= 0:
            raise ValueError(
                "no memory left for the KV cache: weights do not fit the GPUs at this "
                "gpu-memory-utilization and tensor-parallel size"
            )
        for name in ("max_model_len", "max_num_seqs", "max_num_batched_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_speculative_tokens < 0:
            raise ValueError("num_speculative_tokens must not be negative")
        if self.speculative and self.replica.drafter is None:
            raise ValueError("speculative decoding needs a drafter model")

    @property
    def speculative(self) -> bool:
        return self.num_speculative_tokens > 0 or any(k for _, _, k in self.k_by_batch_size)

    def k_for(self, running: int) -> int:
        """Speculative tokens this step, by the dynamic table when one is set."""
        for lo, hi, k in self.k_by_batch_size:
            if lo <= running <= hi:
                return k
        return self.num_speculative_tokens


class Request:
    """One request's state inside the engine (plain slots: the hot loop touches these)."""

    __slots__ = (
        "accept_key",
        "arrival",
        "blocks",
        "cache_as",
        "computed",
        "decode_steps",
        "finish_reason",
        "finished_at",
        "first_scheduled",
        "first_token_at",
        "key",
        "last_token_at",
        "max_tokens",
        "natural_stop",
        "number",
        "output",
        "preemptions",
        "prefix",
        "prefix_tokens",
        "profile",
        "prompt",
    )

    def __init__(
        self,
        number: int,
        arrival: float,
        prompt: int,
        max_tokens: int,
        *,
        natural_stop: bool = False,
        key: object = None,
    ) -> None:
        self.number = number
        self.key = key
        self.arrival = arrival
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.natural_stop = natural_stop
        self.profile: AcceptanceProfile | None = None
        self.computed = 0
        self.output = 0
        self.blocks = 0
        self.decode_steps = 0
        self.preemptions = 0
        self.first_scheduled: float | None = None
        self.first_token_at: float | None = None
        self.last_token_at = arrival
        self.finished_at: float | None = None
        self.finish_reason: str | None = None
        self.accept_key = 0
        self.prefix: object = None
        self.prefix_tokens = 0
        self.cache_as: object = None


class TokenEvent:
    """Tokens one request produced in a step (``first`` marks its first token)."""

    __slots__ = ("finished", "first", "previous_token_at", "request", "tokens")

    def __init__(
        self, request: Request, tokens: int, first: bool, finished: bool, previous_token_at: float
    ) -> None:
        self.request = request
        self.tokens = tokens
        self.first = first
        self.finished = finished
        self.previous_token_at = previous_token_at


@dataclass
class StepResult:
    """What one step did, for metrics and for delivering tokens."""

    start: float
    end: float
    prompt_tokens: int = 0
    """New prompt tokens (vLLM's ``prompt_tokens`` counter: a recompute is not counted again)."""
    prefill_tokens: int = 0
    """Every token prefilled this step: new prompt tokens plus recomputation after preemption."""
    generation_tokens: int = 0
    k: int = 0
    drafts: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    accepted_per_position: list[int] = field(default_factory=list)
    preemptions: int = 0
    events: list[TokenEvent] = field(default_factory=list)
    admitted: list[Request] = field(default_factory=list)
    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0


class Engine:
    """vLLM V1's scheduler loop over simulated time (see the module docstring)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.efficiencies = config.efficiencies
        self.acceptance = config.acceptance
        self.running: list[Request] = []
        self.waiting: deque[Request] = deque()
        self.free_blocks = config.num_gpu_blocks
        """Blocks not held by a running request, cached ones included (vLLM's free queue)."""
        self._cache: OrderedDict[object, int] = OrderedDict()
        """Cached (freed, evictable) full blocks per prefix key, least recently freed first."""
        self._cached_blocks = 0
        self.clock = 0.0
        self._next_number = 0
        self._survival: dict[int, tuple[float, ...]] = {}
        self._profile_survival: dict[tuple[AcceptanceProfile, int], tuple[float, ...]] = {}

    # ---- requests -------------------------------------------------------
    def add_request(
        self,
        prompt_tokens: int,
        max_tokens: int,
        *,
        arrival: float | None = None,
        natural_stop: bool = False,
        key: object = None,
        profile: AcceptanceProfile | None = None,
        prefix: object = None,
        prefix_tokens: int = 0,
        cache_as: object = None,
    ) -> Request:
        """Queue a request; ``natural_stop`` reports ``stop`` instead of ``length`` at the end.

        ``profile`` overrides the engine's acceptance profile for this request
        (traffic that mixes tasks: code accepts more drafts than chat).
        ``prefix``/``prefix_tokens``: the request's first ``prefix_tokens``
        prompt tokens are those an earlier request left cached under the key
        ``prefix`` (a conversation's earlier turn); whatever of them is still
        cached at admission costs KV blocks but no prefill compute. At least
        the last prompt token is always computed, as in vLLM. ``cache_as``:
        the key this request's blocks stay cached under when it finishes.

        Raises ``ValueError`` for a request vLLM would reject (too long for
        ``max_model_len``).
        """
        if prompt_tokens < 1:
            raise ValueError("a prompt needs at least one token")
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if prefix_tokens < 0:
            raise ValueError("prefix_tokens must not be negative")
        if prompt_tokens + max_tokens > self.config.max_model_len:
            raise ValueError(
                f"This model's maximum context length is {self.config.max_model_len} tokens. "
                f"However, you requested {prompt_tokens + max_tokens} tokens "
                f"({prompt_tokens} in the messages, {max_tokens} in the completion)."
            )
        request = Request(
            self._next_number,
            self.clock if arrival is None else arrival,
            prompt_tokens,
            max_tokens,
            natural_stop=natural_stop,
            key=key,
        )
        request.profile = profile
        if prefix is not None:
            request.prefix = prefix
            request.prefix_tokens = min(prefix_tokens, prompt_tokens - 1)
        request.cache_as = cache_as
        request.accept_key = rng_key(self.config.seed, PURPOSE_ACCEPT, request.number)
        self._next_number += 1
        self.waiting.append(request)
        return request

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    def set_acceptance(self, profile: AcceptanceProfile | None) -> None:
        """Change the acceptance profile from the next step on (control endpoint)."""
        self.acceptance = profile
        self._survival.clear()

    def set_efficiencies(self, efficiencies: perfmodel.Efficiencies) -> None:
        """Change the hardware efficiencies from the next step on (slowness injection)."""
        self.efficiencies = efficiencies

    @property
    def kv_usage(self) -> float:
        total = self.config.num_gpu_blocks
        return (total - self.free_blocks) / total

    # ---- scheduling -----------------------------------------------------
    def _preempt(self, victim: Request) -> None:
        self.running.pop()  # always the last running request
        # Its computed blocks stay cached under its own key: if they survive
        # until it is admitted again, it recomputes only what was evicted.
        victim.prefix = victim
        victim.prefix_tokens = victim.computed
        self._release(victim, victim)
        victim.computed = 0
        victim.preemptions += 1
        self.waiting.appendleft(victim)

    def _blocks_for(self, request: Request, new_tokens: int) -> int:
        size = self.config.block_size
        return max(0, -(-(request.computed + new_tokens) // size) - request.blocks)

    def _allocate(self, request: Request, blocks: int) -> None:
        """Give ``blocks`` free blocks to ``request``: never-used ones first, then
        the least recently freed cached ones (evicting their prefix from the cache)."""
        shortfall = blocks - (self.free_blocks - self._cached_blocks)
        while shortfall > 0:
            key, count = next(iter(self._cache.items()))
            evicted = min(count, shortfall)
            if evicted == count:
                del self._cache[key]
            else:
                self._cache[key] = count - evicted
            self._cached_blocks -= evicted
            shortfall -= evicted
        self.free_blocks -= blocks
        request.blocks += blocks

    def _release(self, request: Request, key: object) -> None:
        """Return a request's blocks to the free pool; its full blocks stay cached under ``key``."""
        self.free_blocks += request.blocks
        full = min(request.blocks, request.computed // self.config.block_size)
        request.blocks = 0
        if key is None or full <= 0:
            return
        self._cached_blocks -= self._cache.pop(key, 0)
        self._cache[key] = full
        self._cached_blocks += full

    def _prefix_hit(self, request: Request) -> int:
        """Blocks of the request's named prefix still cached (usable at admission)."""
        if request.prefix is None:
            return 0
        usable = request.prefix_tokens // self.config.block_size
        return min(self._cache.get(request.prefix, 0), usable)

    def _claim_prefix(self, request: Request, hit: int) -> None:
        """Move ``hit`` cached prefix blocks to the request; the rest of that entry is
        no longer anybody's prefix and becomes plain free blocks."""
        if request.prefix is not None:
            self._cached_blocks -= self._cache.pop(request.prefix, 0)
        request.prefix = None
        request.prefix_tokens = 0
        self.free_blocks -= hit
        request.blocks = hit
        request.computed = hit * self.config.block_size

    def step(self, now: float) -> StepResult | None:
        """Run one engine step starting at ``now`` (or at the engine clock if later).

        Returns ``None`` when nothing can be scheduled (idle, or waiting for
        memory that nobody will free).
        """
        config = self.config
        start = max(now, self.clock)
        budget = config.max_num_batched_tokens
        k = config.k_for(len(self.running)) if config.speculative else 0
        scheduled: list[tuple[Request, int, bool]] = []  # (request, new tokens, is_decode)
        preemptions = 0

        # Victims are taken from the end of the running list, so they are always
        # requests this loop has not reached yet (or the current one).
        index = 0
        while index < len(self.running) and budget > 0:
            request = self.running[index]
            target = request.prompt + request.output
            decoding = request.computed >= target - 1 and request.output > 0
            if decoding:
                room = config.max_model_len - target
                new = min(1 + min(k, max(room, 0)), budget)
            else:
                new = min(target - request.computed, budget)
            need = self._blocks_for(request, new)
            preempted_self = False
            while need > self.free_blocks:
                victim = self.running[-1]
                self._preempt(victim)
                preemptions += 1
                if victim is request:
                    preempted_self = True
                    break
            if preempted_self:
                break
            self._allocate(request, need)
            budget -= new
            scheduled.append((request, new, decoding))
            index += 1

        admitted: list[Request] = []
        if not preemptions:
            while self.waiting and budget > 0 and len(self.running) < config.max_num_seqs:
                request = self.waiting[0]
                if request.arrival > start:
                    break
                hit = self._prefix_hit(request)
                size = config.block_size
                new = min(request.prompt + request.output - hit * size, budget)
                need = -(-(hit * size + new) // size)  # the hit blocks included
                if need > self.free_blocks:
                    break
                self.waiting.popleft()
                self._claim_prefix(request, hit)
                self._allocate(request, need - hit)
                budget -= new
                self.running.append(request)
                if request.first_scheduled is None:
                    request.first_scheduled = start
                admitted.append(request)
                scheduled.append((request, new, False))

        if not scheduled:
            return None
        return self._execute(start, scheduled, k, preemptions, admitted)

    def _execute(
        self,
        start: float,
        scheduled: list[tuple[Request, int, bool]],
        k: int,
        preemptions: int,
        admitted: list[Request],
    ) -> StepResult:
        tokens = 0
        kv_tokens = 0
        pairs = 0.0
        drafting = 0
        for request, new, decoding in scheduled:
            tokens += new
            kv_tokens += request.computed
            pairs += new * (request.computed + new / 2)
            if decoding and new > 1:
                drafting += 1
        step_k = k if drafting else 0
        duration = perfmodel.engine_step_seconds(
            self.config.replica,
            self.efficiencies,
            seqs=len(scheduled),
            tokens=tokens,
            kv_tokens=kv_tokens,
            attention_pairs=pairs,
            k=step_k,
            drafting_seqs=drafting,
            draft_kv_tokens=kv_tokens,
        )
        end = start + duration
        self.clock = end
        result = StepResult(start=start, end=end, k=step_k, preemptions=preemptions)
        result.admitted = admitted
        per_position = [0] * step_k
        survival = self._survival_for(step_k)
        for request, new, decoding in scheduled:
            emitted = 0
            if decoding:
                drafted = new - 1
                accepted = 0
                if drafted > 0 and survival is not None:
                    own = survival
                    if request.profile is not None:
                        own = self._survival_of(request.profile, step_k)
                    u = uniform_at(request.accept_key, request.decode_steps)
                    accepted = min(draw_accepted(own, u), drafted)
                    result.drafts += 1
                    result.draft_tokens += drafted
                    result.accepted_tokens += accepted
                    for i in range(accepted):
                        per_position[i] += 1
                request.decode_steps += 1
                emitted = min(1 + accepted, request.max_tokens - request.output)
                request.computed += emitted
            else:
                request.computed += new
                result.prefill_tokens += new
                if request.output == 0:
                    result.prompt_tokens += new
                if request.computed >= request.prompt + request.output:
                    emitted = 1  # the step that completes a prefill samples a token
            if emitted:
                first = request.output == 0
                previous = request.last_token_at
                request.output += emitted
                request.last_token_at = end
                if first:
                    request.first_token_at = end
                result.generation_tokens += emitted
                finished = request.output >= request.max_tokens
                if finished:
                    self._finish(request, end)
                result.events.append(TokenEvent(request, emitted, first, finished, previous))
        result.accepted_per_position = per_position
        result.running = len(self.running)
        result.waiting = len(self.waiting)
        result.kv_usage = self.kv_usage
        return result

    def _survival_for(self, k: int) -> tuple[float, ...] | None:
        if k <= 0 or self.acceptance is None:
            return None
        cached = self._survival.get(k)
        if cached is None:
            cached = self.acceptance.survival(k)
            self._survival[k] = cached
        return cached

    def _survival_of(self, profile: AcceptanceProfile, k: int) -> tuple[float, ...]:
        cached = self._profile_survival.get((profile, k))
        if cached is None:
            cached = profile.survival(k)
            self._profile_survival[(profile, k)] = cached
        return cached

    def _finish(self, request: Request, at: float) -> None:
        self.running.remove(request)
        self._release(request, request.cache_as)
        request.finished_at = at
        request.finish_reason = "stop" if request.natural_stop else "length"

    def abort(self, request: Request) -> None:
        """Drop a request (client went away), freeing its cache."""
        if request in self.running:
            self.running.remove(request)
            self._release(request, request.cache_as)
        elif request in self.waiting:
            self.waiting.remove(request)
        request.finish_reason = "abort"


# ---- virtual time ---------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Traffic for a virtual-time run.

    Exactly one of ``concurrency`` (closed loop: a new request as soon as one
    finishes) and ``rate`` (open loop: Poisson arrivals, requests/s) is set.
    Lengths are fixed, or drawn uniformly from an inclusive ``(lo, hi)``
    range with the counter-based RNG; ``prompt_lengths`` (e.g. the token
    counts of a prompt file) overrides ``prompt_tokens``, request ``i``
    taking entry ``i`` modulo its length.
    """

    num_requests: int
    prompt_tokens: int | tuple[int, int] = 512
    output_tokens: int | tuple[int, int] = 256
    concurrency: int | None = None
    rate: float | None = None
    seed: int = 0
    prompt_lengths: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.num_requests < 1:
            raise ValueError("a workload needs at least one request")
        if (self.concurrency is None) == (self.rate is None):
            raise ValueError("give exactly one of concurrency or rate")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be positive")
        if any(n < 1 for n in self.prompt_lengths):
            raise ValueError("prompt lengths must be >= 1")

    def length(self, spec: int | tuple[int, int], purpose: int, index: int) -> int:
        if isinstance(spec, int):
            return spec
        lo, hi = spec
        return lo + int(uniform(self.seed, purpose, index) * (hi - lo + 1))


@dataclass(frozen=True)
class RequestRecord:
    """One finished request, with the latencies a benchmark reports."""

    number: int
    arrival: float
    prompt_tokens: int
    output_tokens: int
    queue_time: float
    ttft: float
    e2e: float
    preemptions: int
    finish_reason: str

    @property
    def tpot(self) -> float:
        """Mean time per output token after the first (vLLM's TPOT)."""
        if self.output_tokens <= 1:
            return 0.0
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


@dataclass(frozen=True)
class SimulationResult:
    """A virtual-time run's requests and aggregates."""

    records: tuple[RequestRecord, ...]
    duration: float
    steps: int
    drafts: int
    draft_tokens: int
    accepted_tokens: int
    accepted_per_position: tuple[int, ...]
    preemptions: int
    mean_batch: float

    @property
    def output_tokens_per_second(self) -> float:
        return sum(r.output_tokens for r in self.records) / self.duration if self.duration else 0.0

    @property
    def requests_per_second(self) -> float:
        return len(self.records) / self.duration if self.duration else 0.0

    @property
    def acceptance_length(self) -> float:
        """vLLM's mean acceptance length, 1 + accepted / drafts (1 without speculation)."""
        return 1.0 + self.accepted_tokens / self.drafts if self.drafts else 1.0

    def mean(self, metric: str) -> float:
        values = [getattr(r, metric) for r in self.records]
        return sum(values) / len(values) if values else 0.0

    def percentile(self, metric: str, q: float) -> float:
        values = sorted(getattr(r, metric) for r in self.records)
        if not values:
            return 0.0
        rank = min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))
        return float(values[rank])


def simulate(
    config: EngineConfig,
    workload: Workload,
    *,
    observer: Callable[[StepResult], None] | None = None,
    max_steps: int = 50_000_000,
) -> SimulationResult:
    """Run ``workload`` through a fresh engine as fast as possible (virtual time).

    ``observer`` sees every step (the Prometheus metrics use it).
    """
    engine = Engine(config)
    issued = 0
    arrivals: deque[float] = deque()
    if workload.rate is not None:
        t = 0.0
        for i in range(workload.num_requests):
            t += exponential(1.0 / workload.rate, workload.seed, PURPOSE_ARRIVAL, i)
            arrivals.append(t)
    else:
        arrivals.extend([0.0] * min(workload.concurrency or 1, workload.num_requests))

    def issue(at: float) -> None:
        nonlocal issued
        lengths = workload.prompt_lengths
        engine.add_request(
            lengths[issued % len(lengths)]
            if lengths
            else workload.length(workload.prompt_tokens, PURPOSE_PROMPT, issued),
            workload.length(workload.output_tokens, PURPOSE_OUTPUT, issued),
            arrival=at,
        )
        issued += 1

    finished: list[Request] = []
    steps = 0
    batch_total = 0
    totals = [0, 0, 0, 0]  # drafts, draft tokens, accepted, preemptions
    per_position: list[int] = []
    now = 0.0
    while len(finished) < workload.num_requests:
        while arrivals and arrivals[0] <= now:
            issue(arrivals.popleft())
        result = engine.step(now)
        if result is None:
            if not arrivals:
                raise RuntimeError(
                    "simulation stalled: requests wait for KV cache that never frees "
                    "(a prompt larger than the whole cache?)"
                )
            now = max(now, arrivals[0])
            continue
        steps += 1
        if steps > max_steps:
            raise RuntimeError(f"simulation exceeded {max_steps} steps")
        now = result.end
        batch_total += len(result.events)
        totals[0] += result.drafts
        totals[1] += result.draft_tokens
        totals[2] += result.accepted_tokens
        totals[3] += result.preemptions
        if len(per_position) < len(result.accepted_per_position):
            per_position.extend([0] * (len(result.accepted_per_position) - len(per_position)))
        for i, n in enumerate(result.accepted_per_position):
            per_position[i] += n
        for event in result.events:
            if event.finished:
                finished.append(event.request)
                if (
                    workload.concurrency is not None
                    and issued + len(arrivals) < workload.num_requests
                ):
                    arrivals.append(now)
        if observer is not None:
            observer(result)
    records = tuple(_record(r) for r in sorted(finished, key=lambda r: r.number))
    return SimulationResult(
        records=records,
        duration=now,
        steps=steps,
        drafts=totals[0],
        draft_tokens=totals[1],
        accepted_tokens=totals[2],
        accepted_per_position=tuple(per_position),
        preemptions=totals[3],
        mean_batch=batch_total / steps if steps else 0.0,
    )


def _record(request: Request) -> RequestRecord:
    assert request.finished_at is not None and request.first_token_at is not None
    scheduled = request.first_scheduled if request.first_scheduled is not None else request.arrival
    return RequestRecord(
        number=request.number,
        arrival=request.arrival,
        prompt_tokens=request.prompt,
        output_tokens=request.output,
        queue_time=scheduled - request.arrival,
        ttft=request.first_token_at - request.arrival,
        e2e=request.finished_at - request.arrival,
        preemptions=request.preemptions,
        finish_reason=request.finish_reason or "length",
    )


def sweep(
    config: EngineConfig,
    workloads: Sequence[Workload],
) -> list[SimulationResult]:
    """Run several workloads (e.g. a rate sweep), each on a fresh engine."""
    return [simulate(config, w) for w in workloads]
