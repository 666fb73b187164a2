"""Profiles in simulated time: the simulator library instead of HTTP.

A ten-point sweep of a real endpoint takes minutes; the same sweep against
:mod:`specops.sim.engine` in virtual time takes seconds, which is what
benchmarks and policy evaluation need. Records come out in the same shape as
live ones, so :mod:`.stats` and :mod:`.report` treat both alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from specops.load.progress import Progress
from specops.load.runner import Bounds
from specops.load.schedule import Profile
from specops.load.stats import RequestRecord


class VirtualError(ValueError):
    """The simulated replica cannot be built from the given model/GPU/flags."""


class VirtualRunner:
    """``run(profile, index)`` backed by the simulator engine."""

    def __init__(self) -> None:
        self.progress: Progress | None = None

    def __call__(self, profile: Profile, index: int) -> list[RequestRecord]:
        raise VirtualError("virtual-time mode needs specops.sim.engine")


def make_runner(
    *,
    model: str,
    gpu: str,
    vllm_args: str,
    hub_mirror: Path | None,
    prompts: Sequence[str],
    output_tokens: int,
    bounds: Bounds,
    seed: int,
) -> VirtualRunner:
    """Build a runner for one simulated replica; ``VirtualError`` on bad input."""
    raise VirtualError("virtual-time mode is not available: specops.sim.engine is missing")
