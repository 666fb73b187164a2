"""The cost model learns hardware efficiencies from observed ITL, starting from priors."""

from __future__ import annotations

from dataclasses import replace

import pytest
from policy_support import ToyEff, toy_step

from specops.policy.acceptance import AcceptanceProfile
from specops.policy.costmodel import CostModel, OperatingPoint

PROFILE = AcceptanceProfile.flat(0.75)


def points_from(truth: ToyEff, batches: list[int], ks: list[int]) -> list[OperatingPoint]:
    return [
        OperatingPoint(batch=b, context=1024, k=k, step_s=toy_step(b, 1024, k, truth))
        for b in batches
        for k in ks
    ]


@pytest.mark.parametrize(
    "factor", [0.8, 1.2, 0.9, 1.1], ids=lambda f: f"hardware {f:.0%} of the priors"
)
def test_fit_recovers_step_times_of_hardware_that_differs_from_the_priors(factor: float) -> None:
    prior = ToyEff()
    truth = ToyEff(
        bandwidth=prior.bandwidth * factor,
        compute=prior.compute * factor,
        overhead_s=prior.overhead_s / factor,
        draft_s=prior.draft_s / factor,
    )
    model = CostModel(toy_step, prior)
    fitted = model.fit(points_from(truth, [1, 4, 16, 64, 128], [0, 3]))
    for batch in (2, 8, 32, 96):
        for k in (0, 1, 3, 5):
            true = toy_step(batch, 1024, k, truth)
            assert fitted.step_time(batch, 1024, k) == pytest.approx(true, rel=0.05)
    prior_error = abs(model.prior_model().step_time(8, 1024, 3) / toy_step(8, 1024, 3, truth) - 1)
    fit_error = abs(fitted.step_time(8, 1024, 3) / toy_step(8, 1024, 3, truth) - 1)
    assert fit_error < prior_error


def test_one_operating_point_moves_the_prediction_there_without_wild_terms() -> None:
    prior = ToyEff()
    truth = replace(prior, bandwidth=prior.bandwidth * 0.8)
    fitted = CostModel(toy_step, prior).fit(points_from(truth, [4], [0]))
    assert fitted.step_time(4, 1024, 0) == pytest.approx(toy_step(4, 1024, 0, truth), rel=0.03)
    for name in ("bandwidth", "compute", "overhead_s", "draft_s"):
        ratio = getattr(fitted.efficiencies, name) / getattr(prior, name)
        assert 0.5 <= ratio <= 2.0


def test_without_observations_the_priors_are_used() -> None:
    fitted = CostModel(toy_step, ToyEff()).fit([])
    assert fitted.efficiencies == ToyEff()
    assert fitted.points == 0


def test_prediction_reports_tpot_and_tokens_per_second_from_the_profile() -> None:
    model = CostModel(toy_step, ToyEff()).prior_model()
    off, on = model.predict(1, 1024, 0, PROFILE), model.predict(1, 1024, 3, PROFILE)
    assert off.tokens_per_step == 1.0
    assert on.tokens_per_step == pytest.approx(PROFILE.expected_tokens(3))
    assert on.tpot_s == pytest.approx(on.step_s / on.tokens_per_step)
    assert on.tpot_s < off.tpot_s  # speculation pays at batch 1
    assert off.tokens_per_s == pytest.approx(1 / off.step_s)


def test_largest_batch_within_an_itl_objective_is_found_by_bisection() -> None:
    model = CostModel(toy_step, ToyEff()).prior_model()
    limit = model.predict(40, 1024, 0, PROFILE).tpot_s
    b = model.max_batch_within(limit, 1024, 0, PROFILE)
    assert model.predict(b, 1024, 0, PROFILE).tpot_s <= limit
    assert model.predict(b + 1, 1024, 0, PROFILE).tpot_s > limit
    assert model.max_batch_within(1e-6, 1024, 0, PROFILE) == 0
