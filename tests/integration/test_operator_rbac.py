"""The RBAC rules in ``config/rbac/role.yaml`` are enough, and the apiserver enforces them.

The operator runs under a ServiceAccount bound to exactly those rules (token
from the TokenRequest API), and does everything it does in production:
create, Events, status, drift repair, pruning, reading an HF token Secret
and leader election.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_harness import ROOT, Kube, OperatorProcess, install_crd, qwen_spec, resource, wait_for

from hubserver import HubServer
from specops.api.v1alpha1 import HUB_TOKEN_SECRET_LABEL

pytestmark = pytest.mark.integration

RBAC = ROOT / "config" / "rbac" / "role.yaml"


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    server = HubServer()
    server.add_fixtures()
    with server:
        yield server


def service_account_kubeconfig(
    kube_cluster: Any, api: client.ApiClient, namespace: str, path: Path
) -> Iterator[str]:
    """A kubeconfig for ServiceAccount ``specops`` bound to the shipped rules."""
    core = client.CoreV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "specops"}})
    cluster_role, role = list(yaml.safe_load_all(RBAC.read_text()))
    cluster_role_name = f"specops-operator-{namespace}"[:63]
    cluster_role["metadata"]["name"] = cluster_role_name
    rbac.create_cluster_role(cluster_role)
    subject = [{"kind": "ServiceAccount", "name": "specops", "namespace": namespace}]
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": cluster_role_name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_role_name,
            },
            "subjects": subject,
        }
    )
    rbac.create_namespaced_role(namespace, role)
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": role["metadata"]["name"]},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": role["metadata"]["name"],
            },
            "subjects": subject,
        },
    )
    token = core.create_namespaced_service_account_token(
        "specops", namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    admin = yaml.safe_load(Path(kube_cluster.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "specops", "user": {"token": token}}],
        "contexts": [
            {"name": "specops", "context": {"cluster": cluster["name"], "user": "specops"}}
        ],
        "current-context": "specops",
    }
    path.write_text(yaml.safe_dump(config))
    try:
        yield str(path)
    finally:
        rbac.delete_cluster_role_binding(cluster_role_name)
        rbac.delete_cluster_role(cluster_role_name)


def test_operator_works_with_exactly_the_shipped_rbac(
    kube_cluster: Any, namespace: str, hub: HubServer, tmp_path: Path
) -> None:
    with kube_cluster.api_client() as api:
        install_crd(api)
        kube = Kube(api, namespace)
        configs = service_account_kubeconfig(kube_cluster, api, namespace, tmp_path / "sa.yaml")
        kubeconfig = next(configs)
        try:
            restricted = client.CoreV1Api(client.ApiClient(_config(kubeconfig)))
            with pytest.raises(ApiException) as denied:
                restricted.list_namespaced_config_map(namespace)
            assert denied.value.status == 403, "RBAC is not enforced: this test would prove nothing"

            kube.core.create_namespaced_secret(
                namespace,
                {
                    "metadata": {"name": "hf", "labels": {HUB_TOKEN_SECRET_LABEL: "true"}},
                    "stringData": {"HF_TOKEN": "hf_test"},
                },
            )
            proc = OperatorProcess(
                kubeconfig, namespace, tmp_path, hub_endpoint=hub.endpoint, mirror=None
            )
            proc.start()
            try:
                spec = qwen_spec(
                    hfTokenSecretRef={"name": "hf"},
                    modelCache={"accessModes": ["ReadWriteMany"], "size": "100Gi"},
                    networkPolicy={"enabled": True},
                )
                kube.create(resource("rbac", spec))
                kube.wait_condition("rbac", "Ready", "True", reason="Available", timeout=90)
                wait_for("Events", lambda: "Ready" in kube.event_reasons("rbac"))
                claims = kube.core.list_namespaced_persistent_volume_claim(namespace).items
                shared = [c.metadata.name for c in claims if c.metadata.owner_references]
                assert shared, "the shared model cache claim was not created"
                networking = client.NetworkingV1Api(api)
                wait_for(
                    "the NetworkPolicy",
                    lambda: networking.list_namespaced_network_policy(namespace).items,
                )

                # drift repair: watch + get + create
                kube.apps.delete_namespaced_deployment("rbac", namespace)
                wait_for("the Deployment to come back", lambda: kube.deployment("rbac"))

                # prune: back to per-pod caches and no NetworkPolicy, neither is rendered now
                kube.patch_spec(
                    "rbac",
                    {
                        "modelCache": {"accessModes": ["ReadWriteOnce"]},
                        "networkPolicy": {"enabled": False},
                    },
                )
                wait_for(
                    "the shared claim to be pruned",
                    lambda: all(
                        c.metadata.name not in shared or c.metadata.deletion_timestamp
                        for c in kube.core.list_namespaced_persistent_volume_claim(namespace).items
                    ),
                )
                wait_for(
                    "the NetworkPolicy to be pruned",
                    lambda: not networking.list_namespaced_network_policy(namespace).items,
                )
                kube.wait_condition("rbac", "Ready", "True", generation=2, timeout=90)
                assert "Forbidden" not in proc.logs(), proc.logs()
            finally:
                proc.stop()
                print(proc.logs())
        finally:
            configs.close()


def _config(kubeconfig: str) -> client.Configuration:
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return configuration
