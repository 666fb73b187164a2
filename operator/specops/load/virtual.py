"""Profiles in simulated time: the simulator library instead of HTTP.

A ten-point sweep of a live endpoint takes minutes; the same sweep through
:func:`specops.sim.engine.simulate` takes seconds of CPU, which is what
benchmarks and policy evaluation need. Every engine step's token events are
turned into the same :class:`~specops.load.stats.RequestRecord` a live run
produces (one "chunk" per request per step, as the server streams them), so
:mod:`.stats` and :mod:`.report` treat both alike.

Bounds: a profile simulates at most ``max_requests`` requests; a rate
profile also at most ``rate x duration`` (the arrivals a live run of that
duration would send).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from pathlib import Path

from specops.load.progress import Progress
from specops.load.runner import Bounds
from specops.load.schedule import Profile
from specops.load.stats import RequestRecord


class VirtualError(ValueError):
    """The simulated replica cannot be built from the given model/GPU/flags."""


class VirtualRunner:
    """``run(profile, index)`` backed by the simulator engine, in virtual time."""

    def __init__(
        self, replica: object, prompt_tokens: int, output_tokens: int, bounds: Bounds, seed: int
    ) -> None:
        from specops.sim.args import SimulatedReplica

        assert isinstance(replica, SimulatedReplica)
        self.replica = replica
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.bounds = bounds
        self.seed = seed
        self.progress: Progress | None = None

    def requests_for(self, profile: Profile) -> int:
        if profile.kind == "rate":
            by_time = math.ceil(profile.value * self.bounds.duration_s)
            return max(1, min(self.bounds.max_requests, by_time))
        return self.bounds.max_requests

    def __call__(self, profile: Profile, index: int) -> list[RequestRecord]:
        from specops.sim.engine import StepResult, Workload, simulate

        workload = Workload(
            num_requests=self.requests_for(profile),
            prompt_tokens=self.prompt_tokens,
            output_tokens=self.output_tokens,
            concurrency=int(profile.value) if profile.kind == "concurrency" else None,
            rate=profile.value if profile.kind == "rate" else None,
            seed=self.seed + index,
        )
        records: dict[int, RequestRecord] = {}

        def observe(step: StepResult) -> None:
            for event in step.events:
                request = event.request
                record = records.get(request.number)
                if record is None:
                    record = records[request.number] = RequestRecord(
                        start=request.arrival, prompt_tokens=request.prompt
                    )
                record.chunk_times.append(step.end)
                record.output_tokens += event.tokens
                if event.finished:
                    record.end = step.end

        try:
            simulate(self.replica.engine, workload, observer=observe)
        except (RuntimeError, ValueError) as exc:
            raise VirtualError(f"simulation failed: {exc}") from None
        out = [records[n] for n in sorted(records)]
        if self.progress is not None:
            self.progress.update(index, profile.label, len(out), len(out), 0.0)
        return out


def make_runner(
    *,
    model: str,
    gpu: str,
    vllm_args: str,
    hub_mirror: Path | None,
    prompts: Sequence[str] | None,
    prompt_tokens: int,
    output_tokens: int,
    bounds: Bounds,
    seed: int,
) -> VirtualRunner:
    """Build a runner for one simulated replica; ``VirtualError`` on bad input.

    With ``prompts`` the prompt length is their mean word count (the
    simulator's tokenizer counts one token per word), else ``prompt_tokens``.
    """
    from specops.sim.args import SimArgsError, replica_from_vllm_args

    try:
        flags = shlex.split(vllm_args)
    except ValueError as exc:
        raise VirtualError(f"--vllm-args: {exc}") from None
    try:
        replica = replica_from_vllm_args(
            model, flags, gpu=gpu, hub_mirror=hub_mirror, seed=seed or 0
        )
    except SimArgsError as exc:
        raise VirtualError(str(exc)) from None
    if prompts:
        prompt_tokens = max(1, round(sum(len(p.split()) for p in prompts) / len(prompts)))
    if prompt_tokens + output_tokens > replica.engine.max_model_len:
        raise VirtualError(
            f"prompt ({prompt_tokens}) + output ({output_tokens}) tokens exceed "
            f"max-model-len {replica.engine.max_model_len}"
        )
    return VirtualRunner(replica, prompt_tokens, output_tokens, bounds, seed)
