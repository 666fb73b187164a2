"""The Helm chart, rendered by the real ``helm``: lint, schema, settings, RBAC, security.

Every rendered object is validated against the Kubernetes 1.34 OpenAPI schema with
``kubernetes-validate`` (strict: unknown fields fail). The generated files (CRD copy,
RBAC copy, settings schema, values table, dashboard, argocd-cm, install.yaml) are
checked for drift by running ``hack/gen-manifests --check``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from chart_helpers import CHART, ROOT, HelmFailed, by_kind, helm_run, one, operator_env, render

from specops.devcluster import tools
from specops.settings import OperatorSettings

K8S_VERSION = "1.34.0"
SETTINGS_FIELDS = OperatorSettings.model_fields


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@pytest.fixture(scope="session")
def helm() -> Path:
    return tools.find() / "helm"


# A non-default configuration touching every template branch.
NON_DEFAULT: dict[str, Any] = {
    "replicaCount": 2,
    "image": {"repository": "registry.example/specops", "digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"name": "specops-sa", "annotations": {"team": "ml"}},
    "rbac": {"scope": "namespace"},
    "settings": {
        "namespaces": ["llm-a", "llm-b"],
        "prometheusUrl": "http://prom.monitoring.svc:9090",
        "vllmImage": "vllm/vllm-openai:v0.33.0",
        "hubEndpoint": "http://hub.internal",
        "hubMirror": "/mirror",
        "logFormat": "text",
        "logLevel": "DEBUG",
        "metricsPort": 9100,
        "healthPort": 9101,
        "leaseName": "specops-leader",
        "leaseDurationSeconds": 20,
        "leaseRenewSeconds": 4.5,
        "resyncSeconds": 120,
        "evaluationSeconds": 15,
        "hubRetryMaxSeconds": 60,
    },
    "hubTokenSecret": {"name": "hf-token", "key": "token"},
    "extraEnv": [{"name": "PYTHONWARNINGS", "value": "ignore"}],
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "podDisruptionBudget": {"maxUnavailable": "50%"},
    "dashboards": {"enabled": True, "namespace": "grafana"},
    "podLabels": {"team": "ml"},
    "podAnnotations": {"note": "x"},
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    "crds": {"install": False},
}


def validate(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # not a Kubernetes API; its shape is checked in its own test
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {exc.path}")


def test_helm_lint_strict(helm: Path) -> None:
    out = helm_run(helm, "lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    helm_run(helm, "lint", "--strict", str(CHART), "--set", "rbac.scope=namespace")


@pytest.mark.parametrize(
    "values", [None, NON_DEFAULT], ids=["default values", "non-default values"]
)
def test_every_object_matches_the_kubernetes_schema(
    helm: Path, tmp_path: Path, values: dict[str, Any] | None
) -> None:
    objects = render(helm, tmp_path, values)
    assert objects
    validate(objects)


def test_default_render_contents(helm: Path, tmp_path: Path) -> None:
    objects = render(helm, tmp_path)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
        ]
    )
    crd = one(objects, "CustomResourceDefinition")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/specops-dev/specops:0.1.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    service = one(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_non_default_render_contents(helm: Path, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, NON_DEFAULT)
    assert not by_kind(objects, "CustomResourceDefinition")  # crds.install: false
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example/specops@sha256:" + "a" * 64
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "metrics": 9100,
        "health": 9101,
    }
    assert container["readinessProbe"]["httpGet"]["port"] == "health"
    env = operator_env(objects)
    assert env["SPECOPS_HUB_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "hf-token", "key": "token"}
    }
    assert env["PYTHONWARNINGS"]["value"] == "ignore"
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert (
        monitor["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    )
    dashboard = one(objects, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "grafana"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(dashboard["data"]["specops.json"])
    assert shipped == json.loads((CHART / "dashboards" / "specops.json").read_text())
    assert one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == "50%"


# --------------------------------------------------------------------------- settings


def test_values_settings_are_exactly_the_operator_settings() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["settings"]) == {camel(f) for f in SETTINGS_FIELDS}


def every_setting_given() -> dict[str, Any]:
    """A value for every setting (none null), all different from the operator's defaults."""
    given = dict(NON_DEFAULT["settings"])
    given.update(
        hubToken="hf_plain",
        allowedModelDirs=["/models", "/data/models"],
        maxModelFileBytes=1048576,
        hubTokenForTenants=True,
        allowedImages=["registry.example.com/vllm/", "vllm/vllm-openai:v0.33.0"],
        prometheusNamespace="openshift-user-workload-monitoring",
        bindAddress="127.0.0.1",
        leaderElection=False,
        leaseNamespace="leases",
        identity="replica-a",
    )
    assert set(given) == {camel(f) for f in SETTINGS_FIELDS}, "extend every_setting_given"
    return given


def test_every_setting_becomes_its_env_var_and_parses_back(
    helm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rendered SPECOPS_* values, fed to the real settings class, give back the values."""
    given = every_setting_given()
    objects = render(helm, tmp_path, {**NON_DEFAULT, "hubTokenSecret": {}, "settings": given})
    env = operator_env(objects)
    for field in SETTINGS_FIELDS:
        assert f"SPECOPS_{field.upper()}" in env, f"no env var for setting {field}"
    for name in [n for n in os.environ if n.startswith("SPECOPS_")]:
        monkeypatch.delenv(name)
    for name, entry in env.items():
        if name.startswith("SPECOPS_"):
            monkeypatch.setenv(name, entry["value"])
    loaded = OperatorSettings()
    for field in SETTINGS_FIELDS:
        got = getattr(loaded, field)
        want = given[camel(field)]
        if isinstance(got, list):
            got = [str(item) if isinstance(item, Path) else item for item in got]
        assert (str(got) if isinstance(got, Path) else got) == want, field


def test_null_settings_keep_operator_defaults_or_come_from_the_pod(
    helm: Path, tmp_path: Path
) -> None:
    env = operator_env(render(helm, tmp_path))
    values = yaml.safe_load((CHART / "values.yaml").read_text())["settings"]
    for key, value in values.items():
        name = "SPECOPS_" + "".join(f"_{c}" if c.isupper() else c.upper() for c in key)
        if key in ("identity", "leaseNamespace"):
            assert "fieldRef" in env[name]["valueFrom"]
        elif value is None or value == []:
            assert name not in env, f"{name} set although settings.{key} is {value}"
        else:
            assert name in env
    assert env["SPECOPS_IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_namespace_scope_watches_the_release_namespace_by_default(
    helm: Path, tmp_path: Path
) -> None:
    objects = render(helm, tmp_path, {"rbac": {"scope": "namespace"}}, namespace="team-a")
    assert operator_env(objects)["SPECOPS_NAMESPACES"]["value"] == "team-a"
    cluster = render(helm, tmp_path, {"rbac": {"scope": "cluster"}}, namespace="team-a")
    assert "SPECOPS_NAMESPACES" not in operator_env(cluster)  # unset: every namespace


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    ("flag", "complaint"),
    [
        pytest.param("replicaCount=3", "/replicaCount", id="three replicas are rejected"),
        pytest.param("rbac.scope=everywhere", "/rbac/scope", id="an unknown rbac scope"),
        pytest.param("settings.logLevel=TRACE", "/settings/logLevel", id="an unknown log level"),
        pytest.param("settings.metricsPort=0", "/settings/metricsPort", id="metrics port zero"),
        pytest.param("settings.lease_name=x", "lease_name", id="a snake_case setting key"),
        pytest.param(
            "settings.leaderElection=maybe", "/settings/leaderElection", id="a non-boolean"
        ),
        pytest.param("image.pullPolicy=Sometimes", "/image/pullPolicy", id="a bad pull policy"),
        pytest.param("imageTag=1.0", "imageTag", id="an unknown top-level key"),
        pytest.param(
            "podDisruptionBudget.maxUnavailable=0",
            "/podDisruptionBudget/maxUnavailable",
            id="pdb blocks",
        ),
    ],
)
def test_values_schema_rejects_bad_values(
    helm: Path, tmp_path: Path, flag: str, complaint: str
) -> None:
    with pytest.raises(HelmFailed) as failed:
        helm_run(helm, "template", "x", str(CHART), "--set", flag)
    assert "values don't meet the specifications of the schema" in failed.value.stderr
    assert complaint in failed.value.stderr


def test_service_monitor_without_service_fails_with_a_reason(helm: Path) -> None:
    with pytest.raises(HelmFailed) as failed:
        helm_run(
            helm,
            "template",
            "x",
            str(CHART),
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.service.enabled=false",
        )
    assert "needs metrics.service.enabled" in failed.value.stderr


# --------------------------------------------------------------------------- security


@pytest.mark.parametrize(
    "values", [None, NON_DEFAULT], ids=["default values", "non-default values"]
)
def test_pod_meets_restricted_pss_and_openshift_restricted_scc(
    helm: Path, tmp_path: Path, values: dict[str, Any] | None
) -> None:
    pod = one(render(helm, tmp_path, values), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("runAsUser", "runAsGroup", "fsGroup"):  # the restricted SCC assigns them
        assert key not in pod["securityContext"]
    assert "hostNetwork" not in pod and "hostPID" not in pod
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert "runAsUser" not in sc and "privileged" not in sc
    assert all("emptyDir" in v for v in pod["volumes"])  # no hostPath


# --------------------------------------------------------------------------- RBAC


def operator_rules() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((ROOT / "config" / "rbac" / "role.yaml").read_text())
    return [rule for doc in docs if doc for rule in doc["rules"]]


def norm(rules: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rules)


def test_cluster_scope_grants_exactly_the_operator_rules(helm: Path, tmp_path: Path) -> None:
    objects = render(helm, tmp_path)
    granted = one(objects, "ClusterRole")["rules"] + one(objects, "Role")["rules"]
    assert norm(granted) == norm(operator_rules())
    lease_role = one(objects, "Role")
    assert lease_role["metadata"]["namespace"] == "specops-system"
    assert all(r["apiGroups"] == ["coordination.k8s.io"] for r in lease_role["rules"])
    sa = one(objects, "ServiceAccount")["metadata"]
    for binding in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}
        ]


def test_namespace_scope_grants_the_rules_per_namespace(helm: Path, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, {"rbac": {"scope": "namespace"}, **_ns(["a", "b"])})
    roles = {
        (r["metadata"]["namespace"], r["metadata"]["name"]): r for r in by_kind(objects, "Role")
    }
    assert set(roles) == {
        ("a", "specops"),
        ("b", "specops"),
        ("specops-system", "specops-leader-election"),
    }
    # Cluster-wide at most reading cluster-scoped kinds (none with today's rules).
    cluster_rules = [rule for role in by_kind(objects, "ClusterRole") for rule in role["rules"]]
    assert all(
        r["apiGroups"] in (["apiextensions.k8s.io"], [""])
        and set(r["verbs"]) <= {"get", "list", "watch"}
        for r in cluster_rules
    )
    for ns in ("a", "b"):
        granted = roles[(ns, "specops")]["rules"] + cluster_rules
        granted += roles[("specops-system", "specops-leader-election")]["rules"]
        assert norm(granted) == norm(operator_rules())
    bindings = {
        (b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind(objects, "RoleBinding")
    }
    assert bindings == set(roles)


def _ns(names: list[str]) -> dict[str, Any]:
    return {"settings": {"namespaces": names}}


def test_rbac_off_renders_no_rbac(helm: Path, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, {"rbac": {"create": False}})
    assert not [o for o in objects if o["apiVersion"].startswith("rbac.authorization.k8s.io")]


# --------------------------------------------------------------------------- generated files


def test_generated_files_are_up_to_date(helm: Path) -> None:
    """CRD copy, RBAC copy, settings schema, README table, dashboard, argocd-cm, install.yaml."""
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "gen-manifests"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HELM": str(helm)},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_install_yaml_is_namespace_plus_default_render(helm: Path, tmp_path: Path) -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "install.yaml").read_text()) if d]
    assert docs[0]["kind"] == "Namespace"
    assert docs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert docs[1:] == render(helm, tmp_path)
    validate(docs)
