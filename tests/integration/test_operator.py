"""The operator against the real control plane: ``specops run`` as a subprocess.

Every test has its own namespace and its own operator process watching only
that namespace. Models come from the loopback Hub stand-in
(``tests/hubserver.py``) or the fixture mirror; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_harness import (
    EXAMPLES,
    Kube,
    OperatorProcess,
    example,
    install_crd,
    qwen_spec,
    resource,
    stays_quiet,
    wait_for,
)

from hubserver import HubServer
from specops.api.v1alpha1 import HUB_TOKEN_SECRET_LABEL
from specops.devcluster import nodepools

pytestmark = pytest.mark.integration

QWEN = json.loads(
    (Path(__file__).parents[1] / "fixtures/hub/Qwen/Qwen3-8B/config.json").read_text()
)

#: Pools the examples need beyond the default H100 / A100-40GB / CPU nodes.
EXTRA_POOLS = (
    nodepools.NodePool(
        name="xh200",
        count=1,
        gpu=nodepools.GPUSpec(count=8, type="H200-141GB", product="NVIDIA-H200", memoryMiB=143771),
    ),
    nodepools.NodePool(
        name="xl40s",
        count=1,
        gpu=nodepools.GPUSpec(count=4, type="L40S-48GB", product="NVIDIA-L40S", memoryMiB=46068),
    ),
    nodepools.NodePool(
        name="xa100-80",
        count=1,
        gpu=nodepools.GPUSpec(
            count=8, type="A100-80GB", product="NVIDIA-A100-SXM4-80GB", memoryMiB=81920
        ),
    ),
)


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    """The Hub on loopback: every fixture repo, plus a model whose heads TP 8 cannot split."""
    server = HubServer()
    server.add_fixtures()
    odd = {**QWEN, "num_attention_heads": 28, "num_key_value_heads": 4, "head_dim": 128}
    server.add_repo("specops-test/odd-heads-7b", {"config.json": json.dumps(odd).encode()})
    with server:
        yield server


@pytest.fixture(scope="module")
def api(kube_cluster: Any) -> Iterator[client.ApiClient]:
    with kube_cluster.api_client() as api_client:
        install_crd(api_client)
        yield api_client


@pytest.fixture
def kube(api: client.ApiClient, namespace: str) -> Kube:
    return Kube(api, namespace)


@pytest.fixture
def operator(
    kube_cluster: Any, namespace: str, hub: HubServer, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """``specops run`` watching only this test's namespace, models from the loopback Hub."""
    proc = OperatorProcess(
        kube_cluster.kubeconfig, namespace, tmp_path, hub_endpoint=hub.endpoint, mirror=None
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        print(f"--- operator log ({proc.identity}) ---\n{proc.logs()}")


@pytest.fixture(scope="module")
def extra_gpu_nodes(api: client.ApiClient) -> Iterator[None]:
    core = client.CoreV1Api(api)
    nodes = nodepools.node_manifests(EXTRA_POOLS)
    for node in nodes:
        core.create_node(node)
    names = {n["metadata"]["name"] for n in nodes}

    def ready() -> bool:
        listed = core.list_node(label_selector="type=kwok").items
        up = {
            n.metadata.name
            for n in listed
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        }
        return names <= up

    wait_for("the extra GPU nodes to be Ready", ready, timeout=60)
    yield
    for name in names:
        core.delete_node(name)


def gpus_of(pod: Any) -> int:
    total = 0
    for container in pod.spec.containers:
        limits = (container.resources.limits or {}) if container.resources else {}
        total += int(limits.get("nvidia.com/gpu", 0))
    return total


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_on_gpu_nodes_and_becomes_ready(
    path: Path, kube: Kube, operator: OperatorProcess, extra_gpu_nodes: None
) -> None:
    body = example(path)
    name = body["metadata"]["name"]
    secret = body["spec"].get("hfTokenSecretRef")
    if secret:  # gated models: create the Secret the example's comment asks for
        kube.core.create_namespaced_secret(
            kube.ns,
            {
                "metadata": {
                    "name": secret["name"],
                    "labels": {HUB_TOKEN_SECRET_LABEL: "true"},
                },
                "stringData": {secret.get("key", "HF_TOKEN"): "hf_test"},
            },
        )
    kube.create(body)
    kube.wait_condition(name, "Ready", "True", reason="Available", timeout=120)
    got = kube.get(name)
    status = got["status"]
    plan = status["plan"]
    # Only status is written: no bookkeeping annotations, no finalizer on the user's object.
    annotations = got["metadata"].get("annotations") or {}
    assert not [k for k in annotations if "specops" in k or "kopf" in k], annotations
    assert not got["metadata"].get("finalizers")
    gpu_type = body["spec"]["gpu"]["type"]
    pods = [p for p in kube.pods(name) if p.status.phase == "Running"]
    assert pods, "no running vLLM pod"
    for pod in pods:
        node = kube.core.read_node(pod.spec.node_name)
        assert node.metadata.labels["specops.dev/gpu-type"] == gpu_type
        assert gpus_of(pod) == plan["gpusPerReplica"]
    assert status["speculation"]["active"] is True
    assert status["resolved"]["verifier"]["model"] == body["spec"]["verifier"]["model"]
    reasons = kube.event_reasons(name)
    assert "ModelsResolved" in reasons and "Ready" in reasons
    assert operator.metric('specops_resources{condition="Ready",status="True"}') == 1.0


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("spec", "condition", "status", "reason"),
    [
        pytest.param(
            qwen_spec(speculator={"model": "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"}),
            "Compatible",
            "False",
            "VerifierMismatch",
            id="a-drafter-for-another-verifier-is-incompatible",
        ),
        pytest.param(
            {
                "verifier": {"model": "specops-test/odd-heads-7b"},
                "gpu": {"type": "H100-80GB"},
                "tensorParallelSize": 8,
            },
            "Compatible",
            "False",
            "HeadsNotDivisible",
            id="tp-8-does-not-divide-28-heads",
        ),
        pytest.param(
            {
                "verifier": {"model": "meta-llama/Llama-3.3-70B-Instruct"},
                "gpu": {"type": "L4-24GB"},
            },
            "Compatible",
            "False",
            "InsufficientGpuMemory",
            id="a-70b-model-does-not-fit-on-l4s",
        ),
        pytest.param(
            qwen_spec(verifier={"model": "nobody/no-such-model"}),
            "ModelsResolved",
            "False",
            "ModelNotFound",
            id="a-missing-repo-is-not-found",
        ),
        pytest.param(
            qwen_spec(verifier={"model": "Qwen/Qwen3-8B", "revision": "no-such-branch"}),
            "ModelsResolved",
            "False",
            "RevisionNotFound",
            id="a-missing-revision-is-not-found",
        ),
    ],
)
def test_refused_spec_gets_condition_and_event_and_no_workload(
    spec: dict[str, Any],
    condition: str,
    status: str,
    reason: str,
    kube: Kube,
    operator: OperatorProcess,
    hub: HubServer,
) -> None:
    kube.create(resource("refused", spec))
    cond = kube.wait_condition("refused", condition, status, reason=reason)
    assert cond["message"]
    wait_for(f"a {reason} Event", lambda: reason in kube.event_reasons("refused"))
    ready = kube.condition("refused", "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "NoWorkload")
    assert kube.deployment("refused") is None
    assert kube.get("refused")["status"]["observedGeneration"] == 1
    # No retry storm: the permanent failure is not retried by the operator.
    cycles = operator.metric('specops_reconcile_total{outcome="blocked"}')
    assert cycles >= 1
    stays_quiet(
        "no retries of a permanent failure",
        lambda: (operator.metric('specops_reconcile_total{outcome="blocked"}'), len(hub.requests)),
        seconds=3,
    )


def test_unreachable_hub_is_unknown_and_retried_with_backoff(
    kube_cluster: Any, namespace: str, kube: Kube, tmp_path: Path
) -> None:
    from operator_harness import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    proc = OperatorProcess(
        kube_cluster.kubeconfig, namespace, tmp_path, hub_endpoint=dead, mirror=None
    )
    proc.start()
    try:
        kube.create(resource("offline", qwen_spec()))
        cond = kube.wait_condition("offline", "ModelsResolved", "Unknown", reason="HubUnavailable")
        assert "127.0.0.1" in cond["message"] or cond["message"]
        wait_for(
            "a second attempt",
            lambda: proc.metric('specops_reconcile_total{outcome="retry"}') >= 2,
            timeout=30,
        )
        assert kube.deployment("offline") is None
        assert kube.event_reasons("offline").count("HubUnavailable") == 1
    finally:
        proc.stop()


def test_rate_limited_hub_is_retried_until_it_answers(
    kube: Kube, operator: OperatorProcess, hub: HubServer
) -> None:
    hub.fail_next(1, 429, match="/api/models/Qwen/Qwen3-8B", retry_after=1)
    kube.create(resource("limited", qwen_spec()))
    kube.wait_condition("limited", "ModelsResolved", "Unknown", reason="HubUnavailable")
    assert kube.deployment("limited") is None
    kube.wait_condition("limited", "ModelsResolved", "True", reason="Resolved", timeout=60)
    kube.wait_condition("limited", "Ready", "True", reason="Available", timeout=90)
    reasons = kube.event_reasons("limited")
    assert reasons.count("HubUnavailable") == 1 and "ModelsResolved" in reasons


def test_a_missing_token_secret_is_reported_and_picked_up_once_created(
    kube: Kube, operator: OperatorProcess
) -> None:
    kube.create(resource("gated", qwen_spec(hfTokenSecretRef={"name": "hf", "key": "token"})))
    cond = kube.wait_condition("gated", "ModelsResolved", "False", reason="TokenSecretNotFound")
    assert "hf" in cond["message"] and "token" in cond["message"]
    assert HUB_TOKEN_SECRET_LABEL in cond["message"]
    assert kube.deployment("gated") is None
    kube.core.create_namespaced_secret(
        kube.ns,
        {
            "metadata": {"name": "hf", "labels": {HUB_TOKEN_SECRET_LABEL: "true"}},
            "stringData": {"token": "hf_test"},
        },
    )
    kube.wait_condition("gated", "ModelsResolved", "True", reason="Resolved", timeout=60)
    kube.wait_condition("gated", "Ready", "True", reason="Available", timeout=90)


# --------------------------------------------------------------------------- updates


def test_updates_roll_the_deployment_and_a_bad_update_keeps_the_old_one(
    kube: Kube, operator: OperatorProcess, hub: HubServer
) -> None:
    kube.create(resource("qwen", qwen_spec()))
    kube.wait_condition("qwen", "Ready", "True", reason="Available", timeout=90)

    def template() -> Any:
        dep = kube.deployment("qwen")
        assert dep is not None
        return dep.spec.template

    def args() -> str:
        return " ".join(template().spec.containers[0].args or [])

    first = args()
    assert '"num_speculative_tokens":3' in first

    # new k
    kube.patch_spec("qwen", {"speculator": {"numSpeculativeTokens": 5}})
    wait_for("k=5 in the vLLM args", lambda: '"num_speculative_tokens":5' in args())
    kube.wait_condition("qwen", "Ready", "True", reason="Available", generation=2, timeout=90)

    # new TP: two GPUs per pod
    kube.patch_spec("qwen", {"tensorParallelSize": 2})
    wait_for(
        "pods with 2 GPUs",
        lambda: gpus_of(kube.deployment("qwen").spec.template) == 2,  # type: ignore[union-attr]
    )
    kube.wait_condition("qwen", "Ready", "True", reason="Available", generation=3, timeout=90)
    assert kube.get("qwen")["status"]["plan"]["tensorParallelSize"] == 2

    # new revision: the Hub's branch v2 points at another commit
    repo = hub.repos["Qwen/Qwen3-8B"]
    sha = repo.add_commit({"config.json": json.dumps(QWEN).encode() + b"\n"}, ref="v2")
    kube.patch_spec("qwen", {"verifier": {"model": "Qwen/Qwen3-8B", "revision": "v2"}})
    wait_for("the v2 commit in the vLLM args", lambda: sha in args())
    kube.wait_condition("qwen", "Ready", "True", reason="Available", generation=4, timeout=90)
    assert kube.get("qwen")["status"]["resolved"]["verifier"]["sha"] == sha

    # an incompatible update: nothing changes in the running workload
    before = kube.deployment("qwen")
    assert before is not None
    kube.patch_spec(
        "qwen", {"speculator": {"model": "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"}}
    )
    kube.wait_condition("qwen", "Compatible", "False", reason="VerifierMismatch", generation=5)
    ready = kube.wait_condition("qwen", "Ready", "True", reason="AvailableOldGeneration")
    assert "serving generation 4" in ready["message"]
    after = kube.deployment("qwen")
    assert after is not None
    assert after.metadata.generation == before.metadata.generation
    assert after.spec.template == before.spec.template
    assert "VerifierMismatch" in kube.event_reasons("qwen")


# --------------------------------------------------------------------------- drift


def test_hand_deleted_or_edited_children_are_repaired(
    kube_cluster: Any, namespace: str, kube: Kube, hub: HubServer, tmp_path: Path
) -> None:
    """Deployments are watched (repaired at once); other children by the periodic resync."""
    operator = OperatorProcess(
        kube_cluster.kubeconfig,
        namespace,
        tmp_path,
        hub_endpoint=hub.endpoint,
        mirror=None,
        extra_args=["--resync", "2"],
    ).start()
    try:
        _repairs(kube)
    finally:
        operator.stop()
        print(operator.logs())


def _repairs(kube: Kube) -> None:
    kube.create(resource("drift", qwen_spec()))
    kube.wait_condition("drift", "Ready", "True", reason="Available", timeout=90)
    original = kube.deployment("drift")
    assert original is not None
    image = original.spec.template.spec.containers[0].image

    kube.apps.delete_namespaced_deployment("drift", kube.ns)
    wait_for(
        "the Deployment to be recreated",
        lambda: (
            (d := kube.deployment("drift")) is not None and d.metadata.uid != original.metadata.uid
        ),
    )

    kube.apps.patch_namespaced_deployment(
        "drift",
        kube.ns,
        {
            "spec": {
                "replicas": 3,
                "template": {"spec": {"containers": [{"name": "vllm", "image": "evil:1"}]}},
            }
        },
    )
    wait_for(
        "the hand edit to be reverted",
        lambda: (
            (d := kube.deployment("drift")) is not None
            and d.spec.replicas == 1
            and all(c.image != "evil:1" for c in d.spec.template.spec.containers)
            and any(c.image == image for c in d.spec.template.spec.containers)
        ),
    )
    kube.wait_condition("drift", "Ready", "True", reason="Available", timeout=90)

    service = kube.core.read_namespaced_service("drift", kube.ns)
    port = service.spec.ports[0]
    kube.core.patch_namespaced_service(
        "drift", kube.ns, {"spec": {"ports": [{"port": port.port, "targetPort": 9999}]}}
    )
    wait_for(
        "the Service's targetPort to be restored by the resync",
        lambda: (
            kube.core.read_namespaced_service("drift", kube.ns).spec.ports[0].target_port
            == port.target_port
        ),
        timeout=20,
    )


# --------------------------------------------------------------------------- restart


def test_restart_changes_nothing_that_was_right(
    kube_cluster: Any, namespace: str, kube: Kube, hub: HubServer, tmp_path: Path
) -> None:
    first = OperatorProcess(
        kube_cluster.kubeconfig, namespace, tmp_path, hub_endpoint=hub.endpoint, mirror=None
    ).start()
    try:
        kube.create(resource("steady", qwen_spec()))
        kube.wait_condition("steady", "Ready", "True", reason="Available", timeout=90)
    finally:
        first.kill()

    def versions() -> dict[str, str]:
        found = {"resource": kube.get("steady")["metadata"]["resourceVersion"]}
        dep = kube.deployment("steady")
        assert dep is not None
        found["deployment"] = dep.metadata.resource_version
        svc = kube.core.read_namespaced_service("steady", kube.ns)
        found["service"] = svc.metadata.resource_version
        for pod in kube.pods("steady"):
            found[f"pod/{pod.metadata.name}"] = pod.metadata.resource_version
        return found

    before = versions()
    events = len(kube.events("steady"))
    second = OperatorProcess(
        kube_cluster.kubeconfig, namespace, tmp_path, hub_endpoint=hub.endpoint, mirror=None
    ).start()
    try:
        wait_for(
            "the restarted operator to reconcile the resource",
            lambda: second.metric('specops_reconcile_total{outcome="applied"}') >= 1,
            timeout=30,
        )
        assert versions() == before
        assert len(kube.events("steady")) == events
    finally:
        second.stop()
