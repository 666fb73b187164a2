"""The chart and the plain manifests against the real local control plane.

``helm install`` into a namespace enforcing the restricted Pod Security Standard (the
API server's own admission decides), ``helm upgrade`` and ``helm uninstall``; the
ServiceAccount's permissions checked by impersonation (``kubectl auth can-i --as``) and
by running ``specops run`` with a token of that ServiceAccount through a full reconcile;
``kubectl apply --server-side -f manifests/install.yaml``.

The SpeculativeDeployment CRD is cluster-wide and other tests of the session may have
applied it already; before each install it is marked as belonging to that release (the
labels and annotations Helm checks before adopting an object), as a user adopting an
existing CRD would.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not a package
from chart_harness import CHART, CRD_NAME, adopt_crd, install, new_release, run, token_kubeconfig
from operator_harness import Kube, OperatorProcess, example, wait_for

from hubserver import HubServer
from specops.devcluster import Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "rbac" / "role.yaml"
QWEN_EXAMPLE = ROOT / "manifests" / "examples" / "qwen3-8b.yaml"


# --------------------------------------------------------------------------- helpers


def restrict(api: client.ApiClient, namespace: str) -> None:
    """Enforce (and warn about) the restricted Pod Security Standard in ``namespace``."""
    labels = {
        f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
    }
    labels["pod-security.kubernetes.io/enforce-version"] = "latest"
    client.CoreV1Api(api).patch_namespace(namespace, {"metadata": {"labels": labels}})


def release_objects(cluster: Cluster, release: str, namespace: str) -> list[dict[str, Any]]:
    manifest = run(cluster, "helm", "get", "manifest", release, "-n", namespace).stdout
    return [d for d in yaml.safe_load_all(manifest) if d]


def live(cluster: Cluster, obj: dict[str, Any], namespace: str) -> dict[str, Any] | None:
    """The object as the API server has it, or None."""
    meta = obj["metadata"]
    args = ["kubectl", "get", f"{obj['kind']}.{obj['apiVersion'].split('/')[0]}"]
    if "/" not in obj["apiVersion"]:
        args[2] = obj["kind"]
    args += [meta["name"], "-o", "json", "--ignore-not-found"]
    if obj["kind"] not in CLUSTER_KINDS:
        args += ["-n", meta.get("namespace", namespace)]
    out = run(cluster, *args).stdout.strip()
    return json.loads(out) if out else None


CLUSTER_KINDS = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}


def contains(actual: Any, wanted: Any) -> bool:
    """Every field of ``wanted`` is in ``actual`` with the same value (defaults may be added)."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(
            k in actual and contains(actual[k], v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(wanted)
            and all(contains(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted) or str(actual) == str(wanted)


def operator_pods(api: client.ApiClient, namespace: str, release: str) -> list[Any]:
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"
    return list(client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items)


def running(api: client.ApiClient, namespace: str, release: str, count: int) -> Callable[[], bool]:
    def check() -> bool:
        pods = [
            p for p in operator_pods(api, namespace, release) if not p.metadata.deletion_timestamp
        ]
        return len(pods) == count and all(
            p.spec.node_name and p.status.phase == "Running" for p in pods
        )

    return check


# --------------------------------------------------------------------------- install / upgrade


def test_install_upgrade_uninstall_in_a_restricted_namespace(
    kube_cluster: Cluster, api: client.ApiClient, namespace: str
) -> None:
    restrict(api, namespace)
    release = new_release()
    result = install(kube_cluster, api, release, namespace)

    # Admission: no PodSecurity warning, every object of the release is in the API.
    assert "PodSecurity" not in result.stderr, result.stderr
    objects = release_objects(kube_cluster, release, namespace)
    assert {o["kind"] for o in objects} >= {
        "CustomResourceDefinition",
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "Service",
        "PodDisruptionBudget",
    }
    for obj in objects:
        got = live(kube_cluster, obj, namespace)
        assert got is not None, f"{obj['kind']}/{obj['metadata']['name']} was not admitted"

    # The operator pod was created under enforce=restricted and scheduled on a (kwok) node.
    wait_for("the operator pod to run", running(api, namespace, release, 1), timeout=60)

    # NOTES tell the user what to apply next.
    assert f"kubectl -n {namespace} rollout status deployment/{release}-specops" in result.stdout
    assert "kind: SpeculativeDeployment" in result.stdout
    named = re.findall(r"/main/(manifests/\S+\.yaml)", result.stdout)
    assert named, "NOTES name no example to apply"
    for path in named:
        assert (ROOT / path).is_file(), f"NOTES point at {path}, which does not exist"

    # Upgrade: a standby replica, debug logs, namespace-scoped RBAC.
    run(
        kube_cluster,
        "helm",
        "upgrade",
        release,
        str(CHART),
        "-n",
        namespace,
        "--wait",
        "--timeout",
        "120s",
        "--set",
        "replicaCount=2",
        "--set",
        "settings.logLevel=DEBUG",
        "--set",
        "rbac.scope=namespace",
    )
    wait_for("two operator pods", running(api, namespace, release, 2), timeout=90)
    deployment = client.AppsV1Api(api).read_namespaced_deployment(f"{release}-specops", namespace)
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert env["SPECOPS_LOG_LEVEL"] == "DEBUG"
    assert env["SPECOPS_NAMESPACES"] == namespace
    rbac = client.RbacAuthorizationV1Api(api)
    cluster_roles = {r.metadata.name for r in rbac.list_cluster_role().items}
    # Cluster-wide rules are gone; at most a read-only discovery role remains.
    assert {n for n in cluster_roles if n.startswith(release)} <= {f"{release}-specops-discovery"}
    rbac.read_namespaced_role(f"{release}-specops", namespace)

    # A user's resource, to prove uninstall keeps the CRD and with it the resources.
    kube = Kube(api, namespace)
    kube.create(example(QWEN_EXAMPLE, "kept"))

    run(kube_cluster, "helm", "uninstall", release, "-n", namespace, "--wait")
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue
        assert live(kube_cluster, obj, namespace) is None, f"{obj['kind']} left behind"
    assert f"{release}-specops-discovery" not in {
        r.metadata.name for r in rbac.list_cluster_role().items
    }
    client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD_NAME)  # kept
    assert kube.get("kept")["spec"]["verifier"]["model"]


def test_the_namespace_really_enforces_restricted(
    kube_cluster: Cluster, api: client.ApiClient, namespace: str
) -> None:
    """The same install with privilege escalation allowed gets a warning and no pod.

    This is what makes the clean install above meaningful: the admission is real.
    """
    restrict(api, namespace)
    release = new_release()
    adopt_crd(api, release, namespace)
    result = run(
        kube_cluster,
        "helm",
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--set",
        "securityContext.allowPrivilegeEscalation=true",
    )
    try:
        assert "would violate PodSecurity" in result.stderr
        apps = client.AppsV1Api(api)

        def refused() -> bool:
            sets = apps.list_namespaced_replica_set(namespace).items
            return any(
                c.type == "ReplicaFailure" and "forbidden" in (c.message or "")
                for rs in sets
                for c in (rs.status.conditions or [])
            )

        wait_for("the ReplicaSet to be refused its pod", refused, timeout=60)
        assert not operator_pods(api, namespace, release)
    finally:
        run(kube_cluster, "helm", "uninstall", release, "-n", namespace, "--wait")


def test_bad_values_are_rejected_before_anything_is_created(
    kube_cluster: Cluster, namespace: str
) -> None:
    result = run(
        kube_cluster,
        "helm",
        "install",
        "bad",
        str(CHART),
        "-n",
        namespace,
        "--set",
        "rbac.scope=everywhere",
        check=False,
    )
    assert result.returncode != 0
    assert "at '/rbac/scope': value must be one of 'cluster', 'namespace'" in result.stderr
    listed = run(kube_cluster, "helm", "list", "-n", namespace, "-q").stdout.split()
    assert "bad" not in listed


# --------------------------------------------------------------------------- RBAC


def operator_rules() -> list[dict[str, Any]]:
    return [r for doc in yaml.safe_load_all(RULES.read_text()) if doc for r in doc["rules"]]


def can_i(cluster: Cluster, who: str, verb: str, resource: str, namespace: str | None) -> bool:
    """``kubectl auth can-i --as``; a SubjectAccessReview for APIs the cluster does not serve.

    kubectl resolves the resource through discovery and, for a type the server does not
    have (the Prometheus Operator's, here), asks about a meaningless group instead; the
    SubjectAccessReview asks the same authorizer with the group spelled out.
    """
    # "kind/x" means the object named x to kubectl; a subresource needs --subresource.
    kind, _, sub = resource.partition("/")
    args = ["kubectl", "auth", "can-i", verb, kind, f"--as={who}"]
    args += [f"--subresource={sub}"] if sub else []
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    result = run(cluster, *args, check=False)
    if "doesn't have a resource type" in result.stderr:
        return subject_access_review(cluster, who, verb, resource, namespace)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i: {result.stdout}{result.stderr}"
    return answer == "yes"


def subject_access_review(
    cluster: Cluster, who: str, verb: str, resource: str, namespace: str | None
) -> bool:
    name, _, sub = resource.partition("/")
    plural, _, group = name.partition(".")
    attributes: dict[str, Any] = {"verb": verb, "resource": plural, "group": group}
    if sub:
        attributes["subresource"] = sub
    if namespace:
        attributes["namespace"] = namespace
    with cluster.api_client() as api:
        review = client.AuthorizationV1Api(api).create_subject_access_review(
            {"spec": {"user": who, "resourceAttributes": attributes}}
        )
    return bool(review.status.allowed)


def resource_name(group: str, resource: str) -> str:
    return f"{resource.split('/')[0]}.{group}" if group else resource.split("/")[0]


def grants(rule: dict[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """(verb, resource for can-i, subresource) for every verb of a rule."""
    for group in rule["apiGroups"]:
        for resource in rule["resources"]:
            sub = resource.split("/", 1)[1] if "/" in resource else None
            for verb in rule["verbs"]:
                yield verb, resource_name(group, resource), sub


#: Requests the operator never makes; the ServiceAccount must be denied them.
DENIED = [
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "secrets"),
    ("update", "secrets"),
    ("delete", "secrets"),
    ("get", "configmaps"),
    ("create", "pods"),
    ("delete", "pods"),
    ("create", "pods/exec"),
    ("update", "deployments.apps"),
    ("delete", "speculativedeployments.serving.specops.dev"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "serviceaccounts/token"),
]
DENIED_CLUSTER = [
    ("list", "nodes"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("list", "namespaces"),
]


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_service_account_permissions_are_exactly_enough(
    kube_cluster: Cluster, api: client.ApiClient, namespace: str, scope: str
) -> None:
    release = new_release()
    install(kube_cluster, api, release, namespace, f"rbac.scope={scope}")
    who = f"system:serviceaccount:{namespace}:{release}-specops"
    other = "default"  # a namespace the operator does not watch in namespace scope
    try:
        for rule in operator_rules():
            lease = "coordination.k8s.io" in rule["apiGroups"]
            for verb, res, sub in grants(rule):
                target = f"{res}/{sub}" if sub else res
                if res.startswith("customresourcedefinitions"):
                    assert can_i(kube_cluster, who, verb, target, None), f"{verb} {target}"
                    continue
                assert can_i(kube_cluster, who, verb, target, namespace), f"{verb} {target}"
                # Outside the watched namespace: only cluster scope reaches, never for leases.
                outside = can_i(kube_cluster, who, verb, target, other)
                assert outside == (scope == "cluster" and not lease), f"{verb} {target} in {other}"
        for verb, res in DENIED:
            assert not can_i(kube_cluster, who, verb, res, namespace), f"{verb} {res} allowed"
        for verb, res in DENIED_CLUSTER:
            assert not can_i(kube_cluster, who, verb, res, None), f"{verb} {res} allowed"
    finally:
        run(kube_cluster, "helm", "uninstall", release, "-n", namespace, "--wait")


def test_operator_reconciles_with_the_charts_service_account_token(
    kube_cluster: Cluster, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """A full reconcile of the Qwen3-8B example under the chart's RBAC: nothing forbidden."""
    release = new_release()
    install(kube_cluster, api, release, namespace, "rbac.scope=namespace", "replicaCount=1")
    kubeconfig = token_kubeconfig(
        kube_cluster, api, namespace, f"{release}-specops", tmp_path / "sa"
    )
    # Who am I: the token really is the ServiceAccount (not the admin).
    whoami = run(kube_cluster, "kubectl", "--kubeconfig", str(kubeconfig), "auth", "whoami")
    assert f"system:serviceaccount:{namespace}:{release}-specops" in whoami.stdout
    hub = HubServer()
    hub.add_fixtures()
    operator = OperatorProcess(
        str(kubeconfig), namespace, tmp_path, hub_endpoint=hub.endpoint, mirror=None
    )
    try:
        with hub:
            operator.start()
            kube = Kube(api, namespace)
            body = example(QWEN_EXAMPLE)
            name = body["metadata"]["name"]
            kube.create(body)
            kube.wait_condition(name, "Ready", "True", reason="Available", timeout=180)
            assert kube.deployment(name) is not None
            wait_for(
                "an applied reconcile in the operator's metrics",
                lambda: operator.metric('specops_reconcile_total{outcome="applied"}') >= 1,
                timeout=30,
            )
    finally:
        operator.stop()
        print(f"--- operator log ---\n{operator.logs()}")
        run(kube_cluster, "helm", "uninstall", release, "-n", namespace, "--wait")
    log = operator.log_path.read_text()
    forbidden = sorted(
        {
            match.group(0)
            for match in re.finditer(r"(GET|POST|PATCH|PUT|DELETE) \S+ -> APIForbiddenError", log)
        }
    )
    assert not forbidden, f"requests forbidden under the chart's RBAC: {forbidden}"
    for marker in ("403", "Forbidden", "forbidden"):
        assert marker not in log, f"operator hit {marker!r} under the chart's RBAC"


# --------------------------------------------------------------------------- install.yaml


def test_kubectl_apply_install_yaml_gives_the_charts_objects(
    kube_cluster: Cluster, api: client.ApiClient
) -> None:
    path = ROOT / "manifests" / "install.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    namespace = docs[0]["metadata"]["name"]
    apply = ["kubectl", "apply", "--server-side", "-f", str(path)]
    try:
        client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD_NAME)
        # An earlier Helm release of this session set the CRD's managed-by label; taking it
        # over is what install.md tells users switching from Helm to do.
        apply.append("--force-conflicts")
    except ApiException as exc:
        if exc.status != 404:
            raise
    run(kube_cluster, *apply)
    try:
        for obj in docs:
            got = live(kube_cluster, obj, namespace)
            assert got is not None, f"{obj['kind']}/{obj['metadata']['name']} missing"
            for key in ("spec", "rules", "roleRef", "subjects", "data"):
                if key in obj:
                    assert contains(got[key], obj[key]), f"{obj['kind']}.{key} differs"
            assert contains(got["metadata"].get("labels", {}), obj["metadata"].get("labels", {}))
        run(
            kube_cluster,
            "kubectl",
            "-n",
            namespace,
            "rollout",
            "status",
            "deployment/specops",
            "--timeout=90s",
        )
        wait_for("the operator pod to run", running(api, namespace, "specops", 1), timeout=60)
    finally:
        for obj in reversed(docs):
            if obj["kind"] in ("CustomResourceDefinition", "Namespace"):
                continue
            kind = (
                obj["kind"]
                if "/" not in obj["apiVersion"]
                else (f"{obj['kind']}.{obj['apiVersion'].split('/')[0]}")
            )
            args = ["kubectl", "delete", kind, obj["metadata"]["name"], "--ignore-not-found"]
            if obj["kind"] not in CLUSTER_KINDS:
                args += ["-n", namespace]
            run(kube_cluster, *args, check=False)
        run(kube_cluster, "kubectl", "delete", "namespace", namespace, "--wait=false", check=False)
