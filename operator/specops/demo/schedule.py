"""The demo's load shape: Poisson arrivals whose rate rises to a peak and falls (pure).

Piecewise-constant steps rather than a smooth curve, so each step is a
plateau long enough for the operator's window to see a steady load, and the
report can show one row per step.
"""

from __future__ import annotations

from dataclasses import dataclass

from specops.load.schedule import poisson_arrivals

SHAPE = (0.1, 0.3, 0.55, 0.8, 1.0, 1.0, 0.7, 0.4, 0.15, 0.05)
"""Fraction of the peak rate per step: up in four steps, hold, down in four."""


@dataclass(frozen=True)
class Step:
    """One plateau of the load: ``rate`` req/s from ``start`` to ``end`` (seconds)."""

    index: int
    start: float
    end: float
    rate: float


def steps(duration_s: float, peak_rate: float, shape: tuple[float, ...] = SHAPE) -> list[Step]:
    """Cut ``duration_s`` into equal plateaus following ``shape`` x ``peak_rate``."""
    if duration_s <= 0 or peak_rate <= 0:
        raise ValueError("the load needs a positive duration and peak rate")
    if not shape or any(f <= 0 for f in shape):
        raise ValueError("every step of the shape must be a positive fraction")
    width = duration_s / len(shape)
    return [
        Step(i, round(i * width, 6), round((i + 1) * width, 6), peak_rate * f)
        for i, f in enumerate(shape)
    ]


def arrivals(plan: list[Step], seed: int, max_per_step: int = 100_000) -> list[tuple[float, int]]:
    """Send offsets (seconds from the start) with the index of their step, in order."""
    out: list[tuple[float, int]] = []
    for step in plan:
        width = step.end - step.start
        for offset in poisson_arrivals(step.rate, width, max_per_step, seed + step.index):
            out.append((step.start + offset, step.index))
    return out


def step_at(plan: list[Step], t: float) -> Step | None:
    """The step running at ``t`` seconds, None before the start or after the end."""
    for step in plan:
        if step.start <= t < step.end:
            return step
    return None
