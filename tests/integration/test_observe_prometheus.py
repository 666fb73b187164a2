"""The observation read through a real Prometheus matches the simulated replicas' own counters.

Two simulated vLLM replicas of one deployment (plus a busy replica of another
deployment that must not leak in) export vLLM's metrics on loopback; a real
Prometheus scrapes them through file SD with the labels a PodMonitor
attaches. Each target's rates carry Prometheus' extrapolation factor for that target
(1 + O(scrape interval / window)), so the pooled ratios match the engines'
counters to about a percent; a wrong formula (drafts for draft tokens, a
missing bonus token) is off by far more.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from specops import gpus, modelarch, perfmodel
from specops.observe import LabelNames, PrometheusObserver
from specops.policy.observations import Observation
from specops.prom import PrometheusServer
from specops.prom.filesd import TargetGroup, write_targets
from specops.prom.server import free_loopback_port
from specops.sim.acceptance import flat
from specops.sim.engine import EngineConfig, StepResult, Workload, simulate
from specops.sim.metrics import VllmMetrics

pytestmark = pytest.mark.integration

REL = 0.02
"""Tolerance for pooled ratios (see the module docstring)."""

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"


def _arch(repo: str) -> modelarch.ModelArch:
    return modelarch.from_config(json.loads((HUB / repo / "config.json").read_text()))


REPLICA = perfmodel.Replica.build(
    _arch("meta-llama/Llama-3.1-8B-Instruct"),
    gpus.CATALOGUE["H100-80GB"],
    1,
    _arch("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"),
)


@dataclass
class Totals:
    """The engine's own counters, accumulated independently of the exporter."""

    itl_sum: float = 0.0
    itl_count: int = 0
    iteration_tokens: int = 0
    steps: int = 0
    drafts: int = 0
    draft_tokens: int = 0
    accepted: int = 0
    per_position: list[int] = field(default_factory=list)

    def add(self, step: StepResult) -> None:
        self.steps += 1
        self.iteration_tokens += step.prompt_tokens + step.generation_tokens
        self.drafts += step.drafts
        self.draft_tokens += step.draft_tokens
        self.accepted += step.accepted_tokens
        for i, n in enumerate(step.accepted_per_position):
            while len(self.per_position) <= i:
                self.per_position.append(0)
            self.per_position[i] += n
        for event in step.events:
            if not event.first:
                self.itl_sum += step.end - event.previous_token_at
                self.itl_count += 1


@dataclass
class SimReplica:
    metrics: VllmMetrics
    port: int
    config: EngineConfig

    def run(self, requests: int, seed: int) -> Totals:
        totals = Totals()

        def observe(step: StepResult) -> None:
            self.metrics.observe_step(step)
            totals.add(step)

        workload = Workload(requests, 256, 96, concurrency=6, seed=seed)
        simulate(self.config, workload, observer=observe)
        return totals


def serve(metrics: VllmMetrics, port: int) -> ThreadingHTTPServer:
    """Serve the text exposition format, as vLLM's /metrics does.

    (prometheus_client 0.26's OpenMetrics negotiation, which
    ``start_http_server`` would offer Prometheus, rewrites ``vllm:`` to
    ``vllm_`` in sample names.)
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = metrics.exposition()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def replicas() -> Iterator[dict[str, SimReplica]]:
    out: dict[str, SimReplica] = {}
    servers = []
    for pod, alpha in (("llama-0", 0.7), ("llama-1", 0.7), ("other-0", 0.2)):
        metrics = VllmMetrics("llama", max_model_len=4096, num_spec_tokens=3)
        port = free_loopback_port()
        servers.append(serve(metrics, port))
        config = EngineConfig(
            replica=REPLICA,
            num_gpu_blocks=20000,
            max_model_len=4096,
            num_speculative_tokens=3,
            acceptance=flat(alpha),
            seed=hash(pod) % 1000,
        )
        out[pod] = SimReplica(metrics, port, config)
    yield out
    for server in servers:
        server.shutdown()
        server.server_close()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def _scrapes(prom: PrometheusServer, pod: str) -> int:
    samples = prom.client().query(f'count_over_time(vllm:num_requests_running{{pod="{pod}"}}[1m])')
    return int(samples[0].value) if samples else 0


def test_observation_matches_the_simulated_replicas_counters(
    prometheus_server: PrometheusServer, replicas: dict[str, SimReplica]
) -> None:
    groups = []
    for pod, rep in replicas.items():
        instance = "llama" if pod.startswith("llama") else "other"
        labels = {
            "namespace": "team-a",
            "pod": pod,
            "container": "vllm",
            "endpoint": "http",
            "app_kubernetes_io_instance": instance,
        }
        groups.append(TargetGroup((f"127.0.0.1:{rep.port}",), labels))
        # Create every series (per-position counters appear on first use) before scraping,
        # with enough history that Prometheus' counter extrapolation is not cut at zero.
        rep.run(20, seed=99)
    write_targets(prometheus_server.targets_dir / "pods.json", groups)
    wait_for(lambda: all(_scrapes(prometheus_server, pod) >= 2 for pod in replicas))
    start = time.time()
    time.sleep(2.5)  # at least two flat samples inside the window before the load

    totals = [replicas["llama-0"].run(40, seed=1), replicas["llama-1"].run(40, seed=2)]
    replicas["other-0"].run(60, seed=3)
    loaded = _scrapes(prometheus_server, "llama-1")
    wait_for(lambda: _scrapes(prometheus_server, "llama-1") >= loaded + 3)

    observer = PrometheusObserver(prometheus_server.url)
    obs = observer.observe("team-a", "llama", window_s=time.time() - start)

    assert obs.replicas_reporting == 2, obs.missing
    assert obs.num_speculative_tokens == 3
    drafts = sum(t.drafts for t in totals)
    accepted = sum(t.accepted for t in totals)
    draft_tokens = sum(t.draft_tokens for t in totals)
    acc = obs.acceptance
    assert acc is not None, obs.missing
    assert acc.acceptance_rate == pytest.approx(accepted / draft_tokens, rel=REL)
    assert acc.mean_acceptance_length == pytest.approx(1 + accepted / drafts, rel=REL)
    per_pos = [sum(t.per_position[i] for t in totals) / drafts for i in range(3)]
    assert acc.per_position == pytest.approx(per_pos, rel=REL)
    # the low-acceptance replica of the other deployment did not leak in
    assert acc.acceptance_rate > 0.45
    itl = sum(t.itl_sum for t in totals) / sum(t.itl_count for t in totals)
    assert obs.mean_itl_s == pytest.approx(itl, rel=REL)
    per_step = sum(t.iteration_tokens for t in totals) / sum(t.steps for t in totals)
    assert obs.tokens_per_step == pytest.approx(per_step, rel=REL)
    # every request generates 96 tokens: tokens/s over requests/s is the output length
    assert obs.generation_tokens_per_s is not None and obs.requests_per_s is not None
    assert obs.generation_tokens_per_s / obs.requests_per_s == pytest.approx(96, rel=REL)
    assert obs.running_per_replica is not None and obs.kv_cache_usage is not None
    assert obs.mean_ttft_s is not None and obs.mean_ttft_s > 0


def test_label_names_follow_the_clusters_relabelling(
    prometheus_server: PrometheusServer, replicas: dict[str, SimReplica]
) -> None:
    rep = replicas["llama-0"]
    labels = {"kube_namespace": "team-b", "pod": "llama-0", "deployment": "llama"}
    write_targets(
        prometheus_server.targets_dir / "pods.json",
        [TargetGroup((f"127.0.0.1:{rep.port}",), labels)],
    )
    wait_for(lambda: _scrapes(prometheus_server, "llama-0") >= 2)
    default = PrometheusObserver(prometheus_server.url).observe("team-b", "llama", 30)
    assert default.replicas_reporting == 0 and not default.available
    custom = PrometheusObserver(
        prometheus_server.url, LabelNames(namespace="kube_namespace", instance="deployment")
    ).observe("team-b", "llama", 30)
    assert custom.replicas_reporting == 1


def test_prometheus_down_is_an_explicit_blind_observation_and_recovers(
    prometheus_server: PrometheusServer, replicas: dict[str, SimReplica]
) -> None:
    rep = replicas["llama-0"]
    labels = {"namespace": "team-c", "pod": "llama-0", "app_kubernetes_io_instance": "llama"}
    write_targets(
        prometheus_server.targets_dir / "pods.json",
        [TargetGroup((f"127.0.0.1:{rep.port}",), labels)],
    )
    wait_for(lambda: _scrapes(prometheus_server, "llama-0") >= 2)
    observer = PrometheusObserver(prometheus_server.url, timeout_s=2.0)
    assert observer.observe("team-c", "llama", 30).available

    prometheus_server.stop()
    blind: Observation = observer.observe("team-c", "llama", 30)
    assert not blind.available
    assert blind.missing and "Prometheus unreachable" in blind.missing[0]

    prometheus_server.start()
    wait_for(lambda: observer.observe("team-c", "llama", 30).available)
