"""Load statistics: the definitions vLLM's benchmark uses, on hand-made timings."""

from __future__ import annotations

import math

import pytest

from specops.load.stats import Distribution, RequestRecord, percentile, summarise


def rec(start: float, chunks: list[float], tokens: int, prompt: int = 10) -> RequestRecord:
    return RequestRecord(
        start=start, end=chunks[-1], chunk_times=chunks, output_tokens=tokens, prompt_tokens=prompt
    )


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1, 2, 3, 4], 50, 2.5), ([5], 99, 5.0), ([0, 10], 90, 9.0), (list(range(101)), 99, 99.0)],
)
def test_percentile_interpolates_like_numpy(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan_and_reports_none() -> None:
    assert math.isnan(percentile([], 50))
    assert Distribution.of([]).as_dict()["p50"] is None


def test_ttft_itl_tpot_of_one_request() -> None:
    r = rec(0.0, [0.100, 0.110, 0.130], tokens=5)
    assert r.ttft == pytest.approx(0.100)
    assert r.itls == pytest.approx([0.010, 0.020])
    # TPOT spreads the time after the first token over the remaining 4 tokens.
    assert r.tpot == pytest.approx(0.030 / 4)


def test_summary_counts_only_completed_requests_in_throughput() -> None:
    ok1 = rec(0.0, [0.1, 0.2, 1.0], tokens=10, prompt=7)
    ok2 = rec(0.5, [0.6, 2.0], tokens=20, prompt=9)
    failed = RequestRecord(start=0.2, error="HTTP 500: boom")
    s = summarise([ok1, ok2, failed])
    assert (s.completed, s.errored) == (2, 1)
    assert s.duration_s == pytest.approx(2.0)
    assert s.request_rate == pytest.approx(1.0)
    assert s.output_tokens == 30
    assert s.prompt_tokens == 16
    assert s.output_tokens_per_s == pytest.approx(15.0)
    assert s.ttft_ms.p50 == pytest.approx(100.0)
    assert s.itl_ms.count == 3
    assert s.errors == ("HTTP 500: boom",)


def test_summary_of_only_failures_has_no_rates() -> None:
    s = summarise([RequestRecord(start=1.0, error="refused")])
    assert (s.completed, s.request_rate, s.output_tokens_per_s) == (0, 0.0, 0.0)
    assert s.as_dict()["ttft_ms"] == {
        "mean": None,
        "p50": None,
        "p90": None,
        "p99": None,
        "count": 0,
    }


def test_request_without_tokens_is_not_counted_as_completed() -> None:
    assert not RequestRecord(start=0.0, end=1.0).ok
