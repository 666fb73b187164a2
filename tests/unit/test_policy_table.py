"""The dynamic speculation table: contiguous bands, fewer drafts under load, sticky boundaries."""

from __future__ import annotations

import itertools

import pytest
from policy_support import ToyEff, toy_step

from specops.policy.acceptance import AcceptanceProfile
from specops.policy.costmodel import CostModel
from specops.policy.table import k_for_batch, merge_tables, speculation_table

MODEL = CostModel(toy_step, ToyEff()).prior_model()
PROFILE = AcceptanceProfile.flat(0.75)


def test_bands_cover_every_concurrency_without_gaps() -> None:
    table = speculation_table(MODEL, PROFILE, 1024, max_k=5, max_batch=256)
    assert table[0][0] == 1 and table[-1][1] == 256
    for (_, hi, _), (lo, _, _) in itertools.pairwise(table):
        assert lo == hi + 1
    ks = [k for _, _, k in table]
    assert ks[0] >= 3 and ks[-1] <= 1, "drafting shrinks as concurrency grows"


@pytest.mark.parametrize("margin", [0.02, 0.05, 0.10], ids=lambda m: f"margin {m:.0%}")
def test_inside_a_band_no_other_k_beats_it_by_more_than_the_margin(margin: float) -> None:
    table = speculation_table(MODEL, PROFILE, 1024, max_k=5, max_batch=256, margin=margin)
    for batch in range(1, 257):
        k = k_for_batch(table, batch)
        tps = [MODEL.predict(batch, 1024, j, PROFILE).tokens_per_s for j in range(6)]
        assert max(tps) <= tps[k] * (1 + margin) + 1e-9


def test_a_wider_margin_gives_fewer_band_boundaries() -> None:
    narrow = speculation_table(MODEL, PROFILE, 1024, max_k=5, max_batch=256, margin=0.0)
    wide = speculation_table(MODEL, PROFILE, 1024, max_k=5, max_batch=256, margin=0.15)
    assert len(wide) < len(narrow)


@pytest.mark.parametrize(
    ("fresh", "up_to", "expected"),
    [
        (((1, 10, 2), (11, 20, 0)), 20, ((1, 10, 2), (11, 20, 0))),
        (((1, 10, 2), (11, 20, 0)), 12, ((1, 10, 2), (11, 12, 0), (13, 20, 2))),
        (((1, 20, 4),), 20, ((1, 20, 2),)),
    ],
    ids=[
        "a refinement seen everywhere is taken where it drafts less",
        "beyond the largest observed batch the rendered K stays",
        "a refinement never drafts more than the rendered table",
    ],
)
def test_refinements_only_draft_less_and_only_where_observed(
    fresh: tuple[tuple[int, int, int], ...],
    up_to: int,
    expected: tuple[tuple[int, int, int], ...],
) -> None:
    current = ((1, 20, 2),)
    assert merge_tables(fresh, current, up_to=up_to, max_batch=20) == expected
