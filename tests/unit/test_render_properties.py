"""Property tests: any valid resource renders to valid objects; any junk is a ValidationError.

The first property is the contract the controller relies on (validation is the
only gate before rendering); the second is the CLI's "clear error, never a
traceback" promise for whatever a user puts in a resource file.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import kubernetes_validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from test_render import (
    LABEL_KEYS,
    plan_for,
    resolved_for,
    restricted_violations,
    speculative_config_of,
    vllm_container,
)

from specops.api.v1alpha1 import GPU_TYPES, SpeculativeDeployment
from specops.render import RenderDecision, render

REPOS = ["Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B-Instruct", "openai/gpt-oss-20b", "a/b"]
DRAFTERS = ["RedHatAI/Qwen3-8B-speculator.eagle3", "x/drafter"]
quantity = st.one_of(
    st.integers(min_value=1, max_value=2**40),
    st.builds(lambda n, u: f"{n}{u}", st.integers(1, 4096), st.sampled_from(["Gi", "Mi", "G", ""])),
)
label_value = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"verifier": {"model": draw(st.sampled_from(REPOS))}}
    if draw(st.booleans()):
        speculator: dict[str, Any] = {"model": draw(st.sampled_from(DRAFTERS))}
        if draw(st.booleans()):
            speculator["numSpeculativeTokens"] = draw(st.integers(1, 16))
        spec["speculator"] = speculator
    gpu: dict[str, Any] = {}
    if draw(st.booleans()):
        gpu["type"] = draw(st.sampled_from(GPU_TYPES))
    if "type" not in gpu or draw(st.booleans()):
        gpu["memoryGiB"] = draw(st.floats(1, 4096))
    if draw(st.booleans()):
        gpu["resourceName"] = draw(st.sampled_from(["nvidia.com/gpu", "amd.com/gpu"]))
    if draw(st.booleans()):
        gpu["productLabel"] = "nvidia.com/gpu.product"
        gpu["productValue"] = draw(label_value)
    gpu["tolerations"] = draw(
        st.lists(
            st.fixed_dictionaries(
                {"key": label_value, "operator": st.just("Exists")},
                optional={"effect": st.sampled_from(["NoSchedule", "NoExecute"])},
            ),
            max_size=2,
        )
    )
    spec["gpu"] = gpu
    if draw(st.booleans()):
        spec["tensorParallelSize"] = draw(st.sampled_from([1, 2, 4, 8]))
    if draw(st.booleans()):
        spec["maxModelLen"] = draw(st.integers(256, 1_000_000))
    spec["gpuMemoryUtilization"] = draw(st.floats(0.05, 1.0))
    low = draw(st.integers(1, 5))
    high = draw(st.integers(low, 10))
    spec["autoscaling"] = {"minReplicas": low, "maxReplicas": high}
    if low == high and draw(st.booleans()):
        spec["replicas"] = draw(st.integers(0, 10))
    modes = ["Auto", "Never"] + (["Always"] if "speculator" in spec else [])
    spec["speculation"] = {"mode": draw(st.sampled_from(modes))}
    cache = draw(
        st.sampled_from(
            [
                {},
                {"existingClaimName": "models"},
                {"accessModes": ["ReadWriteMany"], "storageClassName": "nfs"},
                {"accessModes": ["ReadWriteOncePod"]},
            ]
        )
    )
    if "existingClaimName" not in cache and draw(st.booleans()):
        cache["size"] = draw(quantity)
    spec["modelCache"] = cache
    spec["resources"] = {"cpu": draw(quantity), "memory": draw(quantity)}
    if draw(st.booleans()):
        spec["resources"]["sharedMemory"] = draw(quantity)
    spec["monitoring"] = {"podMonitor": draw(st.booleans()), "serviceMonitor": draw(st.booleans())}
    spec["vllm"] = {
        "extraArgs": draw(st.lists(st.sampled_from(["--enable-prefix-caching", "--seed=1"]))),
        "env": [{"name": "A", "value": draw(st.text(max_size=5))}] if draw(st.booleans()) else [],
    }
    if draw(st.booleans()):
        spec["hfTokenSecretRef"] = {"name": "hf"}
    return spec


def resource_of(spec: dict[str, Any]) -> SpeculativeDeployment:
    return SpeculativeDeployment.model_validate(
        {
            "apiVersion": "serving.specops.dev/v1alpha1",
            "kind": "SpeculativeDeployment",
            "metadata": {"name": "prop", "namespace": "ns", "uid": "u-1"},
            "spec": spec,
        }
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), tp=st.sampled_from([1, 2, 4, 8]), data=st.data())
def test_any_valid_resource_renders_to_valid_objects(
    spec: dict[str, Any], tp: int, data: st.DataObject
) -> None:
    sd = resource_of(spec)
    can_speculate = sd.spec.speculator is not None and sd.spec.speculation.mode != "Never"
    active = can_speculate and data.draw(st.booleans())
    table = None
    if active and data.draw(st.booleans()):
        table = [(1, 8, 3), (9, 10_000, 0)]
    decision = RenderDecision(
        active, data.draw(st.integers(1, 8)), data.draw(st.integers(0, 9)), table
    )
    objects = render(sd, resolved_for(sd), plan_for(tp, data.draw(st.floats(0.1, 800))), decision)
    for obj in objects:
        assert set(obj["metadata"]["labels"]) >= LABEL_KEYS
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "u-1"
        if not obj["apiVersion"].startswith("monitoring.coreos.com/"):
            kubernetes_validate.validate(obj, "1.34", strict=True)
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    assert deploy["spec"]["replicas"] == decision.replicas
    container = vllm_container(objects)
    assert container["resources"]["requests"][sd.spec.gpu.resource_name] == str(tp)
    assert (speculative_config_of(container["args"]) is not None) == active
    assert restricted_violations(deploy["spec"]["template"]["spec"]) == []
    assert render(sd, resolved_for(sd), plan_for(tp), decision) == render(
        sd, resolved_for(sd), plan_for(tp), decision
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(doc=json_values)
def test_arbitrary_documents_are_validation_errors(doc: Any) -> None:
    for candidate in (doc, {"metadata": {"name": "x"}, "spec": doc}):
        with contextlib.suppress(ValidationError):
            SpeculativeDeployment.model_validate(candidate)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), junk=json_values, data=st.data())
def test_corrupting_any_field_gives_a_validation_error_or_still_renders(
    spec: dict[str, Any], junk: Any, data: st.DataObject
) -> None:
    doc = {"metadata": {"name": "prop"}, "spec": copy.deepcopy(spec)}
    path = data.draw(st.sampled_from(paths(doc)[1:]))
    parent: Any = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = junk
    try:
        sd = SpeculativeDeployment.model_validate(doc)
    except ValidationError:
        return
    render(sd, resolved_for(sd), plan_for(1), RenderDecision(False, None, 1))
