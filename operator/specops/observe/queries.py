"""PromQL for one deployment, built from vLLM's own formulas (pure, no I/O).

Ratios are *not* computed in PromQL: numerator and denominator are fetched
separately so that "no drafts in the window" (0/0) and "no series at all"
(nothing scraped) stay distinguishable from a real zero.

vLLM's formulas (``vllm/v1/spec_decode/metrics.py``, calibration.md):

* acceptance rate = rate(accepted tokens) / rate(draft tokens)
* mean acceptance length = 1 + rate(accepted tokens) / rate(drafts)
* per-position rate i = rate(accepted_per_pos{position=i}) / rate(drafts)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True)
class LabelNames:
    """Names of the target labels that identify a deployment's pods.

    A Prometheus Operator PodMonitor attaches ``namespace``, ``pod``,
    ``container`` and ``endpoint``; pod labels arrive only through the
    PodMonitor's ``podTargetLabels``, renamed to Prometheus' spelling
    (``app.kubernetes.io/instance`` -> ``app_kubernetes_io_instance``).
    Clusters that relabel differently set these names (operator settings).
    """

    namespace: str = "namespace"
    instance: str = "app_kubernetes_io_instance"
    """Carries the SpeculativeDeployment's name (pod label ``app.kubernetes.io/instance``)."""
    pod: str = "pod"

    def __post_init__(self) -> None:
        for field_name in ("namespace", "instance", "pod"):
            value = getattr(self, field_name)
            if not _LABEL_NAME.match(value):
                raise ValueError(f"{value!r} is not a valid Prometheus label name ({field_name})")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass(frozen=True)
class Selector:
    """Which series belong to one SpeculativeDeployment."""

    namespace: str
    name: str
    labels: LabelNames = LabelNames()

    def matchers(self) -> str:
        """``{namespace="ns",app_kubernetes_io_instance="name"}``."""
        return (
            "{"
            f"{self.labels.namespace}={_quote(self.namespace)},"
            f"{self.labels.instance}={_quote(self.name)}"
            "}"
        )


def duration(seconds: float) -> str:
    """A PromQL range duration in whole seconds (at least 1 s)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"window must be a positive number of seconds, got {seconds!r}")
    return f"{max(1, round(seconds))}s"


@dataclass(frozen=True)
class Queries:
    """Every query one observation needs, for one selector and window."""

    selector: Selector
    window_s: float

    def _rate(self, metric: str, by: str | None = None) -> str:
        grouping = f" by ({by})" if by else ""
        return f"sum{grouping}(rate({metric}{self.selector.matchers()}[{duration(self.window_s)}]))"

    def _gauge_mean(self, metric: str) -> str:
        # mean over pods of each pod's mean over the window
        w = duration(self.window_s)
        return f"avg(avg_over_time({metric}{self.selector.matchers()}[{w}]))"

    def all(self) -> dict[str, str]:
        """Name -> PromQL; names are what ``Observation.missing`` reports."""
        sel, w = self.selector.matchers(), duration(self.window_s)
        pod = self.selector.labels.pod
        return {
            "replicas": (
                f"count(count by ({pod}) (last_over_time(vllm:num_requests_running{sel}[{w}])))"
            ),
            "running": self._gauge_mean("vllm:num_requests_running"),
            "waiting": self._gauge_mean("vllm:num_requests_waiting"),
            "kv_cache_usage": self._gauge_mean("vllm:kv_cache_usage_perc"),
            "generation_tokens": self._rate("vllm:generation_tokens_total"),
            "requests": self._rate("vllm:request_success_total"),
            "iteration_tokens_sum": self._rate("vllm:iteration_tokens_total_sum"),
            "iteration_tokens_count": self._rate("vllm:iteration_tokens_total_count"),
            "itl_sum": self._rate("vllm:inter_token_latency_seconds_sum"),
            "itl_count": self._rate("vllm:inter_token_latency_seconds_count"),
            "ttft_sum": self._rate("vllm:time_to_first_token_seconds_sum"),
            "ttft_count": self._rate("vllm:time_to_first_token_seconds_count"),
            "itl_buckets": self._rate("vllm:inter_token_latency_seconds_bucket", by="le"),
            "ttft_buckets": self._rate("vllm:time_to_first_token_seconds_bucket", by="le"),
            "drafts": self._rate("vllm:spec_decode_num_drafts_total"),
            "draft_tokens": self._rate("vllm:spec_decode_num_draft_tokens_total"),
            "accepted_tokens": self._rate("vllm:spec_decode_num_accepted_tokens_total"),
            "accepted_per_position": self._rate(
                "vllm:spec_decode_num_accepted_tokens_per_pos_total", by="position"
            ),
        }


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> tuple[float | None, str]:
    """Prometheus' ``histogram_quantile`` where the buckets resolve it, else (None, why).

    ``buckets`` are (upper bound, cumulative rate). A quantile that falls in
    the first bucket (vLLM's ITL buckets start at 10 ms: below that the
    interpolation from 0 is a guess) or in the +Inf bucket is not reported.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None, "no samples in the window"
    total = ordered[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for index, (bound, count) in enumerate(ordered):
        if count >= rank:
            if index == 0:
                return None, f"below the first bucket bound {bound:g} s"
            if math.isinf(bound):
                return None, f"above the last finite bucket bound {prev_bound:g} s"
            if count == prev_count:
                return bound, ""
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (
                count - prev_count
            ), ""
        prev_bound, prev_count = bound, count
    return None, "quantile not reached"
