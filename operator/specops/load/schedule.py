"""Which load profiles to run and when each request starts (pure, seeded).

A GuideLLM-style sweep first measures the two ends of the curve (one request
at a time, then as many as the server takes) and then probes constant
Poisson rates evenly spaced strictly between them, which is where latency
starts to bend.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Kind = Literal["concurrency", "rate"]


@dataclass(frozen=True)
class Profile:
    """One load level: ``concurrency`` workers in a loop, or Poisson ``rate`` req/s."""

    name: str
    kind: Kind
    value: float

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ValueError(f"profile {self.name}: {self.kind} must be positive")
        if self.kind == "concurrency" and self.value != int(self.value):
            raise ValueError(f"profile {self.name}: concurrency must be an integer")

    @property
    def label(self) -> str:
        return f"{self.value:g} req/s" if self.kind == "rate" else f"concurrency {self.value:g}"


def synchronous() -> Profile:
    return Profile("synchronous", "concurrency", 1)


def throughput(concurrency: int) -> Profile:
    return Profile("throughput", "concurrency", concurrency)


def rate_profiles(rates: list[float]) -> list[Profile]:
    return [Profile(f"rate-{r:g}", "rate", r) for r in rates]


def sweep_rates(sync_rate: float, max_rate: float, count: int = 8) -> list[float]:
    """``count`` rates evenly spaced strictly between the two measured ends."""
    if sync_rate <= 0 or max_rate <= 0:
        raise ValueError("sweep needs positive synchronous and throughput rates")
    lo, hi = sorted((sync_rate, max_rate))
    step = (hi - lo) / (count + 1)
    # Three significant figures: readable profile names, no visible loss of spacing.
    return [float(f"{lo + step * (i + 1):.3g}") for i in range(count)]


def poisson_arrivals(rate: float, duration_s: float, max_requests: int, seed: int) -> list[float]:
    """Send offsets (seconds from start) of a Poisson process, bounded in time and count."""
    rng = random.Random(seed)
    out: list[float] = []
    t = 0.0
    while len(out) < max_requests:
        t += rng.expovariate(rate)
        if t >= duration_s:
            break
        out.append(t)
    return out
