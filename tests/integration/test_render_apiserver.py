"""The CRD and the rendered objects against a real Kubernetes 1.34 control plane.

What only the API server can say: the generated CRD is accepted (structural
schema, CEL rules that compile within their cost budget), its defaults and CEL
rules behave as the pydantic models do, rendered pods pass the "restricted"
Pod Security admission, rendered objects schedule onto the GPU pool their node
selector names, and owner references let the garbage collector remove them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_harness import explain_pods, wait_for

from specops.api.crd import build_crd
from specops.api.v1alpha1 import GROUP, PLURAL, VERSION, SpeculativeDeployment
from specops.render import RenderDecision, render

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


@pytest.fixture
def crd(api: Any) -> dict[str, Any]:
    """The generated CRD, installed (or replaced) and Established."""
    ext = client.ApiextensionsV1Api(api)
    body = build_crd()
    name = body["metadata"]["name"]
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = ext.read_custom_resource_definition(name)
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(name, body)

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for("the CRD to be Established", established)
    return body


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "manifests" / "examples" / name).read_text())
    return doc


def create(api: Any, namespace: str, body: dict[str, Any], dry_run: bool = True) -> Any:
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, dry_run="All" if dry_run else None
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_are_accepted_and_defaulted_by_the_api_server(
    api: Any, crd: dict[str, Any], namespace: str, path: Path
) -> None:
    created = create(api, namespace, yaml.safe_load(path.read_text()))
    spec = created["spec"]
    assert spec["gpuMemoryUtilization"] == 0.9
    assert spec["gpu"]["resourceName"] == "nvidia.com/gpu"
    assert spec["rollout"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert spec["vllm"]["image"] == "vllm/vllm-openai:v0.33.0"
    # What the API server stored and defaulted, the models read back unchanged.
    parsed = SpeculativeDeployment.model_validate(created)
    assert parsed.spec.gpu_memory_utilization == 0.9


QWEN = example("qwen3-8b.yaml")


def with_spec(name: str = "bad", **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(QWEN)
    body["metadata"] = {"name": name}
    body["spec"].update(changes)
    return body


def without_speculator(body: dict[str, Any]) -> dict[str, Any]:
    del body["spec"]["speculator"]
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            with_spec(gpu={}), "gpu.type or gpu.memoryGiB", id="gpu without type or memory"
        ),
        pytest.param(
            with_spec(tensorParallelSize=3), "must be 1, 2, 4 or 8", id="tensor parallel 3"
        ),
        pytest.param(
            with_spec(autoscaling={"minReplicas": 3, "maxReplicas": 2}),
            "minReplicas must not exceed",
            id="min above max",
        ),
        pytest.param(
            with_spec(replicas=2, autoscaling={"minReplicas": 1, "maxReplicas": 3}),
            "needs autoscaling off",
            id="pinned replicas with the autoscaler on",
        ),
        pytest.param(
            without_speculator(with_spec(speculation={"mode": "Always"})),
            "Always needs spec.speculator",
            id="always without a speculator",
        ),
        pytest.param(
            with_spec(vllm={"extraArgs": ["--port=9000"]}),
            "flags the operator manages",
            id="extra args overriding the port",
        ),
        pytest.param(
            with_spec(vllm={"env": [{"name": "HF_HOME", "value": "/x"}]}),
            "variables the operator manages",
            id="env overriding HF_HOME",
        ),
        pytest.param(
            with_spec(modelCache={"existingClaimName": "c", "size": "1Gi"}),
            "excludes size",
            id="existing claim with a size",
        ),
        pytest.param(with_spec(name="9lives"), "DNS label", id="a name that cannot be a Service"),
        pytest.param(
            with_spec(speculator={"model": "x/y", "numSpeculativeTokens": 0}),
            "numSpeculativeTokens",
            id="zero speculative tokens",
        ),
    ],
)
def test_cel_and_schema_rules_reject_what_the_models_reject(
    api: Any, crd: dict[str, Any], namespace: str, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as info:
        create(api, namespace, body)
    assert info.value.status == 422
    assert message in info.value.body
    with pytest.raises(ValueError, match=message.split(" ")[0]):
        SpeculativeDeployment.model_validate(body)


def restricted(api: Any, namespace: str) -> None:
    client.CoreV1Api(api).patch_namespace(
        namespace,
        {
            "metadata": {
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                }
            }
        },
    )


def rendered_for(created: dict[str, Any], tp: int = 1) -> list[dict[str, Any]]:
    from specops.api.v1alpha1 import PlanStatus, ResolvedModelStatus, ResolvedStatus

    resource = SpeculativeDeployment.model_validate(created)
    spec = resource.spec
    assert spec.speculator is not None
    resolved = ResolvedStatus(
        verifier=ResolvedModelStatus(model=spec.verifier.model, revision="main", sha="a" * 40),
        speculator=ResolvedModelStatus(model=spec.speculator.model, revision="main", sha="b" * 40),
    )
    plan = PlanStatus(
        tensor_parallel_size=tp,
        gpus_per_replica=tp,
        gpu_type=spec.gpu.type,
        gpu_memory_gib=79.2,
        usable_memory_gib=71.3,
        verifier_weights_gib=15.3,
        speculator_weights_gib=1.9,
        activation_reserve_gib=2.3,
        kv_budget_gib=51.8,
        kv_bytes_per_token=151552,
        max_model_len=32768,
        max_concurrent_sequences=11,
    )
    return render(resource, resolved, plan, RenderDecision(True, 3, 1))


def test_rendered_pods_pass_restricted_pod_security_admission(
    api: Any, crd: dict[str, Any], namespace: str
) -> None:
    restricted(api, namespace)
    core = client.CoreV1Api(api)
    objects = rendered_for({**QWEN, "metadata": {"name": "qwen3-8b", "uid": "u"}})
    template = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": template["spec"],
    }
    core.create_namespaced_pod(namespace, pod, dry_run="All")  # raises 403 if forbidden

    # The same admission refuses a pod that breaks the standard, so the pass above means something.
    bad = copy.deepcopy(pod)
    bad["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod(namespace, bad, dry_run="All")
    assert info.value.status == 403
    assert "restricted" in info.value.body


def test_rendered_objects_schedule_on_the_gpu_pool_and_are_garbage_collected(
    api: Any, crd: dict[str, Any], namespace: str
) -> None:
    restricted(api, namespace)
    core, apps, policy = client.CoreV1Api(api), client.AppsV1Api(api), client.PolicyV1Api(api)
    created = create(api, namespace, {**QWEN, "metadata": {"name": "qwen3-8b"}}, dry_run=False)
    objects = rendered_for(created)
    for obj in objects:
        kind = obj["kind"]
        if kind == "Deployment":
            apps.create_namespaced_deployment(namespace, obj)
        elif kind == "Service":
            core.create_namespaced_service(namespace, obj)
        elif kind == "PodDisruptionBudget":
            policy.create_namespaced_pod_disruption_budget(namespace, obj)
    selector = "app.kubernetes.io/instance=qwen3-8b,app.kubernetes.io/component=server"

    def scheduled() -> list[Any]:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        return [p for p in pods if p.spec.node_name]

    # Generous: on a loaded 2-core machine the namespaces of earlier tests may
    # still be releasing GPUs of the shared pool.
    (pod,) = wait_for(
        "the vLLM pod to be scheduled",
        scheduled,
        timeout=180,
        explain=explain_pods(core, namespace, selector),
    )
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels["specops.dev/gpu-type"] == "H100-80GB"
    assert pod.spec.containers[0].resources.requests["nvidia.com/gpu"] == "1"

    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "qwen3-8b"
    )

    def collected() -> bool:
        try:
            apps.read_namespaced_deployment("qwen3-8b", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for("the garbage collector to delete the Deployment", collected, timeout=90)
