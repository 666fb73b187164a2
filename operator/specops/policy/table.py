"""vLLM's dynamic speculation table, ``num_speculative_tokens_per_batch_size``.

vLLM (PR #32374) picks K per step from ``[[lo, hi, K], ...]`` by the current
concurrency, K = 0 meaning no drafting. It ships no table and has no
hysteresis (it was seen thrashing around a threshold, vLLM issue #49548), so
the bands rendered here leave some: walking up the concurrency axis, a band
keeps its K until another K is predicted to be better by ``margin`` (default 2%). Near a
boundary the two sides are then within ``margin`` of each other, so vLLM
flipping between them costs little.
"""

from __future__ import annotations

from typing import Any

from specops.policy.acceptance import AcceptanceProfile
from specops.policy.costmodel import FittedCostModel

Band = tuple[int, int, int]
"""``(lo, hi, K)``: concurrency lo..hi inclusive drafts K tokens."""


def speculation_table(
    model: FittedCostModel[Any],
    profile: AcceptanceProfile,
    context: float,
    max_k: int,
    max_batch: int,
    margin: float = 0.02,
) -> tuple[Band, ...]:
    """Bands covering 1..max_batch with the K the cost model prefers, sticky by ``margin``."""
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    bands: list[list[int]] = []
    k_now = -1
    for batch in range(1, max_batch + 1):
        tps = [model.predict(batch, context, k, profile).tokens_per_s for k in range(max_k + 1)]
        best = max(range(max_k + 1), key=lambda k: (tps[k], -k))
        if k_now < 0 or tps[best] > tps[k_now] * (1.0 + margin):
            k_now = best
            bands.append([batch, batch, k_now])
        else:
            bands[-1][1] = batch
    return tuple((lo, hi, k) for lo, hi, k in bands)


def k_for_batch(table: tuple[Band, ...], batch: float) -> int:
    """The K vLLM would use at ``batch`` running requests (the last band beyond the table)."""
    b = max(1, round(batch))
    for lo, hi, k in table:
        if lo <= b <= hi:
            return k
    return table[-1][2] if table else 0


def merge_tables(
    fresh: tuple[Band, ...], current: tuple[Band, ...], *, up_to: int, max_batch: int
) -> tuple[Band, ...]:
    """``fresh`` where it drafts less than ``current`` at batches up to ``up_to``, else ``current``.

    The policy's refinement of a rendered table: it changes only where the
    cost model has observed the replica, and only toward less drafting.
    """
    ks = []
    for batch in range(1, max_batch + 1):
        old = k_for_batch(current, batch)
        new = k_for_batch(fresh, batch)
        ks.append(new if batch <= up_to and new < old else old)
    bands: list[list[int]] = []
    for batch, k in enumerate(ks, start=1):
        if bands and bands[-1][2] == k:
            bands[-1][1] = batch
        else:
            bands.append([batch, batch, k])
    return tuple((lo, hi, k) for lo, hi, k in bands)
