"""The operator's own metrics and health endpoints.

Why a private registry: the process also imports libraries that register
collectors on the global one; a private :class:`CollectorRegistry` makes
``/metrics`` exactly the series documented here, and lets tests create a
fresh one. Per-resource series are produced by a collector from the latest
known state, so a deleted resource's series disappear instead of going stale.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class ResourceState:
    """What the metrics say about one SpeculativeDeployment."""

    conditions: tuple[tuple[str, str], ...]
    speculation_active: bool | None
    num_speculative_tokens: int | None
    tensor_parallel_size: int | None
    gpus_per_replica: int | None
    desired_replicas: int | None


class _StateCollector(Collector):
    def __init__(self, metrics: OperatorMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.metrics.lock:
            states = dict(self.metrics.states)
        by_condition = GaugeMetricFamily(
            "specops_resources",
            "SpeculativeDeployments by condition type and status.",
            labels=["condition", "status"],
        )
        counts: dict[tuple[str, str], int] = {}
        for state in states.values():
            for pair in state.conditions:
                counts[pair] = counts.get(pair, 0) + 1
        for (cond, status), n in sorted(counts.items()):
            by_condition.add_metric([cond, status], n)
        yield by_condition

        active = GaugeMetricFamily(
            "specops_speculation_active",
            "1 when the resource's vLLM drafts tokens now, 0 when plain serving.",
            labels=["namespace", "name"],
        )
        k = GaugeMetricFamily(
            "specops_speculative_tokens",
            "Tokens drafted per step (k) in the running workload.",
            labels=["namespace", "name"],
        )
        tp = GaugeMetricFamily(
            "specops_plan_tensor_parallel_size",
            "Planned tensor-parallel size per replica.",
            labels=["namespace", "name"],
        )
        gpus = GaugeMetricFamily(
            "specops_plan_gpus_per_replica",
            "Planned GPUs per replica.",
            labels=["namespace", "name"],
        )
        replicas = GaugeMetricFamily(
            "specops_desired_replicas",
            "Replicas the operator asks for.",
            labels=["namespace", "name"],
        )
        for (namespace, name), state in sorted(states.items()):
            labels = [namespace, name]
            if state.speculation_active is not None:
                active.add_metric(labels, 1.0 if state.speculation_active else 0.0)
            if state.num_speculative_tokens is not None:
                k.add_metric(labels, state.num_speculative_tokens)
            if state.tensor_parallel_size is not None:
                tp.add_metric(labels, state.tensor_parallel_size)
            if state.gpus_per_replica is not None:
                gpus.add_metric(labels, state.gpus_per_replica)
            if state.desired_replicas is not None:
                replicas.add_metric(labels, state.desired_replicas)
        yield from (active, k, tp, gpus, replicas)


class OperatorMetrics:
    """Counters and per-resource state for one operator process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.lock = threading.Lock()
        self.states: dict[tuple[str, str], ResourceState] = {}
        self.reconciles = Counter(
            "specops_reconcile",
            "Reconcile cycles by outcome (applied, blocked, retry, error).",
            ["outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "specops_reconcile_duration_seconds",
            "Wall time of one reconcile cycle by outcome.",
            ["outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.events = Counter(
            "specops_events",
            "Kubernetes Events posted, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "specops_leader",
            "1 while this replica holds the leader Lease and acts, else 0.",
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self))

    def observe(self, outcome: str, seconds: float) -> None:
        """Count one reconcile."""
        self.reconciles.labels(outcome).inc()
        self.duration.labels(outcome).observe(seconds)

    def set_state(self, namespace: str, name: str, state: ResourceState) -> None:
        """Replace the per-resource state."""
        with self.lock:
            self.states[(namespace, name)] = state

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted resource's series."""
        with self.lock:
            self.states.pop((namespace, name), None)

    def exposition(self) -> bytes:
        """The text exposition format of every series."""
        return generate_latest(self.registry)


def build_app(metrics: OperatorMetrics | None, healthy: object = None) -> web.Application:
    """``/metrics`` (when ``metrics`` is given) and ``/healthz``.

    ``healthy`` is a zero-argument callable returning ``(ok, text)``; the
    probe fails (503) when it says so, e.g. when the event loop is wedged.
    """

    async def healthz(_: web.Request) -> web.Response:
        ok, text = healthy() if callable(healthy) else (True, "ok")
        return web.Response(status=200 if ok else 503, text=text)

    async def serve_metrics(_: web.Request) -> web.Response:
        assert metrics is not None
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    if metrics is not None:
        app.router.add_get("/metrics", serve_metrics)
    return app


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (for cleanup) and the bound port (``0`` picks one)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
        break
    return runner, bound
