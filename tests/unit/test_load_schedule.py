"""Sweep planning and Poisson arrivals: bounded, seeded, evenly spaced."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from specops.load import prompts
from specops.load.schedule import Profile, poisson_arrivals, sweep_rates


def test_sweep_rates_are_eight_points_strictly_between_the_ends() -> None:
    rates = sweep_rates(1.0, 10.0)
    assert rates == pytest.approx([2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])


def test_sweep_rates_tolerate_ends_in_either_order() -> None:
    assert sweep_rates(9.0, 3.0, count=2) == pytest.approx([5.0, 7.0])


def test_sweep_refuses_a_dead_end() -> None:
    with pytest.raises(ValueError, match="positive"):
        sweep_rates(0.0, 5.0)


def test_poisson_arrivals_are_seeded_and_bounded() -> None:
    a = poisson_arrivals(20.0, 30.0, 10_000, seed=3)
    assert a == poisson_arrivals(20.0, 30.0, 10_000, seed=3)
    assert a != poisson_arrivals(20.0, 30.0, 10_000, seed=4)
    assert all(0 < t < 30.0 for t in a)
    assert a == sorted(a)
    # 600 expected arrivals; a Poisson count is within 4 sigma (~98) of that.
    assert abs(len(a) - 600) < 100
    gaps = [b - x for x, b in zip([0.0, *a], a, strict=False)]
    assert statistics.mean(gaps) == pytest.approx(1 / 20.0, rel=0.15)


def test_poisson_arrivals_stop_at_the_request_budget() -> None:
    assert len(poisson_arrivals(1000.0, 60.0, 25, seed=0)) == 25


@pytest.mark.parametrize(
    ("kind", "value"), [("rate", 0.0), ("concurrency", -1.0), ("concurrency", 1.5)]
)
def test_bad_profiles_are_refused(kind: str, value: float) -> None:
    with pytest.raises(ValueError, match="profile"):
        Profile("p", kind, value)  # type: ignore[arg-type]


def test_synthetic_prompts_have_the_asked_length_and_are_distinct() -> None:
    ps = prompts.synthetic(5, 64, seed=1)
    assert [len(p.split()) for p in ps] == [64] * 5
    assert len(set(ps)) == 5
    assert ps == prompts.synthetic(5, 64, seed=1)


def test_jsonl_prompts_are_read_in_order(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a b"}\n\n{"prompt": "c", "other": 1}\n')
    assert prompts.from_jsonl(path) == ["a b", "c"]


@pytest.mark.parametrize(
    ("content", "message"),
    [("not json\n", "not JSON"), ('{"text": "x"}\n', "no string 'prompt'"), ("\n", "no prompts")],
)
def test_bad_jsonl_says_which_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(prompts.PromptError, match=message):
        prompts.from_jsonl(path)


def test_missing_prompt_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(prompts.PromptError, match="cannot read"):
        prompts.from_jsonl(tmp_path / "nope.jsonl")
