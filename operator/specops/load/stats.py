"""Per-request timings and the summary statistics a load report shows.

Definitions follow vLLM's ``benchmark_serving`` so numbers compare with
published runs: TTFT is request start to first streamed token; ITL is the gap
between successive streamed chunks (with speculation one chunk may carry
several tokens, exactly as users see it); TPOT is per request
``(latency - TTFT) / (output_tokens - 1)``; throughput counts completed
requests only, over the span from the first request sent to the last one
finished.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

PERCENTILES = (50.0, 90.0, 99.0)


@dataclass
class RequestRecord:
    """What one request did, with times in seconds on one monotonic clock."""

    start: float
    end: float = 0.0
    chunk_times: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.end > 0 and self.output_tokens > 0

    @property
    def ttft(self) -> float | None:
        return self.chunk_times[0] - self.start if self.chunk_times else None

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def itls(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:], strict=False)]

    @property
    def tpot(self) -> float | None:
        ttft = self.ttft
        if ttft is None or self.output_tokens < 2:
            return None
        return (self.latency - ttft) / (self.output_tokens - 1)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Distribution:
    """Mean and the report's percentiles of one quantity."""

    mean: float
    p50: float
    p90: float
    p99: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float], scale: float = 1.0) -> Distribution:
        scaled = [v * scale for v in values]
        mean = sum(scaled) / len(scaled) if scaled else math.nan
        p50, p90, p99 = (percentile(scaled, q) for q in PERCENTILES)
        return cls(mean=mean, p50=p50, p90=p90, p99=p99, count=len(scaled))

    def as_dict(self) -> dict[str, float | int | None]:
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 4)

        return {
            "mean": clean(self.mean),
            "p50": clean(self.p50),
            "p90": clean(self.p90),
            "p99": clean(self.p99),
            "count": self.count,
        }


@dataclass(frozen=True)
class Summary:
    """One profile's results (times in ms except request latency in s)."""

    completed: int
    errored: int
    duration_s: float
    request_rate: float
    output_tokens: int
    prompt_tokens: int
    output_tokens_per_s: float
    ttft_ms: Distribution
    itl_ms: Distribution
    tpot_ms: Distribution
    latency_s: Distribution
    errors: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "completed": self.completed,
            "errored": self.errored,
            "duration_s": round(self.duration_s, 4),
            "request_rate": round(self.request_rate, 4),
            "output_tokens": self.output_tokens,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens_per_s": round(self.output_tokens_per_s, 3),
            "ttft_ms": self.ttft_ms.as_dict(),
            "itl_ms": self.itl_ms.as_dict(),
            "tpot_ms": self.tpot_ms.as_dict(),
            "latency_s": self.latency_s.as_dict(),
            "errors": list(self.errors),
        }


def summarise(records: Sequence[RequestRecord]) -> Summary:
    """Reduce one profile's records; failed requests count as errors only."""
    done = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    span = max(r.end for r in done) - min(r.start for r in records) if done else 0.0
    out_tokens = sum(r.output_tokens for r in done)
    ttfts = [t for r in done if (t := r.ttft) is not None]
    tpots = [t for r in done if (t := r.tpot) is not None]
    itls = [gap for r in done for gap in r.itls]
    distinct_errors = tuple(sorted({r.error or "incomplete response" for r in failed}))[:5]
    return Summary(
        completed=len(done),
        errored=len(failed),
        duration_s=span,
        request_rate=len(done) / span if span > 0 else 0.0,
        output_tokens=out_tokens,
        prompt_tokens=sum(r.prompt_tokens for r in done),
        output_tokens_per_s=out_tokens / span if span > 0 else 0.0,
        ttft_ms=Distribution.of(ttfts, 1000.0),
        itl_ms=Distribution.of(itls, 1000.0),
        tpot_ms=Distribution.of(tpots, 1000.0),
        latency_s=Distribution.of([r.latency for r in done]),
        errors=distinct_errors,
    )
