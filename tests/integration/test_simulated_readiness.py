"""Simulated readiness: a SpecOps pod is Ready only once its simulator has loaded.

On a cluster started with ``simulated_readiness`` kwok brings SpecOps pods up
Running but NotReady, and the pod runner (standing in for kubelet) marks each
Ready when its simulator answers ``/health``, NotReady when it stops. Checked
on a real control plane of its own (the session cluster keeps kwok's
immediate readiness, which most tests rely on): pods wait NotReady until a
runner exists, the Deployment becomes available only through the runner, a
rolling update waits for the new simulators, a crashed simulator takes its pod
out of the Service until its restart has loaded, and pods SpecOps does not
manage are untouched.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_harness import pod_runner, stays_quiet, wait_for
from test_podrunner import LABELS, alive, deployment, read_state

from specops.devcluster import Cluster, tools
from specops.devcluster import cluster as devcluster

pytestmark = pytest.mark.integration

NAMESPACE = "readiness"


@pytest.fixture(scope="module")
def gated_cluster() -> Iterator[Cluster]:
    name = f"pytest-{os.getpid()}-gated"
    cluster = devcluster.up(
        name, bin_dir=tools.find(), die_with_parent=True, simulated_readiness=True
    )
    try:
        assert cluster.simulated_readiness
        yield cluster
    finally:
        devcluster.down(name)


@pytest.fixture(scope="module")
def core(gated_cluster: Cluster) -> Iterator[client.CoreV1Api]:
    with gated_cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        wait_for(
            "the default ServiceAccount",
            lambda: core.list_namespaced_service_account(NAMESPACE).items,
        )
        yield core


def _ready(pod: Any) -> tuple[str, str]:
    condition = next(c for c in pod.status.conditions or [] if c.type == "Ready")
    return condition.status, condition.reason or ""


def _pods(core: client.CoreV1Api, selector: str) -> list[Any]:
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
    return [p for p in pods if p.metadata.deletion_timestamp is None and p.status.pod_ip]


def _available(apps: client.AppsV1Api, name: str) -> int:
    return apps.read_namespaced_deployment(name, NAMESPACE).status.available_replicas or 0


def test_pods_wait_for_their_simulator_through_start_rollout_and_crash(
    gated_cluster: Cluster, core: client.CoreV1Api, tmp_path: Path
) -> None:
    with gated_cluster.api_client() as api:
        apps = client.AppsV1Api(api)
        managed = deployment("llama", 2)
        managed["spec"]["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }
        # A pod SpecOps does not manage (Helm's label) is Ready at once, as before.
        other = deployment("other", 1)
        other["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "Helm"
        tmpl = other["spec"]["template"]
        tmpl["metadata"]["labels"] = {"app": "other", "app.kubernetes.io/managed-by": "Helm"}
        other["spec"]["selector"] = {"matchLabels": {"app": "other"}}
        tmpl["spec"]["nodeSelector"] = {}
        tmpl["spec"]["containers"][0]["resources"] = {}
        apps.create_namespaced_deployment(NAMESPACE, managed)
        apps.create_namespaced_deployment(NAMESPACE, other)

        wait_for("the unmanaged pod Ready", lambda: _available(apps, "other") == 1)
        selector = ",".join(f"{k}={v}" for k, v in LABELS.items())
        wait_for("two managed pods up", lambda: len(_pods(core, selector)) == 2)

        # No pod runner yet, so nothing has loaded a model: NotReady, and they stay so.
        states = [_ready(p) for p in _pods(core, selector)]
        assert all(s == ("False", "SimulatorLoading") for s in states), states
        stays_quiet(
            "managed pods NotReady without a runner",
            lambda: sorted(_ready(p) for p in _pods(core, selector)),
            seconds=3,
        )
        assert _available(apps, "llama") == 0
        targets = tmp_path / "targets"
        with pod_runner(gated_cluster.kubeconfig, targets, tmp_path / "podrunner.log") as proc:
            _with_runner(apps, core, targets / "frontdoors.json", selector)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0


def _with_runner(
    apps: client.AppsV1Api, core: client.CoreV1Api, runner: Path, selector: str
) -> None:
    wait_for("both replicas available", lambda: _available(apps, "llama") == 2)
    states = [_ready(p) for p in _pods(core, selector)]
    assert states == [("True", "SimulatorReady")] * 2
    ready_sims = {k: v for k, v in read_state(runner)["simulators"].items() if v["ready"]}
    assert len(ready_sims) == 2

    # A rolling update: every new pod is NotReady while its simulator
    # loads, and the old pods serve until the new ones are Ready.
    apps.patch_namespaced_deployment(
        "llama",
        NAMESPACE,
        {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}},
    )
    seen_loading: set[str] = set()
    old = {p.metadata.name for p in _pods(core, selector)}

    def rolled_out() -> bool:
        pods = _pods(core, selector)
        for pod in pods:
            if pod.metadata.name not in old and _ready(pod)[0] == "False":
                seen_loading.add(pod.metadata.name)
        ready = sum(_ready(p)[0] == "True" for p in pods)
        assert ready >= 2, [(p.metadata.name, _ready(p)) for p in pods]
        d = apps.read_namespaced_deployment("llama", NAMESPACE)
        return (
            d.status.updated_replicas == 2
            and (d.status.available_replicas or 0) == 2
            and not old & {p.metadata.name for p in pods}
        )

    wait_for("the rollout", rolled_out, timeout=120)
    new = {p.metadata.name for p in _pods(core, selector)}
    assert new and seen_loading >= new, (new, seen_loading)

    # A crashed simulator takes its pod out of the Service until the
    # runner's restart has loaded again.
    victim = sorted(new)[0]
    pid = read_state(runner)["simulators"][f"{NAMESPACE}/{victim}"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(
        "the crashed replica NotReady",
        lambda: (
            _ready(core.read_namespaced_pod(victim, NAMESPACE)) == ("False", "SimulatorNotReady")
        ),
        timeout=60,
    )
    wait_for(
        "the restarted replica Ready",
        lambda: _ready(core.read_namespaced_pod(victim, NAMESPACE)) == ("True", "SimulatorReady"),
        timeout=90,
    )
    assert not alive(pid)
    wait_for("both replicas available again", lambda: _available(apps, "llama") == 2)
