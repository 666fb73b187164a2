"""The GuideLLM-style sweep: synchronous, throughput, then rates in between.

It is written against a plain ``run(profile) -> records`` function so the
same plan drives a live endpoint and the virtual-time simulator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from specops.load.progress import Progress
from specops.load.schedule import Profile, rate_profiles, sweep_rates, synchronous, throughput
from specops.load.stats import RequestRecord, Summary, summarise

RunFn = Callable[[Profile, int], list[RequestRecord]]
"""Runs one profile (with its 1-based index, for progress) and returns its records."""


class SweepError(RuntimeError):
    """An end of the sweep completed no request, so there is nothing to sweep between."""


def _ms(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f} ms"


def _headline(s: Summary) -> str:
    return (
        f"{s.request_rate:.2f} req/s, {s.output_tokens_per_s:.0f} tok/s, "
        f"TTFT p50 {_ms(s.ttft_ms.p50, 0)}, TPOT p50 {_ms(s.tpot_ms.p50, 1)}, "
        f"{s.completed} ok, {s.errored} failed"
    )


def run_profiles(
    run: RunFn,
    profiles: Sequence[Profile],
    progress: Progress | None = None,
    first_index: int = 1,
) -> list[tuple[Profile, Summary]]:
    """Run fixed profiles in order."""
    out = []
    for index, profile in enumerate(profiles, start=first_index):
        summary = summarise(run(profile, index))
        if progress is not None:
            progress.finish(index, profile.label, _headline(summary))
        out.append((profile, summary))
    return out


def _check(end: Summary) -> None:
    """Stop early when an end of the sweep completed nothing: the endpoint is not serving."""
    if end.completed == 0:
        raise SweepError(f"cannot sweep: {'; '.join(end.errors) or 'no request completed'}")


def sweep(
    run: RunFn,
    *,
    throughput_concurrency: int,
    points: int = 8,
    progress: Progress | None = None,
) -> list[tuple[Profile, Summary]]:
    """Measure both ends, then ``points`` constant rates evenly spaced between them."""
    ends = run_profiles(run, [synchronous()], progress)
    _check(ends[0][1])
    ends += run_profiles(run, [throughput(throughput_concurrency)], progress, first_index=2)
    _check(ends[1][1])
    (_, sync), (_, thr) = ends
    rates = sweep_rates(sync.request_rate, thr.request_rate, points)
    return ends + run_profiles(run, rate_profiles(rates), progress, first_index=3)
