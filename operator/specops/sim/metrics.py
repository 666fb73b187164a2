"""vLLM V1's Prometheus metrics, fed by the simulated engine.

The operator, Prometheus rules and dashboards read a real replica's
``/metrics``; the simulator must export the very same names, types, labels
(``model_name``, ``engine``; ``position`` on the per-position counter,
``finished_reason`` on request success) and default buckets as vLLM 0.33.0
(``specops/data/vllm-0.33.0/``), so nothing downstream can tell the twin
from the real thing. Each simulator owns a private ``CollectorRegistry``:
several replicas may share one process in tests.

Times are the replica's simulated seconds (with ``--time-scale 10`` a
simulated 10 ms step lasts 1 ms of wall time but is reported as 10 ms), so
the numbers are those a real GPU would show. Inter-token latency is observed
once per engine iteration that produced tokens for a request, as vLLM does,
so with speculation it is the step time, not the per-token time.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

from specops.sim.engine import Request, StepResult

FINISH_REASONS = ("stop", "length", "abort", "error")
"""vLLM's ``FinishReason`` values, pre-created as ``finished_reason`` labels."""


def _load_buckets() -> dict[str, tuple[float, ...]]:
    text = (
        resources.files("specops")
        .joinpath("data/vllm-0.33.0/histogram_buckets.txt")
        .read_text(encoding="utf-8")
    )
    out: dict[str, tuple[float, ...]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, values = line.split("\t", 1)
        out[name] = tuple(float(v) for v in values.split())
    return out


BUCKETS = _load_buckets()
"""vLLM 0.33.0's default bucket boundaries by constant name (``vllm/v1/metrics/buckets.py``)."""


def build_1_2_5_buckets(max_value: int) -> tuple[float, ...]:
    """vLLM's ``build_1_2_5_buckets``: 1, 2, 5, 10, 20, 50, ... up to ``max_value``."""
    out: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return tuple(out)
            out.append(float(value))
        exponent += 1


class _WithoutCreated:
    """A view of a registry without the ``*_created`` series prometheus-client adds.

    vLLM's list of metrics has no ``_created`` samples, and the global
    ``disable_created_metrics()`` switch would change every registry in the
    process (tests run several simulators in one).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class VllmMetrics:
    """The metric families of one simulated replica (engine index 0)."""

    def __init__(self, model_name: str, *, max_model_len: int, num_spec_tokens: int = 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("model_name", "engine")
        values = (model_name, "0")
        reg = self.registry
        b = BUCKETS

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labels, registry=reg)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=reg)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, registry=reg, buckets=buckets)

        self.running = gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        ).labels(*values)
        self.waiting = gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed."
        ).labels(*values)
        self.kv_usage = gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."
        ).labels(*values)
        self.prompt_tokens = counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed."
        ).labels(*values)
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        ).labels(*values)
        self.preemptions = counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine."
        ).labels(*values)
        self.prefix_queries = counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
        ).labels(*values)
        self.prefix_hits = counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."
        ).labels(*values)
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            (*labels, "finished_reason"),
            registry=reg,
        )
        self.success = {reason: success.labels(*values, reason) for reason in FINISH_REASONS}

        self.drafts = counter(
            "vllm:spec_decode_num_drafts", "Number of spec decoding drafts."
        ).labels(*values)
        self.draft_tokens = counter(
            "vllm:spec_decode_num_draft_tokens", "Number of draft tokens."
        ).labels(*values)
        self.accepted_tokens = counter(
            "vllm:spec_decode_num_accepted_tokens", "Number of accepted tokens."
        ).labels(*values)
        self._per_position_family = Counter(
            "vllm:spec_decode_num_accepted_tokens_per_pos",
            "Accepted tokens per draft position.",
            (*labels, "position"),
            registry=reg,
        )
        self._values = values
        self.per_position = [
            self._per_position_family.labels(*values, str(i)) for i in range(num_spec_tokens)
        ]

        lengths = build_1_2_5_buckets(max_model_len)
        latency = b["REQUEST_LATENCY_BUCKETS"]
        self.iteration_tokens = histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            b["ITERATION_TOKENS_BUCKETS"],
        ).labels(*values)
        self.ttft = histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            b["TIME_TO_FIRST_TOKEN_BUCKETS"],
        ).labels(*values)
        self.itl = histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            b["INTER_TOKEN_LATENCY_BUCKETS"],
        ).labels(*values)
        self.tpot = histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            b["INTER_TOKEN_LATENCY_BUCKETS"],
        ).labels(*values)
        self.e2e = histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            latency,
        ).labels(*values)
        self.queue = histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            latency,
        ).labels(*values)
        self.inference = histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            latency,
        ).labels(*values)
        self.prefill = histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            latency,
        ).labels(*values)
        self.decode = histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            latency,
        ).labels(*values)
        self.prompt_len = histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", lengths
        ).labels(*values)
        self.generation_len = histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", lengths
        ).labels(*values)
        self.max_tokens = histogram(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            lengths,
        ).labels(*values)
        self.max_generation = histogram(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            lengths,
        ).labels(*values)
        self.params_n = histogram(
            "vllm:request_params_n",
            "Histogram of the n request parameter.",
            b["REQUEST_PARAMS_N_BUCKETS"],
        ).labels(*values)
        self.request_preemptions = histogram(
            "vllm:request_num_preemptions",
            "Number of preemptions per request.",
            b["REQUEST_NUM_PREEMPTIONS_BUCKETS"],
        ).labels(*values)

    def _position(self, index: int) -> Counter:
        while index >= len(self.per_position):
            self.per_position.append(
                self._per_position_family.labels(*self._values, str(len(self.per_position)))
            )
        return self.per_position[index]

    def observe_step(self, step: StepResult) -> None:
        """Account one engine step, as vLLM's Prometheus stat logger does per iteration."""
        self.running.set(step.running)
        self.waiting.set(step.waiting)
        self.kv_usage.set(step.kv_usage)
        if step.prompt_tokens:
            self.prompt_tokens.inc(step.prompt_tokens)
            self.prefix_queries.inc(step.prompt_tokens)
        if step.generation_tokens:
            self.generation_tokens.inc(step.generation_tokens)
        if step.preemptions:
            self.preemptions.inc(step.preemptions)
        self.iteration_tokens.observe(step.prompt_tokens + step.generation_tokens)
        if step.drafts:
            self.drafts.inc(step.drafts)
            self.draft_tokens.inc(step.draft_tokens)
            self.accepted_tokens.inc(step.accepted_tokens)
            for i, n in enumerate(step.accepted_per_position):
                if n:
                    self._position(i).inc(n)
        end = step.end
        for event in step.events:
            request = event.request
            if event.first:
                self.ttft.observe(end - request.arrival)
            else:
                self.itl.observe(end - event.previous_token_at)
            if event.finished:
                self.observe_finished(request)

    def observe_finished(self, request: Request) -> None:
        """Per-request histograms and the success counter for one finished request."""
        end = request.finished_at if request.finished_at is not None else request.last_token_at
        scheduled = request.first_scheduled if request.first_scheduled is not None else end
        first = request.first_token_at if request.first_token_at is not None else end
        self.e2e.observe(end - request.arrival)
        self.queue.observe(scheduled - request.arrival)
        self.inference.observe(end - scheduled)
        self.prefill.observe(first - scheduled)
        self.decode.observe(end - first)
        if request.output > 1:
            self.tpot.observe((end - first) / (request.output - 1))
        self.prompt_len.observe(request.prompt)
        self.generation_len.observe(request.output)
        self.max_tokens.observe(request.max_tokens)
        self.max_generation.observe(request.max_tokens)
        self.params_n.observe(1)
        self.request_preemptions.observe(request.preemptions)
        self.success[request.finish_reason or "length"].inc()

    def set_idle_gauges(self, running: int, waiting: int, kv_usage: float) -> None:
        """Refresh the gauges when no step runs (a scrape of an idle replica)."""
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_usage.set(kv_usage)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(_WithoutCreated(self.registry))
