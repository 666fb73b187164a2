"""The pod runner on the real control plane, with real simulators and a real Prometheus.

A Deployment of SpecOps-labelled vLLM pods lands on kwok GPU nodes; the pod
runner must give each Running pod a simulator started with that pod's own
arguments, follow scale-down and pod replacement, and keep Prometheus' file
SD targets in step.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from operator_harness import pod_runner
from prometheus_client.parser import text_string_to_metric_families

from specops.prom import PrometheusServer

pytestmark = pytest.mark.integration

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
VERIFIER = "meta-llama/Llama-3.1-8B-Instruct"
SPEC = {
    "method": "eagle3",
    "model": "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3",
    "num_speculative_tokens": 3,
}
POD_ARGS = [
    "serve",
    VERIFIER,
    "--tensor-parallel-size",
    "1",
    "--max-num-seqs",
    "16",
    "--speculative-config",
    json.dumps(SPEC),
]
LABELS = {
    "app.kubernetes.io/name": "vllm",
    "app.kubernetes.io/instance": "llama",
    "app.kubernetes.io/component": "server",
}
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], timeout: float = 90.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        time.sleep(0.5)


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {**LABELS, "app.kubernetes.io/managed-by": "specops"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": {**LABELS, "app.kubernetes.io/managed-by": "specops"}},
                "spec": {
                    "nodeSelector": {"specops.dev/gpu-type": "H100-80GB"},
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:v0.33.0",
                            "command": ["vllm"],
                            "args": [*POD_ARGS, "--port", "8000"],
                            "ports": [{"name": "http", "containerPort": 8000}],
                            "resources": {
                                "limits": {"nvidia.com/gpu": "1"},
                                "requests": {"nvidia.com/gpu": "1"},
                            },
                        }
                    ],
                },
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {**LABELS, "app.kubernetes.io/managed-by": "specops"}},
        "spec": {"selector": LABELS, "ports": [{"name": "http", "port": 8000}]},
    }


@pytest.fixture
def podrunner(kube_cluster: Any, prometheus_server: PrometheusServer) -> Iterator[Path]:
    """The real ``python -m specops.podrunner`` process; yields its state file."""
    state = prometheus_server.targets_dir / "frontdoors.json"
    log = prometheus_server.workdir / "podrunner.log"
    with pod_runner(kube_cluster.kubeconfig, prometheus_server.targets_dir, log) as proc:
        yield state
        # Clean shutdown: every simulator it started must be gone afterwards.
        pids = [s["pid"] for s in read_state(state)["simulators"].values()]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not [p for p in pids if alive(p)]


def read_state(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {"frontdoors": {}, "simulators": {}}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by the runner) is not serving either.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def simulators(state: Path, ns: str, ready: int) -> dict[str, Any] | None:
    sims = {k: v for k, v in read_state(state)["simulators"].items() if k.startswith(f"{ns}/")}
    return sims if len(sims) == ready and all(s["ready"] for s in sims.values()) else None


def up_targets(prom: PrometheusServer, ns: str) -> list[dict[str, str]]:
    return [
        t.labels
        for t in prom.client().targets("specops-vllm")
        if t.labels.get("namespace") == ns and t.health == "up"
    ]


async def stream_through(url: str) -> tuple[int, int]:
    """One streamed completion through the front door: (SSE data lines, completion tokens)."""
    body = {
        "model": VERIFIER,
        "prompt": "hello " * 16,
        "max_tokens": 24,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    lines = tokens = 0
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/completions", json=body) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for raw in resp.content:
            if raw.startswith(b"data: {"):
                lines += 1
                usage = json.loads(raw[6:]).get("usage")
                if usage:
                    tokens = usage["completion_tokens"]
    return lines, tokens


async def spread(url: str, n: int) -> None:
    await asyncio.gather(*(stream_through(url) for _ in range(n)))


def served(sim_url: str) -> float:
    with urllib.request.urlopen(sim_url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "vllm:request_success_total"
    )


def door_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/v1/models", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_pods_get_simulators_that_follow_scaling_and_replacement(
    kube_cluster: Any, namespace: str, prometheus_server: PrometheusServer, podrunner: Path
) -> None:
    from kubernetes import client

    with kube_cluster.api_client() as api:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        apps.create_namespaced_deployment(namespace, deployment("llama", 3))
        core.create_namespaced_service(namespace, service("llama"))

        # Three pods, three ready simulators, each with the pod's own args (minus --port).
        sims = wait_for("3 ready simulators", lambda: simulators(podrunner, namespace, 3))
        pods = core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/instance=llama"
        )
        assert sorted(f"{namespace}/{p.metadata.name}" for p in pods.items) == sorted(sims)
        for sim in sims.values():
            assert sim["args"] == POD_ARGS
            assert sim["gpu"] == "H100-80GB"
            assert sim["url"].startswith("http://127.0.0.1:")

        # Prometheus scrapes all three, with the PodMonitor-style labels.
        targets = wait_for(
            "3 targets up", lambda: len(up_targets(prometheus_server, namespace)) == 3
        )
        assert targets
        labels = up_targets(prometheus_server, namespace)
        assert {t["pod"] for t in labels} == {k.split("/")[1] for k in sims}
        assert {t["app_kubernetes_io_instance"] for t in labels} == {"llama"}
        assert {t["container"] for t in labels} == {"vllm"}

        # The Service's front door streams from a replica.
        door = read_state(podrunner)["frontdoors"][f"{namespace}/llama"]
        assert len(door["backends"]) == 3
        lines, tokens = asyncio.run(stream_through(door["url"]))
        assert tokens == 24
        assert 1 <= lines <= 25  # speculation may put several tokens in one chunk

        # Least outstanding requests: concurrent streams reach every ready replica.
        before = {k: served(s["url"]) for k, s in sims.items()}
        asyncio.run(spread(door["url"], 12))
        per_replica = {k: served(s["url"]) - before[k] for k, s in sims.items()}
        assert sum(per_replica.values()) == 12
        assert min(per_replica.values()) >= 2, per_replica

        # Scale to one: two simulators stop, Prometheus drops to one target.
        apps.patch_namespaced_deployment_scale(
            namespace=namespace, name="llama", body={"spec": {"replicas": 1}}
        )
        left = wait_for("1 simulator", lambda: simulators(podrunner, namespace, 1))
        stopped = [s["pid"] for k, s in sims.items() if k not in left]
        assert len(stopped) == 2
        wait_for("stopped simulators to exit", lambda: not any(alive(p) for p in stopped), 30)
        wait_for(
            "1 target in Prometheus",
            lambda: len(prometheus_server.client().targets("specops-vllm")) == 1,
        )
        [(survivor_key, survivor)] = left.items()
        assert len(up_targets(prometheus_server, namespace)) == 1

        # Deleting the pod replaces its simulator (new pod, new process).
        core.delete_namespaced_pod(survivor_key.split("/")[1], namespace, grace_period_seconds=0)

        # The replacement loads its model first (3 s): no ready replica, the door says 503.
        def new_sim() -> dict[str, Any] | None:
            sims = read_state(podrunner)["simulators"]
            return next(
                (v for k, v in sims.items() if k.startswith(f"{namespace}/") and k != survivor_key),
                None,
            )

        loading = wait_for("the replacement simulator to start", new_sim)
        assert loading["ready"] is False
        assert door_status(door["url"]) == 503
        replaced = wait_for(
            "a replacement simulator",
            lambda: (s := simulators(podrunner, namespace, 1)) and survivor_key not in s and s,
        )
        [(new_key, new)] = replaced.items()
        assert new["pid"] != survivor["pid"] and new["args"] == POD_ARGS
        wait_for("old simulator to exit", lambda: not alive(survivor["pid"]), 30)
        wait_for(
            "the new pod's target up",
            lambda: (
                [t["pod"] for t in up_targets(prometheus_server, namespace)]
                == [new_key.split("/")[1]]
            ),
        )


async def _stream_while(url: str, tokens: int, during: Callable[[], None]) -> int:
    """Stream ``tokens`` tokens; call ``during`` after the first chunk; return tokens received."""
    body = {
        "model": VERIFIER,
        "prompt": "hello " * 16,
        "max_tokens": tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    received = 0
    called = False
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/completions", json=body) as resp,
    ):
        assert resp.status == 200, await resp.text()
        async for raw in resp.content:
            if not raw.startswith(b"data: {"):
                continue
            if not called:
                called = True
                await asyncio.to_thread(during)
            usage = json.loads(raw[6:]).get("usage")
            if usage:
                received = usage["completion_tokens"]
    return received


def test_a_deleted_pod_finishes_its_streams_before_its_simulator_stops(
    kube_cluster: Any, namespace: str, podrunner: Path
) -> None:
    """As kubelet and vLLM's server do: out of the Service at once, in-flight requests finish."""
    from kubernetes import client

    with kube_cluster.api_client() as api:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        apps.create_namespaced_deployment(namespace, deployment("llama", 1))
        core.create_namespaced_service(namespace, service("llama"))
        [sim] = wait_for("a ready simulator", lambda: simulators(podrunner, namespace, 1)).values()
        door = read_state(podrunner)["frontdoors"][f"{namespace}/llama"]

        def scale_to_zero() -> None:
            apps.patch_namespaced_deployment_scale(
                namespace=namespace, name="llama", body={"spec": {"replicas": 0}}
            )
            wait_for("the pod gone", lambda: not simulators(podrunner, namespace, 1), 30)

        # 1,500 tokens take a few seconds on a simulated H100, longer than the scale-down.
        received = asyncio.run(_stream_while(door["url"], 1500, scale_to_zero))
        assert received == 1500
        assert door_status(door["url"]) == 503  # no replica behind the door any more
        wait_for("the drained simulator to exit", lambda: not alive(sim["pid"]), 30)
