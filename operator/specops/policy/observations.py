"""What the policy saw of a deployment over one window, including what it could not see.

Every field a query can fail to produce is ``Optional`` and its absence is
listed in :attr:`Observation.missing`, so a gap in the data is never mistaken
for a zero (an idle deployment and a Prometheus outage look alike otherwise,
and only one of them justifies scaling down).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Acceptance:
    """Speculation counters over the window, reduced with vLLM's own formulas.

    ``per_position[i]`` is vLLM's per-position rate: the fraction of drafts
    whose first ``i + 1`` tokens were all accepted (non-increasing in ``i``).
    Its length is the ``k`` the pods were drafting with.
    """

    acceptance_rate: float
    """accepted / drafted tokens: vLLM's "acceptance rate" (not the per-token alpha)."""
    mean_acceptance_length: float
    """1 + accepted / drafts: tokens emitted per verification step, bonus included."""
    per_position: tuple[float, ...]
    drafts_per_s: float = 0.0

    @property
    def num_speculative_tokens(self) -> int:
        """The k the pods drafted with during the window."""
        return len(self.per_position)

    def conditional(self) -> tuple[float, ...]:
        """Per-position conditional acceptance P(token i accepted | tokens before accepted).

        This is the quantity that is (nearly) independent of k, so it is what
        lets a profile measured at one k predict the emitted tokens at another.
        """
        out: list[float] = []
        previous = 1.0
        for value in self.per_position:
            clamped = min(max(value, 0.0), previous)
            out.append(clamped / previous if previous > 0 else 0.0)
            previous = clamped
        return tuple(out)


@dataclass(frozen=True)
class Observation:
    """One evaluation window of one deployment; ``None`` means "not seen"."""

    at: float
    """End of the window, seconds since the epoch (or virtual seconds)."""
    window_s: float
    replicas_reporting: int
    """Pods with fresh samples in the window; 0 means the deployment was invisible."""
    running_per_replica: float | None = None
    waiting_per_replica: float | None = None
    tokens_per_step: float | None = None
    """Mean tokens per engine step (``vllm:iteration_tokens_total`` sum / count)."""
    kv_cache_usage: float | None = None
    generation_tokens_per_s: float | None = None
    """Output tokens per second summed over replicas."""
    requests_per_s: float | None = None
    """Finished requests per second summed over replicas (``vllm:request_success_total``)."""
    mean_itl_s: float | None = None
    """Mean of vLLM's ITL histogram: one sample per request per engine step."""
    mean_ttft_s: float | None = None
    itl_p50_s: float | None = None
    """Median ITL, only when the histogram's buckets resolve it (see docs/observations.md)."""
    itl_p99_s: float | None = None
    ttft_p99_s: float | None = None
    acceptance: Acceptance | None = None
    num_speculative_tokens: int = 0
    """k the pods were configured with while observed (0: speculation off)."""
    missing: tuple[str, ...] = field(default=())
    """Names of the quantities that could not be seen, and why (``name: reason``)."""

    @property
    def available(self) -> bool:
        """True when load is visible: the minimum needed to act at all."""
        return self.replicas_reporting > 0 and self.running_per_replica is not None

    @property
    def concurrency_per_replica(self) -> float | None:
        """Requests in the system per replica (running + waiting), Knative's signal."""
        if self.running_per_replica is None:
            return None
        return self.running_per_replica + (self.waiting_per_replica or 0.0)

    @property
    def total_concurrency(self) -> float | None:
        """Requests in the system across all reporting replicas."""
        per = self.concurrency_per_replica
        return None if per is None else per * self.replicas_reporting

    @classmethod
    def unavailable(cls, at: float, window_s: float, reason: str) -> Observation:
        """An observation that saw nothing (Prometheus down, no targets, ...)."""
        return cls(at=at, window_s=window_s, replicas_reporting=0, missing=(f"all: {reason}",))
