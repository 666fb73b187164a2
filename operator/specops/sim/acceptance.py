"""Acceptance profiles and the counter-based random numbers behind every draw.

How many drafted tokens the verifier accepts is the one random quantity of
speculative decoding. Drawing it from a seeded *stream* would make a run
depend on the order in which requests interleave, which in real-time mode
depends on the wall clock. A counter-based generator instead hashes
``(seed, request number, step, purpose)`` to a uniform number, so the same
request at the same decode step always gets the same draw, however the run is
driven.

Profiles give the *conditional* acceptance of each draft position (position
``i`` accepted given positions ``0..i-1`` were), which is what
``vllm:spec_decode_num_accepted_tokens_per_pos`` measures. EAGLE-3's curve is
nearly flat (EAGLE-3 paper, Fig. 7); the named profiles decay by 3% per
position, the decay that reproduces C2's acceptance lengths (2.36 at K=2 to
3.54 at K=7) with a first-position acceptance of 0.775.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_MASK = (1 << 64) - 1
_TWO_POW_53 = float(1 << 53)

EAGLE3_DECAY = 0.97
"""Per-position decay of conditional acceptance fitted to C2 (see module docstring)."""


def _mix(z: int) -> int:
    """SplitMix64's finaliser: a bijective scramble of 64 bits."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & _MASK
    return z ^ (z >> 31)


def key(seed: int, *counters: int) -> int:
    """The 64-bit state after mixing ``seed`` and ``counters``: a reusable stream prefix."""
    z = _mix((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _MASK)
    for counter in counters:
        z = _mix((z + counter * 0x9E3779B97F4A7C15 + 1) & _MASK)
    return z


def uniform_at(prefix: int, counter: int) -> float:
    """``uniform(seed, *counters, counter)`` given ``prefix = key(seed, *counters)``.

    The engine keeps one prefix per request so each decode step costs one mix.
    """
    z = _mix((prefix + counter * 0x9E3779B97F4A7C15 + 1) & _MASK)
    return (z >> 11) / _TWO_POW_53


def uniform(seed: int, *counters: int) -> float:
    """A uniform number in [0, 1) that depends only on ``seed`` and ``counters``."""
    return (key(seed, *counters) >> 11) / _TWO_POW_53


def exponential(mean: float, seed: int, *counters: int) -> float:
    """An exponential variate (Poisson inter-arrival times) from the same counters."""
    return -mean * math.log(1.0 - uniform(seed, *counters))


@dataclass(frozen=True)
class AcceptanceProfile:
    """Conditional acceptance per draft position; the last value repeats beyond the list."""

    name: str
    conditional: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.conditional:
            raise ValueError("an acceptance profile needs at least one position")
        for value in self.conditional:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"acceptance must be within [0, 1], got {value!r}")

    def at(self, position: int) -> float:
        """Conditional acceptance of 0-based ``position``."""
        values = self.conditional
        return values[position] if position < len(values) else values[-1]

    def survival(self, k: int) -> tuple[float, ...]:
        """P(at least j accepted) for j = 0..k: what one uniform is compared against."""
        out, running = [1.0], 1.0
        for i in range(k):
            running *= self.at(i)
            out.append(running)
        return tuple(out)

    def acceptance_length(self, k: int) -> float:
        """Mean tokens per verification step with ``k`` drafts, bonus token included."""
        return sum(self.survival(k))

    def scaled(self, factor: float) -> AcceptanceProfile:
        """The same shape with every position's acceptance times ``factor`` (capped at 1)."""
        return AcceptanceProfile(
            f"{self.name}*{factor:g}", tuple(min(1.0, a * factor) for a in self.conditional)
        )


def draw_accepted(survival: tuple[float, ...], u: float) -> int:
    """Accepted draft tokens for one uniform ``u``: the inverse CDF over positions.

    Equivalent in distribution to one Bernoulli per position, and one hash
    per request and step instead of ``k``.
    """
    accepted = 0
    for j in range(1, len(survival)):
        if u < survival[j]:
            accepted = j
        else:
            break
    return accepted


def decaying(
    name: str, first: float, decay: float = EAGLE3_DECAY, positions: int = 16
) -> AcceptanceProfile:
    """A profile whose position ``i`` accepts ``first * decay**i``."""
    return AcceptanceProfile(name, tuple(first * decay**i for i in range(positions)))


def flat(alpha: float) -> AcceptanceProfile:
    """The textbook profile: every position accepted with probability ``alpha``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha!r}")
    return AcceptanceProfile(f"alpha={alpha:g}", (alpha,))


PROFILES: dict[str, AcceptanceProfile] = {
    # First-position acceptances fitted to C7's acceptance lengths at k=3
    # (code 2.94, math 3.08, summarization 2.37) with the EAGLE-3 decay; chat
    # takes the top of calibration.md's prior range (0.62-0.70), mtbench is
    # C2's benchmark (vLLM issue #20780).
    "code": decaying("code", 0.805),
    "math": decaying("math", 0.843),
    "summarization": decaying("summarization", 0.668),
    "chat": decaying("chat", 0.70),
    "mtbench": decaying("mtbench", 0.775),
}
"""Named acceptance profiles (EAGLE-3-like drafters)."""


def profile(name: str) -> AcceptanceProfile:
    """A named profile; a clear error lists the known names."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown acceptance profile {name!r}; known: {known}") from None
