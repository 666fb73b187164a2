"""What a tenant's pods may reach, against the real control plane and a running operator.

- the rendered NetworkPolicy is accepted by the API server as rendered;
- turning ``spec.networkPolicy`` on creates it, turning it off prunes it and
  nothing else; ``vllm.apiKeySecretRef`` reaches the Deployment as a
  ``secretKeyRef`` (the operator never reads that Secret);
- an image outside the ``allowedImages`` setting is ``Compatible=False`` /
  ``ImageNotAllowed`` with an Event, and changes no child.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_harness import Kube, OperatorProcess, qwen_spec, resource, wait_for

from specops.api.v1alpha1 import PlanStatus, ResolvedModelStatus, ResolvedStatus
from specops.api.v1alpha1 import SpeculativeDeployment as Model
from specops.render import RenderDecision, RenderOptions, render

pytestmark = pytest.mark.integration

ALLOWED = "registry.example.com/vllm/"
MIRRORED = "registry.example.com/vllm/vllm-openai:v0.33.0"


def operator_for(kube_cluster: Any, namespace: str, tmp_path: Path, **env: str) -> OperatorProcess:
    """``specops run`` on the fixture mirror (no Hub), watching only this namespace."""
    return OperatorProcess(
        kube_cluster.kubeconfig,
        namespace,
        tmp_path,
        hub_endpoint="http://127.0.0.1:9",
        extra_env=env,
    )


def network_policies(api: client.ApiClient, namespace: str) -> list[Any]:
    return list(client.NetworkingV1Api(api).list_namespaced_network_policy(namespace).items)


def server_container(kube: Kube, name: str) -> Any:
    deployment = kube.deployment(name)
    assert deployment is not None
    return next(c for c in deployment.spec.template.spec.containers if c.name == "vllm")


# --------------------------------------------------------------------------- the API server


def test_the_rendered_policy_and_api_key_are_accepted_as_rendered(
    api: client.ApiClient, namespace: str
) -> None:
    body = resource(
        "locked",
        qwen_spec(
            vllm={"apiKeySecretRef": {"name": "locked-key"}},
            networkPolicy={"enabled": True, "allowFromNamespaces": ["ingress-nginx"]},
        ),
    )
    body["metadata"]["namespace"] = namespace
    sd = Model.model_validate(body)
    resolved = ResolvedStatus(
        verifier=ResolvedModelStatus(model="Qwen/Qwen3-8B", revision="main", sha="a" * 40),
        speculator=ResolvedModelStatus(
            model="RedHatAI/Qwen3-8B-speculator.eagle3", revision="main", sha="b" * 40
        ),
    )
    plan = PlanStatus(
        tensor_parallel_size=1,
        gpus_per_replica=1,
        gpu_memory_gib=79.2,
        usable_memory_gib=71.3,
        verifier_weights_gib=15.3,
        speculator_weights_gib=1.9,
        activation_reserve_gib=2.3,
        kv_budget_gib=51.8,
        kv_bytes_per_token=147456,
        max_model_len=32768,
        max_concurrent_sequences=11,
    )
    objects = render(
        sd,
        resolved,
        plan,
        RenderDecision(True, 3, 1),
        options=RenderOptions(prometheus_namespace="openshift-user-workload-monitoring"),
    )
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    created = api.sanitize_for_serialization(
        client.NetworkingV1Api(api).create_namespaced_network_policy(namespace, policy)
    )
    assert created["spec"] == policy["spec"], "the API server kept the policy as rendered"

    deployment = next(o for o in objects if o["kind"] == "Deployment")
    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment, dry_run="All")

    # The same API server refuses a malformed policy, so the acceptance above means something.
    bad = {**policy, "spec": {**policy["spec"], "policyTypes": ["Sideways"]}}
    bad["metadata"] = {"name": "bad"}
    with pytest.raises(ApiException) as info:
        client.NetworkingV1Api(api).create_namespaced_network_policy(namespace, bad)
    assert info.value.status == 422


@pytest.mark.parametrize(
    ("vllm", "message"),
    [
        pytest.param(
            {"env": [{"name": "VLLM_API_KEY", "value": "in-the-spec"}]},
            "variables the operator manages",
            id="the key as a literal env var",
        ),
        pytest.param(
            {"apiKeySecretRef": {"name": "../../kube-system/secrets/x"}},
            "apiKeySecretRef.name",
            id="a path as the Secret name",
        ),
    ],
)
def test_the_api_server_refuses_the_key_outside_a_secret_reference(
    kube: Kube, vllm: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as info:
        kube.create(resource("refused", qwen_spec(vllm=vllm)))
    assert info.value.status == 422
    assert message in info.value.body


# --------------------------------------------------------------------------- the operator


def test_network_policy_on_creates_it_and_off_prunes_it(
    kube_cluster: Any, api: client.ApiClient, namespace: str, kube: Kube, tmp_path: Path
) -> None:
    operator = operator_for(
        kube_cluster, namespace, tmp_path, SPECOPS_PROMETHEUS_NAMESPACE="prom-system"
    ).start()
    try:
        spec = qwen_spec(
            networkPolicy={"enabled": True}, vllm={"apiKeySecretRef": {"name": "np-key"}}
        )
        uid = kube.create(resource("np", spec))["metadata"]["uid"]
        (policy,) = wait_for("the NetworkPolicy", lambda: network_policies(api, namespace))
        assert policy.metadata.name == "np"
        assert [ref.uid for ref in policy.metadata.owner_references] == [uid]
        assert policy.spec.policy_types == ["Ingress"]
        peers = policy.spec.ingress[0]._from
        assert [p.namespace_selector.match_labels for p in peers if p.namespace_selector] == [
            {"kubernetes.io/metadata.name": "prom-system"}
        ]
        wait_for("the Deployment", lambda: kube.deployment("np"))
        env = {e.name: e for e in server_container(kube, "np").env}
        ref = env["VLLM_API_KEY"].value_from.secret_key_ref
        assert (ref.name, ref.key, env["VLLM_API_KEY"].value) == ("np-key", "VLLM_API_KEY", None)

        first = kube.deployment("np")
        assert first is not None
        kube.patch_spec("np", {"networkPolicy": {"enabled": False}})
        wait_for("the NetworkPolicy to be pruned", lambda: not network_policies(api, namespace))
        kube.wait_condition("np", "Compatible", "True", generation=2)
        after = kube.deployment("np")
        assert after is not None and after.metadata.uid == first.metadata.uid, "only the policy"

        kube.patch_spec("np", {"networkPolicy": {"enabled": True}})
        wait_for("the NetworkPolicy again", lambda: network_policies(api, namespace))
    finally:
        operator.stop()
        print(operator.logs())


def test_an_image_outside_the_allowlist_is_refused_and_changes_no_child(
    kube_cluster: Any, namespace: str, kube: Kube, tmp_path: Path
) -> None:
    operator = operator_for(kube_cluster, namespace, tmp_path, SPECOPS_ALLOWED_IMAGES=ALLOWED)
    operator.start()
    try:
        # The API default (Docker Hub) is not on the list: refused before any child exists.
        kube.create(resource("img", qwen_spec()))
        cond = kube.wait_condition("img", "Compatible", "False", reason="ImageNotAllowed")
        assert "spec.vllm.image 'vllm/vllm-openai:v0.33.0'" in cond["message"]
        assert ALLOWED in cond["message"]
        wait_for("an ImageNotAllowed Event", lambda: "ImageNotAllowed" in kube.event_reasons("img"))
        assert kube.deployment("img") is None

        # The mirrored image is allowed: the Deployment runs it.
        kube.patch_spec("img", {"vllm": {"image": MIRRORED}})
        kube.wait_condition("img", "Compatible", "True", generation=2)
        wait_for("the Deployment", lambda: kube.deployment("img"))
        assert server_container(kube, "img").image == MIRRORED

        # A later refused image leaves the running Deployment exactly as it was.
        before = kube.deployment("img")
        assert before is not None
        lookalike = "registry.example.com.evil.io/vllm/vllm-openai:v0.33.0"
        kube.patch_spec("img", {"vllm": {"image": lookalike}})
        kube.wait_condition("img", "Compatible", "False", reason="ImageNotAllowed", generation=3)
        after = kube.deployment("img")
        assert after is not None
        assert after.metadata.generation == before.metadata.generation
        assert server_container(kube, "img").image == MIRRORED
    finally:
        operator.stop()
        print(operator.logs())
