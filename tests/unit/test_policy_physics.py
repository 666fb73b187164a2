"""The cost model on the twin's physics learns hardware that is 20% off the priors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops import gpus, modelarch
from specops.perfmodel import Replica, decode_step_seconds
from specops.policy.costmodel import OperatingPoint
from specops.policy.physics import cost_model

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"


def arch(repo: str) -> modelarch.ModelArch:
    return modelarch.from_config(json.loads((HUB / repo / "config.json").read_text()))


REPLICA = Replica.build(
    arch("meta-llama/Llama-3.1-8B-Instruct"),
    gpus.CATALOGUE["H100-80GB"],
    1,
    arch("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"),
)


@pytest.mark.parametrize("factor", [0.8, 1.2], ids=["hardware 20% faster", "hardware 20% slower"])
def test_fitted_step_times_track_perturbed_hardware_across_batch_and_k(factor: float) -> None:
    model = cost_model(REPLICA)
    truth = REPLICA.default_efficiencies().perturbed(factor)
    # what a deployment shows over an hour: a few loads, speculation at k=3 and off
    points = [
        OperatingPoint(b, 1500, k, decode_step_seconds(REPLICA, b, 1500, k, truth))
        for b in (1, 6, 24, 64)
        for k in (0, 3)
    ]
    fitted = model.fit(points)
    for b in (2, 12, 48, 128):
        for k in (0, 2, 5):
            true = decode_step_seconds(REPLICA, b, 1500, k, truth)
            assert fitted.step_time(b, 1500, k) == pytest.approx(true, rel=0.04)


def test_fractional_batches_interpolate_between_whole_ones() -> None:
    step = cost_model(REPLICA).prior_model()
    a, b = step.step_time(4, 1000, 3), step.step_time(5, 1000, 3)
    assert a < step.step_time(4.5, 1000, 3) < b
