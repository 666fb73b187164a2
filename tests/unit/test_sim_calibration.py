"""The simulator against published measurements (calibration.md C1-C9), table printed.

Four points sit outside their stated tolerance, for reasons the smooth
roofline cannot express (docs/simulator.md, "Known gaps"): C3 at batch 4, 24
and 32 (SGLang's speedup drops sharply between batch 4 and 32, then stays
flat; any linear step-time model with physical coefficients declines
gradually), and C4 at batch 56 (the RTX 3090's 24 GB run out of KV cache with
the drafter loaded; the steady-state check does not model memory). They are
held to a wider band here so they cannot drift unnoticed, and a strict xfail
records that they still miss the stated tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from specops.sim import calibration as cal

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
KNOWN_GAPS = {
    ("C3", "throughput ratio, batch 4"),
    ("C3", "throughput ratio, batch 24"),
    ("C3", "throughput ratio, batch 32"),
    ("C4", "throughput ratio, batch 56"),
}
GAP_BAND = 0.20


@pytest.fixture(scope="module")
def checks() -> list[cal.Check]:
    results = cal.run_all()
    print("\n" + cal.format_table(results))
    return results


def test_every_point_is_checked(checks: list[cal.Check]) -> None:
    assert {c.point for c in checks} == {"C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9"}
    assert len([c for c in checks if c.point == "C3"]) == 9
    assert len([c for c in checks if c.point == "C4"]) == 8
    assert len([c for c in checks if c.point == "C5"]) == 7


def test_all_points_but_the_known_gaps_are_within_tolerance(checks: list[cal.Check]) -> None:
    outside = [
        (c.point, c.what) for c in checks if not c.ok and (c.point, c.what) not in KNOWN_GAPS
    ]
    assert outside == []


def test_known_gaps_stay_within_a_wider_band(checks: list[cal.Check]) -> None:
    for c in checks:
        if (c.point, c.what) in KNOWN_GAPS:
            assert c.published is not None
            assert abs(c.model - c.published) <= GAP_BAND, (c.point, c.what, c.model)


@pytest.mark.xfail(strict=True, reason="documented calibration gaps (docs/simulator.md)")
def test_known_gaps_meet_the_stated_tolerance(checks: list[cal.Check]) -> None:
    assert all(c.ok for c in checks if (c.point, c.what) in KNOWN_GAPS)


@pytest.mark.parametrize(
    ("embedded", "fixture"),
    [
        (cal.LLAMA_3_1_8B, "meta-llama/Llama-3.1-8B-Instruct"),
        (cal.LLAMA_3_70B, "meta-llama/Llama-3.3-70B-Instruct"),
    ],
)
def test_embedded_shapes_match_the_real_configs(embedded: dict[str, Any], fixture: str) -> None:
    real = json.loads((HUB / fixture / "config.json").read_text())
    for key, value in embedded.items():
        if key in real and key != "max_position_embeddings":
            assert real[key] == value, key


def test_embedded_drafter_shapes_match_the_real_speculators() -> None:
    pairs = [
        (cal.LLAMA_3_1_8B_EAGLE3, "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"),
        (cal.GPT_OSS_EAGLE3, "RedHatAI/gpt-oss-20b-speculator.eagle3"),
    ]
    for embedded, fixture in pairs:
        real = json.loads((HUB / fixture / "config.json").read_text())
        assert real["draft_vocab_size"] == embedded["draft_vocab_size"]
        for key, value in embedded["transformer_layer_config"].items():
            assert real["transformer_layer_config"][key] == value, (fixture, key)
