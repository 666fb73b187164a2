"""Helpers for tests that install the Helm chart and act under its ServiceAccount.

Shared by the chart tests and the untrusted-tenant suite: the chart is installed
with the real ``helm`` into the session cluster, and a TokenRequest token of a
ServiceAccount stands in for the token its pod would mount.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from specops.devcluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "specops"
CRD_NAME = "speculativedeployments.serving.specops.dev"


def run(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A tool from the cluster's bin dir (helm, kubectl) with the cluster's KUBECONFIG."""
    result = subprocess.run(
        [str(Path(cluster.bin_dir) / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        check=False,
        env=cluster.env(),
        timeout=300,
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args[:3])} failed:\n{result.stdout}\n{result.stderr}")
    return result


def adopt_crd(api: client.ApiClient, release: str, namespace: str) -> None:
    """Let ``release`` take over an existing CRD (what Helm checks before adopting it)."""
    ext = client.ApiextensionsV1Api(api)
    try:
        ext.read_custom_resource_definition(CRD_NAME)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    ext.patch_custom_resource_definition(
        CRD_NAME,
        {
            "metadata": {
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {
                    "meta.helm.sh/release-name": release,
                    "meta.helm.sh/release-namespace": namespace,
                },
            }
        },
    )


def new_release() -> str:
    return f"sops{uuid.uuid4().hex[:6]}"


def install(
    cluster: Cluster, api: client.ApiClient, release: str, namespace: str, *sets: str
) -> subprocess.CompletedProcess[str]:
    adopt_crd(api, release, namespace)
    args = ["helm", "install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "120s"]
    for item in sets:
        args += ["--set", item]
    return run(cluster, *args)


def token_kubeconfig(
    cluster: Cluster, api: client.ApiClient, namespace: str, sa: str, path: Path
) -> Path:
    """A kubeconfig authenticating as ``sa`` with a TokenRequest token (as in its pod)."""
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        sa, namespace, {"spec": {"expirationSeconds": 3600}}
    )
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster_entry = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster_entry],
        "users": [{"name": sa, "user": {"token": token.status.token}}],
        "contexts": [
            {
                "name": sa,
                "context": {"cluster": cluster_entry["name"], "user": sa, "namespace": namespace},
            }
        ],
        "current-context": sa,
    }
    path.write_text(yaml.safe_dump(config))
    return path
