"""The demo's kubelet for operator pods: which pods run, with what env, argv and credentials."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from specops.demo import operator_pod as op
from specops.demo.values import DemoTiming, helm_values
from specops.devcluster import tools
from specops.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def pod(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metadata": {
            "name": "specops-abc",
            "namespace": "specops-system",
            "uid": "u-1",
            "labels": {"app.kubernetes.io/part-of": "specops", "team": "ml"},
            "annotations": {"note": "hi"},
        },
        "spec": {
            "nodeName": "cpu-0",
            "serviceAccountName": "specops",
            "containers": [{"name": "operator", "args": ["run"], "env": []}],
        },
        "status": {"phase": "Running", "podIP": "10.244.0.9", "hostIP": "10.0.0.1"},
    }
    for key, value in over.items():
        base[key] = {**base[key], **value}
    return base


NODES = {
    "cpu-0": {"metadata": {"name": "cpu-0", "annotations": {op.KWOK_NODE_ANNOTATION: "fake"}}},
    "real-0": {"metadata": {"name": "real-0", "annotations": {}}},
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"status": {"phase": "Pending"}}, "phase Pending"),
        ({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}, "terminating"),
        ({"spec": {"nodeName": "real-0"}}, "node real-0 is not a kwok node"),
        ({"spec": {"nodeName": "gone"}}, "node 'gone' not found"),
        ({"spec": {"nodeName": "cpu-0", "containers": []}}, "no container"),
    ],
    ids=[
        "a running pod on a kwok node runs",
        "a pending pod waits",
        "a terminating pod stops",
        "a pod on a real node is never run here",
        "a pod on an unknown node waits",
        "a pod without containers cannot run",
    ],
)
def test_skip_reason(change: dict[str, Any], reason: str | None) -> None:
    assert op.skip_reason(pod(**change), NODES) == reason


def test_env_values_fieldrefs_and_references_resolve_like_the_kubelet() -> None:
    env = [
        {"name": "A", "value": "one"},
        {"name": "B", "value": "$(A)-two $(MISSING) $$(A)"},
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
        {"name": "A", "value": "override"},
    ]
    p = pod()
    out = op.resolve_env(p, {"env": env})
    assert out == {
        "A": "override",
        "B": "one-two $(MISSING) $(A)",
        "NAME": "specops-abc",
        "NS": "specops-system",
        "IP": "10.244.0.9",
        "TEAM": "ml",
    }


def test_secret_and_configmap_refs_use_the_lookups_and_honour_optional() -> None:
    secrets = {("specops-system", "hf", "HF_TOKEN"): "hf_x"}

    def secret(ns: str, name: str, key: str) -> str | None:
        return secrets.get((ns, name, key))

    env = [
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}}},
        {
            "name": "O",
            "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k", "optional": True}},
        },
    ]
    assert op.resolve_env(pod(), {"env": env}, secret=secret) == {"T": "hf_x"}
    missing = [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "K"}}}]
    with pytest.raises(op.OperatorPodError, match="secretKeyRef specops-system/nope key K"):
        op.resolve_env(pod(), {"env": missing}, secret=secret)


@pytest.mark.parametrize(
    "container",
    [
        {"env": [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]},
        {"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}]},
        {"envFrom": [{"configMapRef": {"name": "x"}}]},
    ],
    ids=["resourceFieldRef", "an unsupported fieldPath", "envFrom"],
)
def test_unsupported_env_sources_are_refused_not_dropped(container: dict[str, Any]) -> None:
    with pytest.raises(op.OperatorPodError):
        op.resolve_env(pod(), container)


def test_command_is_the_images_entrypoint_with_the_pods_args() -> None:
    assert op.command({"args": ["run", "--log-level", "DEBUG"]}, python="/py") == [
        "/py", "-m", "specops", "run", "--log-level", "DEBUG",
    ]  # fmt: skip
    assert op.command({"command": ["specops", "run"]}, python="/py") == [
        "/py", "-m", "specops", "run",
    ]  # fmt: skip
    with pytest.raises(op.OperatorPodError, match="not the specops entrypoint"):
        op.command({"command": ["sh", "-c", "curl evil"]})


def test_token_kubeconfig_carries_only_the_bearer_token_and_the_cluster_ca() -> None:
    config = op.token_kubeconfig(
        server="https://127.0.0.1:6443",
        ca_pem="-----BEGIN CERTIFICATE-----\nX\n",
        token="tok",
        namespace="specops-system",
        user="system:serviceaccount:specops-system:specops",
    )
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]).startswith(b"-----BEGIN")
    assert config["users"][0]["user"] == {"token": "tok"}
    assert config["contexts"][0]["context"]["namespace"] == "specops-system"


def test_process_env_starts_from_the_pod_not_from_the_callers_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPECOPS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("KUBECONFIG", "/admin/kubeconfig")
    env = op.process_env({"SPECOPS_LEASE_NAME": "x"}, tmp_path / "kc")
    assert env["KUBECONFIG"] == str(tmp_path / "kc")
    assert env["SPECOPS_LEASE_NAME"] == "x"
    assert "SPECOPS_LOG_LEVEL" not in env
    assert env["PATH"] == os.environ["PATH"]


def test_restarts_back_off_like_a_kubelet() -> None:
    assert [op.backoff(n) for n in (1, 2, 3, 4, 5, 6, 7, 20)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_the_charts_operator_pod_with_demo_values_yields_the_demo_settings(
    tmp_path: Path,
) -> None:
    """helm template with the demo's values -> pod env -> the operator's own settings."""
    mirror = ROOT / "tests" / "fixtures" / "hub"
    values = helm_values(
        prometheus_url="http://127.0.0.1:9099",
        hub_mirror=mirror,
        metrics_port=18080,
        timing=DemoTiming(evaluation_s=5.0),
    )
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm = tools.find() / "helm"
    out = subprocess.run(
        [str(helm), "template", "specops", str(ROOT / "charts" / "specops"),
         "-n", "specops-system", "-f", str(values_file)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    deployment = next(d for d in yaml.safe_load_all(out) if d and d.get("kind") == "Deployment")
    template = deployment["spec"]["template"]
    running = {
        "metadata": {**template["metadata"], "name": "specops-0", "namespace": "specops-system"},
        "spec": template["spec"],
        "status": {"phase": "Running"},
    }
    for selector in op.OPERATOR_SELECTOR.split(","):
        key, value = selector.split("=")
        assert running["metadata"]["labels"][key] == value
    container = op.operator_container(running)
    assert container is not None
    env = op.resolve_env(running, container)
    argv = op.command(container, python="/py")
    assert argv == ["/py", "-m", "specops", "run"]
    settings = load_settings(
        **{
            name.removeprefix("SPECOPS_").lower(): value
            for name, value in env.items()
            if name.startswith("SPECOPS_")
        }
    )
    assert settings.prometheus_url == "http://127.0.0.1:9099"
    assert settings.hub_mirror == mirror
    assert settings.metrics_port == 18080
    assert settings.bind_address == "127.0.0.1"
    assert settings.evaluation_seconds == 5.0
    assert settings.identity == "specops-0"
    assert settings.lease_namespace == "specops-system"
