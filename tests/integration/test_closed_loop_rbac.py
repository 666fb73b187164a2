"""The closed loop under exactly the shipped RBAC: it may list the pods it counts.

The evaluation reads the resource's pods (ready, starting, unschedulable);
``config/rbac/role.yaml`` grants ``pods list`` for that. Here the operator
runs on a ServiceAccount token bound to those rules only, with a Prometheus
URL nobody listens on (loopback), so an evaluation must still count the
pods, hold the state and say that metrics are missing, without a single
Forbidden.
"""

from __future__ import annotations

import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from operator_harness import Kube, OperatorProcess, install_crd, resource, wait_for
from test_operator_rbac import service_account_kubeconfig

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_evaluation_counts_pods_and_holds_state_with_only_the_shipped_rules(
    kube_cluster: Any, namespace: str, tmp_path: Path
) -> None:
    with kube_cluster.api_client() as api:
        install_crd(api)
        kube = Kube(api, namespace)
        configs = service_account_kubeconfig(kube_cluster, api, namespace, tmp_path / "sa.yaml")
        assert isinstance(configs, Generator)  # its finally removes the cluster-wide binding
        kubeconfig = next(configs)
        try:
            proc = OperatorProcess(
                kubeconfig,
                namespace,
                tmp_path,
                hub_endpoint="http://127.0.0.1:9",
                extra_env={
                    "SPECOPS_PROMETHEUS_URL": f"http://127.0.0.1:{closed_port()}",
                    "SPECOPS_EVALUATION_SECONDS": "1",
                },
            ).start()
            try:
                spec = {
                    "verifier": {"model": "Qwen/Qwen3-8B"},
                    "speculator": {"model": "RedHatAI/Qwen3-8B-speculator.eagle3"},
                    "gpu": {"type": "H100-80GB"},
                    "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
                }
                kube.create(resource("loop", spec))
                schedulable = kube.wait_condition(
                    "loop", "ReplicasSchedulable", "True", reason="Scheduled", timeout=60
                )
                assert "placed" in schedulable["message"]
                metrics = kube.wait_condition("loop", "MetricsAvailable", "False", timeout=30)
                assert "unreachable" in metrics["message"]
                status = kube.get("loop")["status"]
                assert status["autoscaling"]["desiredReplicas"] == 1
                assert status["speculation"]["active"] is True
                wait_for(
                    "the MetricsUnavailable Event",
                    lambda: "MetricsUnavailable" in kube.event_reasons("loop"),
                    timeout=30,
                )
                assert "Forbidden" not in proc.logs(), proc.logs()
                assert "evaluation round failed" not in proc.logs(), proc.logs()
            finally:
                proc.stop()
                print(proc.logs())
        finally:
            configs.close()
