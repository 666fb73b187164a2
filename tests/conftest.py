"""Fixtures shared by every test: the real local Kubernetes control plane.

``kube_cluster`` starts one cluster per test session (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok built by ``hack/build-tools``, which
this fixture runs when the tools are missing, so plain ``pytest`` works on a fresh
clone) and stops it at the end, also when tests fail or pytest is interrupted.
``SPECOPS_TEST_KUBECONFIG`` points the tests at an existing cluster instead.

``namespace`` gives each test a fresh namespace whose ``default`` ServiceAccount
already exists (the ServiceAccount admission plugin rejects pods until it does).
"""

from __future__ import annotations

import atexit
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from specops.devcluster import Cluster, ClusterError, NodePoolError, ToolsError, tools
from specops.devcluster import cluster as devcluster

EXTERNAL_KUBECONFIG_ENV = "SPECOPS_TEST_KUBECONFIG"

# Only loopback: whatever a test or the operator subprocesses it starts forget to
# configure must fail against a closed loopback port, never reach the public Hub or
# resolve an in-cluster Prometheus name through a non-loopback nameserver. Tests that
# use a real loopback Hub or Prometheus pass their own URL explicitly.
_CLOSED_LOOPBACK = "http://127.0.0.1:9"
for _name in ("HF_ENDPOINT", "SPECOPS_HUB_ENDPOINT", "SPECOPS_PROMETHEUS_URL"):
    os.environ.setdefault(_name, _CLOSED_LOOPBACK)


def _external_cluster(path: str) -> Cluster:
    kubeconfig = Path(path).expanduser()
    if not kubeconfig.is_file():
        pytest.fail(f"{EXTERNAL_KUBECONFIG_ENV}={path} is not a file", pytrace=False)
    try:
        document = yaml.safe_load(kubeconfig.read_text())
        current = document["current-context"]
        context = next(c for c in document["contexts"] if c["name"] == current)["context"]
        server = next(c for c in document["clusters"] if c["name"] == context["cluster"])[
            "cluster"
        ]["server"]
    except (yaml.YAMLError, KeyError, TypeError, StopIteration):
        pytest.fail(f"{EXTERNAL_KUBECONFIG_ENV}={path}: no usable current context", pytrace=False)
    return Cluster(
        name="external",
        kubeconfig=str(kubeconfig),
        bin_dir=str(tools.find()),
        server=str(server),
    )


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[Cluster]:
    """One real cluster for the whole session (or the one ``SPECOPS_TEST_KUBECONFIG`` names).

    Yields a :class:`specops.devcluster.Cluster`: ``.kubeconfig``, ``.api_client()``,
    ``.bin_dir`` (kubectl, helm, ...), ``.env()`` (``KUBECONFIG`` set, tools on PATH).
    """
    external = os.environ.get(EXTERNAL_KUBECONFIG_ENV, "").strip()
    if external:
        yield _external_cluster(external)
        return
    # Named after this process so parallel sessions (other engineers) never collide.
    name = f"pytest-{os.getpid()}"
    devcluster.clean_stale("pytest-")
    try:
        cluster = devcluster.up(name, bin_dir=tools.find(), die_with_parent=True)
    except (ClusterError, ToolsError, NodePoolError) as exc:
        pytest.fail(f"local cluster did not start: {exc}", pytrace=False)
    # atexit covers an interpreter exit that skips fixture finalisation; the
    # programs' PDEATHSIG covers pytest being killed outright.
    atexit.register(devcluster.down, name)
    try:
        yield cluster
    finally:
        devcluster.down(name)
        atexit.unregister(devcluster.down)


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:6]}"


def _wait_for(what: str, check: Any, timeout: float = 60.0, interval: float = 0.25) -> Any:
    """Poll ``check()`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}", pytrace=False)
        time.sleep(interval)


@pytest.fixture
def namespace(kube_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name = _namespace_name(request.node.name)
    with kube_cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(
            {"metadata": {"name": name, "labels": {"specops.dev/test-namespace": "true"}}}
        )

        def default_sa() -> bool:
            try:
                core.read_namespaced_service_account("default", name)
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        try:
            _wait_for(f"ServiceAccount default in {name}", default_sa, timeout=60)
            yield name
        finally:
            try:
                core.delete_namespace(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
