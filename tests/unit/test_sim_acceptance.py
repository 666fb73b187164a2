"""Counter-based draws and acceptance profiles."""

from __future__ import annotations

import pytest

from specops.sim import acceptance as acc


def test_uniform_depends_only_on_its_counters() -> None:
    assert acc.uniform(1, 2, 3) == acc.uniform(1, 2, 3)
    assert acc.uniform(1, 2, 3) != acc.uniform(1, 3, 2)
    assert acc.uniform(1, 2, 3) != acc.uniform(2, 2, 3)
    values = [acc.uniform(5, i) for i in range(20_000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert sum(values) / len(values) == pytest.approx(0.5, abs=0.01)
    assert sum(v < 0.1 for v in values) / len(values) == pytest.approx(0.1, abs=0.01)


def test_inverse_cdf_draw_reproduces_the_acceptance_length() -> None:
    profile = acc.profile("mtbench")
    survival = profile.survival(4)
    draws = [acc.draw_accepted(survival, acc.uniform(9, i)) for i in range(50_000)]
    assert 1 + sum(draws) / len(draws) == pytest.approx(profile.acceptance_length(4), rel=0.01)
    assert max(draws) == 4 and min(draws) == 0


def test_mtbench_profile_reproduces_c2_acceptance_lengths() -> None:
    profile = acc.profile("mtbench")
    assert profile.acceptance_length(2) == pytest.approx(2.36, rel=0.02)
    assert profile.acceptance_length(7) == pytest.approx(3.54, rel=0.02)


def test_c7_task_profiles_reproduce_published_lengths_at_k3() -> None:
    for name, published in (("code", 2.94), ("math", 3.08), ("summarization", 2.37)):
        assert acc.profile(name).acceptance_length(3) == pytest.approx(published, rel=0.02)


def test_bad_profiles_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="known: chat, code"):
        acc.profile("poetry")
    with pytest.raises(ValueError, match="within"):
        acc.flat(1.2)
    assert acc.flat(0.5).acceptance_length(2) == pytest.approx(1.75)
