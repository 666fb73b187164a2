"""High availability: two ``specops run`` replicas, one Lease, only the holder acts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_harness import (
    Kube,
    OperatorProcess,
    install_crd,
    qwen_spec,
    resource,
    stays_quiet,
    wait_for,
)

from hubserver import HubServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    server = HubServer()
    server.add_fixtures()
    with server:
        yield server


@pytest.fixture
def kube(kube_cluster: Any, namespace: str) -> Iterator[Kube]:
    with kube_cluster.api_client() as api:
        install_crd(api)
        yield Kube(api, namespace)


def reconciles(proc: OperatorProcess) -> float:
    return sum(v for k, v in proc.metrics().items() if k.startswith("specops_reconcile_total"))


def holder(kube: Kube, lease: str) -> str:
    got = client.CoordinationV1Api(kube.api).read_namespaced_lease(lease, kube.ns)
    return str(got.spec.holder_identity or "")


def test_only_the_lease_holder_acts_and_a_follower_takes_over(
    kube_cluster: Any, namespace: str, kube: Kube, hub: HubServer, tmp_path: Path
) -> None:
    def replica(identity: str) -> OperatorProcess:
        return OperatorProcess(
            kube_cluster.kubeconfig,
            namespace,
            tmp_path,
            hub_endpoint=hub.endpoint,
            mirror=None,
            lease_name="specops-ha",
            identity=identity,
        )

    first, second = replica("replica-a"), replica("replica-b")
    first.start()
    try:
        wait_for("replica-a to lead", first.leading, timeout=20)
        second.start()
        assert holder(kube, "specops-ha") == "replica-a"
        assert not second.leading()

        kube.create(resource("one", qwen_spec()))
        wait_for("the leader to create the Deployment", lambda: kube.deployment("one"))
        kube.wait_condition("one", "Ready", "True", reason="Available", timeout=90)
        assert reconciles(first) >= 1
        stays_quiet("the follower's reconcile count", lambda: reconciles(second), seconds=2)
        assert reconciles(second) == 0

        killed_at = time.monotonic()
        first.kill()
        wait_for("replica-b to take over", second.leading, timeout=30)
        took = time.monotonic() - killed_at
        assert holder(kube, "specops-ha") == "replica-b"
        # It waited for the Lease to expire (4 s) rather than jumping in at once.
        assert took >= 3.0, f"took over after {took:.1f}s, before the Lease expired"

        kube.create(resource("two", qwen_spec()))
        wait_for("the new leader to create the Deployment", lambda: kube.deployment("two"))
        wait_for("replica-b to count the cycle", lambda: reconciles(second) >= 1)

        # A clean stop hands the Lease back: the next replica leads without waiting.
        assert second.stop() == 0
        assert holder(kube, "specops-ha") == ""
        third = replica("replica-c")
        third.start()  # returns once its /healthz answers; the first Lease attempt follows
        started = time.monotonic()
        try:
            wait_for("replica-c to lead", third.leading, timeout=20)
            assert time.monotonic() - started < 3.0, "waited for expiry of a released Lease"
        finally:
            third.stop()
    finally:
        first.kill()
        second.stop()
        for proc in (first, second):
            print(f"--- {proc.identity} ---\n{proc.logs()}")


def test_a_leader_that_loses_its_lease_stops_and_exits(
    kube_cluster: Any, namespace: str, kube: Kube, hub: HubServer, tmp_path: Path
) -> None:
    proc = OperatorProcess(
        kube_cluster.kubeconfig,
        namespace,
        tmp_path,
        hub_endpoint=hub.endpoint,
        mirror=None,
        lease_name="specops-lost",
        identity="replica-lost",
    ).start()
    try:
        wait_for("replica-lost to lead", proc.leading, timeout=20)
        # Another replica (or an operator mistake) takes the Lease over.
        client.CoordinationV1Api(kube.api).patch_namespaced_lease(
            "specops-lost",
            namespace,
            {"spec": {"holderIdentity": "intruder", "leaseTransitions": 99}},
        )
        assert proc.proc is not None
        wait_for("the old leader to exit", lambda: proc.proc.poll() is not None, timeout=30)
        assert proc.proc.returncode == 1, proc.logs()
        assert "another replica took the Lease" in proc.logs()
        assert holder(kube, "specops-lost") == "intruder", "a deposed leader must not release"
    finally:
        proc.stop()
