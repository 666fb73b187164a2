"""Acceptance profiles: what speculation would emit at each k.

A profile is the per-position conditional acceptance ``p_1, p_2, ...``; the
expected tokens per verification step at ``k`` drafted tokens is
``1 + sum_i prod_{j<=i} p_j`` (Leviathan et al. with position-dependent
acceptance). Positions beyond those measured reuse the last one, because
EAGLE-3's conditional acceptance is nearly flat (calibration.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from specops.policy.observations import Acceptance

PRIOR_ALPHA: dict[str, float] = {
    "code": 0.77,
    "math": 0.77,
    "chat": 0.66,
    "summarization": 0.63,
}
"""Per-token acceptance priors by task: mid-points of calibration.md's published ranges."""


@dataclass(frozen=True)
class AcceptanceProfile:
    """Conditional acceptance per draft position; never empty."""

    conditional: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.conditional:
            raise ValueError("an acceptance profile needs at least one position")
        for p in self.conditional:
            if not 0.0 <= p <= 1.0 or math.isnan(p):
                raise ValueError(f"conditional acceptance must lie in [0, 1], got {p}")

    @classmethod
    def flat(cls, alpha: float, positions: int = 8) -> AcceptanceProfile:
        """Same acceptance at every position (the classic alpha model)."""
        return cls(tuple([alpha] * positions))

    @classmethod
    def from_observed(cls, acceptance: Acceptance) -> AcceptanceProfile | None:
        """The profile vLLM's per-position counters imply, or None when they are empty."""
        cond = acceptance.conditional()
        if not cond:
            return None
        return cls(tuple(min(max(p, 0.0), 1.0) for p in cond))

    def at(self, position: int) -> float:
        """Conditional acceptance at 1-based draft ``position``."""
        index = min(position, len(self.conditional)) - 1
        return self.conditional[index]

    def expected_tokens(self, k: int) -> float:
        """Tokens emitted per verification step with ``k`` drafts (1 when k = 0)."""
        total, survive = 1.0, 1.0
        for position in range(1, k + 1):
            survive *= self.at(position)
            total += survive
        return total

    def acceptance_rate(self, k: int) -> float:
        """vLLM's acceptance-rate metric this profile would show at ``k``: (AL - 1) / k."""
        return 0.0 if k == 0 else (self.expected_tokens(k) - 1.0) / k

    def decayed_toward(self, prior: AcceptanceProfile, weight: float) -> AcceptanceProfile:
        """Blend toward ``prior``: weight 1 keeps this profile, 0 gives the prior.

        While speculation is off nothing is measured, so the last profile loses
        credibility with time; the blend is what the policy believes then.
        """
        w = min(max(weight, 0.0), 1.0)
        n = max(len(self.conditional), len(prior.conditional))
        return AcceptanceProfile(
            tuple(w * self.at(i) + (1.0 - w) * prior.at(i) for i in range(1, n + 1))
        )


def decay_weight(elapsed_s: float, half_life_s: float) -> float:
    """Weight left on a measurement ``elapsed_s`` old: halves every ``half_life_s``."""
    if half_life_s <= 0:
        return 0.0
    return float(0.5 ** (max(elapsed_s, 0.0) / half_life_s))
