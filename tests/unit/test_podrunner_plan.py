"""Which pods get simulators, with which arguments and which Prometheus labels."""

from __future__ import annotations

from typing import Any

import pytest

from specops.podrunner import plan
from specops.podrunner.balance import Backend, LeastOutstanding

ARGS = ["serve", "meta-llama/Llama-3.1-8B-Instruct", "--tensor-parallel-size", "1"]


def node(name: str, gpu: str | None = "H100-80GB", kwok: bool = True) -> dict[str, Any]:
    labels = {plan.GPU_TYPE_LABEL: gpu} if gpu else {}
    annotations = {plan.KWOK_ANNOTATION: "fake"} if kwok else {}
    return {"metadata": {"name": name, "labels": labels, "annotations": annotations}}


def pod(
    name: str,
    *,
    phase: str = "Running",
    node_name: str = "h100-0",
    args: list[str] | None = None,
    command: list[str] | None = None,
    managed: bool = True,
    deleting: bool = False,
    container: str = "vllm",
) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": "llama",
        "specops.dev/speculation": "on",
        "pod-template-hash": "abc",
    }
    if managed:
        labels[plan.MANAGED_BY_LABEL] = "specops"
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {
            "nodeName": node_name,
            "containers": [
                {"name": "sidecar", "args": ["serve", "x"]},
                {
                    "name": container,
                    "command": command if command is not None else ["vllm"],
                    "args": args if args is not None else ARGS,
                },
            ],
        },
        "status": {"phase": phase},
    }


NODES = {
    "h100-0": node("h100-0"),
    "cpu-0": node("cpu-0", gpu=None),
    "real": node("real", kwok=False),
}


def test_running_managed_pod_on_kwok_gpu_node_becomes_a_replica() -> None:
    replicas, skipped = plan.replicas([pod("a")], NODES)
    assert skipped == []
    [replica] = replicas.values()
    assert (replica.key, replica.gpu, replica.node) == ("ns/a", "H100-80GB", "h100-0")
    assert replica.serve_args == tuple(ARGS)


@pytest.mark.parametrize(
    "variant",
    [
        {"phase": "Pending"},
        {"phase": "Succeeded"},
        {"managed": False},
        {"deleting": True},
    ],
    ids=["pending", "finished", "not-managed-by-specops", "terminating"],
)
def test_pods_that_should_not_serve_are_ignored_silently(variant: dict[str, Any]) -> None:
    assert plan.replicas([pod("a", **variant)], NODES) == ({}, [])


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ({"node_name": "cpu-0"}, "no specops.dev/gpu-type"),
        ({"node_name": "real"}, "not simulated"),
        ({"node_name": "gone"}, "not found"),
        ({"container": "main"}, "no container named 'vllm'"),
        ({"args": ["--help"]}, "vllm serve"),
    ],
    ids=["cpu-node", "real-node", "unknown-node", "no-vllm-container", "no-serve"],
)
def test_pods_that_cannot_serve_are_skipped_with_a_reason(
    variant: dict[str, Any], reason: str
) -> None:
    replicas, [skip] = plan.replicas([pod("a", **variant)], NODES)
    assert replicas == {}
    assert skip.key == "ns/a"
    assert reason in skip.reason


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        (["vllm"], [*ARGS, "--port", "8000", "--host=0.0.0.0"], ARGS),
        (["vllm", "serve"], ["m", "--max-num-seqs", "8"], ["serve", "m", "--max-num-seqs", "8"]),
        (["vllm"], ["serve", "--port=8000", "m"], ["serve", "m"]),
    ],
)
def test_serve_args_keep_the_pods_flags_but_not_where_it_listens(
    command: list[str], args: list[str], expected: list[str]
) -> None:
    assert plan.serve_args({"command": command, "args": args}) == tuple(expected)


def test_simulator_gets_the_pod_args_gpu_and_a_loopback_port() -> None:
    [replica] = plan.replicas([pod("a")], NODES)[0].values()
    argv = plan.simulator_argv(replica, 4321, hub_mirror="/m", time_scale=10, load_time_s=2.5)
    assert argv[: len(ARGS)] == ARGS
    tail = argv[len(ARGS) :]
    assert tail[:4] == ["--gpu", "H100-80GB", "--port", "4321"]
    assert tail[4] == "--seed" and tail[5] == str(replica.seed)
    assert tail[6:] == ["--hub-mirror", "/m", "--time-scale", "10", "--load-time", "2.5"]


def test_seed_is_stable_per_pod_and_differs_between_pods() -> None:
    replicas = plan.replicas([pod("a"), pod("b")], NODES)[0]
    again = plan.replicas([pod("a"), pod("b")], NODES)[0]
    assert replicas["uid-a"].seed == again["uid-a"].seed != replicas["uid-b"].seed


def test_target_labels_match_a_podmonitor_with_app_kubernetes_io_target_labels() -> None:
    [replica] = plan.replicas([pod("a")], NODES)[0].values()
    assert plan.target_labels(replica) == {
        "namespace": "ns",
        "pod": "a",
        "container": "vllm",
        "endpoint": "http",
        "app_kubernetes_io_name": "vllm",
        "app_kubernetes_io_instance": "llama",
        "app_kubernetes_io_managed_by": "specops",
    }


def test_front_doors_for_managed_services_select_their_namespace_pods() -> None:
    services = [
        {
            "metadata": {
                "name": "llama",
                "namespace": "ns",
                "labels": {plan.MANAGED_BY_LABEL: "specops"},
            },
            "spec": {"selector": {"app.kubernetes.io/instance": "llama"}},
        },
        {
            "metadata": {"name": "other", "namespace": "ns", "labels": {}},
            "spec": {"selector": {"a": "b"}},
        },
        {
            "metadata": {
                "name": "headless",
                "namespace": "ns",
                "labels": {plan.MANAGED_BY_LABEL: "specops"},
            },
            "spec": {},
        },
    ]
    doors = plan.front_doors(services)
    assert list(doors) == ["ns/llama"]
    [replica] = plan.replicas([pod("a")], NODES)[0].values()
    assert doors["ns/llama"].selects(replica)
    elsewhere = plan.FrontDoor("other-ns", "llama", {"app.kubernetes.io/instance": "llama"})
    assert not elsewhere.selects(replica)


def test_least_outstanding_skips_unready_and_busy_replicas_and_rotates_ties() -> None:
    a, b, c = Backend("a", "u", ready=True), Backend("b", "u", ready=True), Backend("c", "u")
    lor = LeastOutstanding()
    assert {lor.pick([a, b, c]).key for _ in range(4)} == {"a", "b"}  # type: ignore[union-attr]
    a.outstanding = 2
    assert lor.pick([a, b, c]) is b
    b.ready = False
    assert lor.pick([a, b, c]) is a
    a.ready = False
    assert lor.pick([a, b, c]) is None


@pytest.mark.parametrize(
    ("crashes", "delay"),
    [(0, 0.0), (1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (5, 60.0), (9, 60.0)],
)
def test_restart_delay_doubles_like_crashloopbackoff_and_is_capped(
    crashes: int, delay: float
) -> None:
    assert plan.restart_delay(crashes, 5.0) == delay


@pytest.mark.parametrize(
    ("condition", "gated", "ready"),
    [
        pytest.param(None, False, False, id="no Ready condition yet"),
        pytest.param({"status": "True"}, False, True, id="kwok made it Ready: not ours"),
        pytest.param(
            {"status": "False", "reason": "SimulatorLoading"}, True, False, id="gated, loading"
        ),
        pytest.param(
            {"status": "True", "reason": "SimulatorReady"}, True, True, id="gated, marked Ready"
        ),
    ],
)
def test_readiness_is_ours_only_on_pods_kwok_started_gated(
    condition: dict[str, str] | None, gated: bool, ready: bool
) -> None:
    p = pod("a")
    if condition is not None:
        p["status"]["conditions"] = [{"type": "Initialized", "status": "True"}]
        p["status"]["conditions"].append({"type": "Ready", **condition})
    assert plan.readiness(p) == (gated, ready)
    replica = plan.replicas([p], NODES)[0]["uid-a"]
    assert (replica.gated, replica.pod_ready) == (gated, ready)
