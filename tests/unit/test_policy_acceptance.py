"""Acceptance profiles: vLLM's counters to per-position acceptance, and back to tokens per step."""

from __future__ import annotations

import pytest

from specops.policy.acceptance import AcceptanceProfile, decay_weight
from specops.policy.observations import Acceptance


@pytest.mark.parametrize(
    ("alpha", "k"),
    [(0.8, 1), (0.8, 3), (0.6, 5), (0.0, 4), (0.95, 7)],
    ids=lambda v: str(v),
)
def test_flat_profile_matches_leviathans_closed_form(alpha: float, k: int) -> None:
    expected = k + 1 if alpha == 1 else (1 - alpha ** (k + 1)) / (1 - alpha)
    assert AcceptanceProfile.flat(alpha).expected_tokens(k) == pytest.approx(expected)


def test_conditional_acceptance_is_recovered_from_vllms_per_position_counters() -> None:
    # drafts whose first i+1 tokens were accepted: 0.8, 0.8*0.7, 0.8*0.7*0.5
    obs = Acceptance(0.0, 0.0, per_position=(0.8, 0.56, 0.28), drafts_per_s=1.0)
    assert obs.conditional() == pytest.approx((0.8, 0.7, 0.5))
    profile = AcceptanceProfile.from_observed(obs)
    assert profile is not None
    assert profile.expected_tokens(3) == pytest.approx(1 + 0.8 + 0.56 + 0.28)
    # beyond the measured positions the last conditional is reused (EAGLE-3 is flat)
    assert profile.expected_tokens(4) == pytest.approx(1 + 0.8 + 0.56 + 0.28 + 0.14)


def test_vllms_acceptance_rate_is_not_alpha() -> None:
    profile = AcceptanceProfile.flat(0.8)
    # (AL - 1) / k, which falls with k although alpha is constant
    assert profile.acceptance_rate(1) == pytest.approx(0.8)
    assert profile.acceptance_rate(4) < 0.8


def test_decay_blends_toward_the_prior_by_half_lives() -> None:
    measured, prior = AcceptanceProfile.flat(0.4, 2), AcceptanceProfile.flat(0.8, 2)
    assert decay_weight(0, 600) == 1.0
    assert decay_weight(600, 600) == pytest.approx(0.5)
    half = measured.decayed_toward(prior, decay_weight(600, 600))
    assert half.at(1) == pytest.approx(0.6)
    assert measured.decayed_toward(prior, 0.0).at(2) == pytest.approx(0.8)


@pytest.mark.parametrize("bad", [(), (1.2,), (-0.1,)], ids=["empty", "above one", "negative"])
def test_a_profile_outside_zero_one_is_refused(bad: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        AcceptanceProfile(bad)
