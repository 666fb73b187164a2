"""What a tenant's pods may reach: the optional NetworkPolicy and the API key from a Secret.

The golden case ``qwen3-8b-locked-down`` (tests/unit/test_render.py) pins the
whole output and validates it against the Kubernetes 1.34 schema; these tests
pin the properties that make the policy and the key mean what the docs say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from specops.api.v1alpha1 import (
    PlanStatus,
    ResolvedModelStatus,
    ResolvedStatus,
    SpeculativeDeployment,
)
from specops.kube.kinds import CHILD_KINDS, kind_of, object_key
from specops.kube.prune import stale_children
from specops.render import RenderDecision, RenderOptions, render, selector_labels
from specops.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
UID = "u-1"


def resource(namespace: str = "team-a", **spec: Any) -> SpeculativeDeployment:
    return SpeculativeDeployment.model_validate(
        {
            "metadata": {"name": "qwen", "namespace": namespace, "uid": UID},
            "spec": {
                "verifier": {"model": "Qwen/Qwen3-8B"},
                "gpu": {"type": "H100-80GB"},
                **spec,
            },
        }
    )


def objects_for(sd: SpeculativeDeployment, **options: Any) -> list[dict[str, Any]]:
    resolved = ResolvedStatus(
        verifier=ResolvedModelStatus(model="Qwen/Qwen3-8B", revision="main", sha="a" * 40)
    )
    plan = PlanStatus(
        tensor_parallel_size=1,
        gpus_per_replica=1,
        gpu_memory_gib=79.2,
        usable_memory_gib=71.3,
        verifier_weights_gib=15.3,
        activation_reserve_gib=2.3,
        kv_budget_gib=51.8,
        kv_bytes_per_token=147456,
        max_model_len=32768,
        max_concurrent_sequences=11,
    )
    return render(
        sd, resolved, plan, RenderDecision(False, None, 1), options=RenderOptions(**options)
    )


def policies(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "NetworkPolicy"]


def server_env(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    env: list[dict[str, Any]] = next(c for c in containers if c["name"] == "vllm")["env"]
    return env


# --------------------------------------------------------------------------- NetworkPolicy


def test_no_network_policy_unless_asked() -> None:
    assert policies(objects_for(resource())) == []
    assert policies(objects_for(resource(networkPolicy={"enabled": False}))) == []


def test_the_policy_admits_the_serving_port_from_the_namespace_and_prometheus_only() -> None:
    (policy,) = policies(objects_for(resource(networkPolicy={"enabled": True})))
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": selector_labels("qwen")}
    assert spec["policyTypes"] == ["Ingress"], "egress stays open: downloads reach the Hub"
    assert "egress" not in spec
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert rule["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
    ]
    assert policy["metadata"]["namespace"] == "team-a"
    assert policy["metadata"]["ownerReferences"][0]["uid"] == UID
    assert kind_of(policy).plural == "networkpolicies"


def test_prometheus_namespace_comes_from_the_options_and_listed_namespaces_follow() -> None:
    sd = resource(
        networkPolicy={
            "enabled": True,
            "allowFromNamespaces": ["ingress", "openshift-monitoring", "team-a", "ingress"],
        }
    )
    (policy,) = policies(objects_for(sd, prometheus_namespace="openshift-monitoring"))
    names = [
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in policy["spec"]["ingress"][0]["from"]
        if "namespaceSelector" in peer
    ]
    # Own namespace is the podSelector peer already; repeats add nothing.
    assert names == ["openshift-monitoring", "ingress"]


@pytest.mark.parametrize("bad", ["Ingress", "-x", "a" * 64, "a.b"])
def test_listed_namespaces_must_be_namespace_names(bad: str) -> None:
    with pytest.raises(ValidationError, match="allowFromNamespaces"):
        resource(networkPolicy={"enabled": True, "allowFromNamespaces": [bad]})


def test_turning_the_policy_off_makes_it_stale_for_the_pruner() -> None:
    on = objects_for(resource(networkPolicy={"enabled": True}))
    off = objects_for(resource())
    keep = {object_key(o) for o in off}
    stale = stale_children(on, keep, UID)
    assert [o["kind"] for o in stale] == ["NetworkPolicy"]


def role_rules() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((ROOT / "config" / "rbac" / "role.yaml").read_text())
    return [rule for doc in docs if doc and doc["kind"] == "ClusterRole" for rule in doc["rules"]]


@pytest.mark.parametrize("kind", CHILD_KINDS, ids=[k.kind for k in CHILD_KINDS])
def test_every_child_kind_can_be_applied_and_pruned_under_the_rbac_rules(kind: Any) -> None:
    verbs: set[str] = set()
    for rule in role_rules():
        if kind.group in rule["apiGroups"] and kind.plural in rule["resources"]:
            verbs |= set(rule["verbs"])
    assert verbs >= {"list", "create", "patch", "delete"}, kind.kind


def test_the_prometheus_namespace_setting_reaches_the_renderer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kubernetes import client

    from specops.controller.reconcile import Reconciler
    from specops.kube.client import KubeClient
    from specops.kube.events import EventRecorder
    from specops.metrics import OperatorMetrics

    monkeypatch.setenv("SPECOPS_PROMETHEUS_NAMESPACE", "openshift-user-workload-monitoring")
    monkeypatch.setenv("SPECOPS_ALLOWED_IMAGES", "registry.example.com")
    settings = load_settings(prometheus_url="http://127.0.0.1:9")
    kube = KubeClient(client.ApiClient(client.Configuration()))  # never called here
    r = Reconciler(settings, kube, EventRecorder(kube, instance="t"), OperatorMetrics())
    assert r.options.prometheus_namespace == "openshift-user-workload-monitoring"
    assert [rule.domain for rule in r.image_rules] == ["registry.example.com"]
    monkeypatch.delenv("SPECOPS_PROMETHEUS_NAMESPACE")
    assert load_settings().prometheus_namespace == "monitoring"
    monkeypatch.setenv("SPECOPS_PROMETHEUS_NAMESPACE", "Monitoring")
    with pytest.raises(SettingsError, match="SPECOPS_PROMETHEUS_NAMESPACE"):
        load_settings()


# --------------------------------------------------------------------------- API key


def test_no_api_key_unless_asked() -> None:
    assert "VLLM_API_KEY" not in {e["name"] for e in server_env(objects_for(resource()))}


@pytest.mark.parametrize(
    ("ref", "key"),
    [({"name": "qwen-key"}, "VLLM_API_KEY"), ({"name": "qwen-key", "key": "token"}, "token")],
)
def test_the_api_key_comes_from_the_secret_never_from_the_spec(
    ref: dict[str, str], key: str
) -> None:
    objects = objects_for(resource(vllm={"apiKeySecretRef": ref}))
    (entry,) = [e for e in server_env(objects) if e["name"] == "VLLM_API_KEY"]
    assert entry == {
        "name": "VLLM_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "qwen-key", "key": key}},
    }
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    init = deployment["spec"]["template"]["spec"]["initContainers"]
    assert all("VLLM_API_KEY" not in str(c["env"]) for c in init), "downloads never see it"
    args = next(c for c in deployment["spec"]["template"]["spec"]["containers"])["args"]
    assert "--api-key" not in args, "a flag would put the key in the pod spec"


def test_the_api_key_changes_the_pod_template_hash() -> None:
    def config_hash(sd: SpeculativeDeployment) -> str:
        deployment = next(o for o in objects_for(sd) if o["kind"] == "Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"][
            "specops.dev/config-hash"
        ]
        return value

    assert config_hash(resource()) != config_hash(resource(vllm={"apiKeySecretRef": {"name": "k"}}))


def test_user_env_may_not_set_the_api_key() -> None:
    with pytest.raises(ValidationError, match="VLLM_API_KEY"):
        resource(vllm={"env": [{"name": "VLLM_API_KEY", "value": "in-the-spec"}]})


def test_the_crd_refuses_vllm_api_key_in_env_too() -> None:
    crd = yaml.safe_load(
        (ROOT / "crds" / "serving.specops.dev_speculativedeployments.yaml").read_text()
    )
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    vllm = schema["properties"]["spec"]["properties"]["vllm"]["properties"]
    rules = vllm["env"]["x-kubernetes-validations"]
    assert any("VLLM_API_KEY" in r["rule"] for r in rules)
    assert vllm["apiKeySecretRef"]["properties"]["key"]["default"] == "VLLM_API_KEY"


@pytest.mark.parametrize(
    "ref",
    [{"name": "../other-ns/secrets/x"}, {"name": "Key"}, {"name": "k", "key": "a/b"}],
    ids=["a path in the name", "upper case", "a slash in the key"],
)
def test_the_api_key_reference_is_an_object_name_and_a_data_key(ref: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="apiKeySecretRef"):
        resource(vllm={"apiKeySecretRef": ref})
