"""Secrets, ownership and refused applies against the real API server, ``specops run`` at DEBUG.

One operator process per test, watching the test's namespace, logging at
``--log-level DEBUG`` (the level at which the kubernetes client would print
every response body, Secrets included). Token values are marker strings that
must appear, plain or base64, in no status, Event, log line or ``/metrics``.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from operator_harness import (
    Kube,
    OperatorProcess,
    qwen_spec,
    resource,
    stays_quiet,
    wait_for,
)

from hubserver import HubServer
from specops.api.v1alpha1 import HUB_TOKEN_SECRET_LABEL

pytestmark = pytest.mark.integration

QWEN_CONFIG = (Path(__file__).parents[1] / "fixtures/hub/Qwen/Qwen3-8B/config.json").read_bytes()
GATED = "specops-test/gated-qwen"
USED = "hf_USEDMARKER_5e3c0b9d71a24f6e"  # a valid labelled token: used, never shown
UNLABELLED = "hf_UNLABELLEDMARKER_8d2a6c41f0"  # in a Secret without the label: never read
MULTILINE = "-----BEGIN KEY-----\nhf_PEMMARKER_0c7e2d9b13\n-----END KEY-----"
OPERATOR = "hf_OPERATORMARKER_a41b7f3e92c5"  # the operator's own token, not lent to tenants
MARKERS = (USED, UNLABELLED, "hf_PEMMARKER_0c7e2d9b13", OPERATOR)


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    server = HubServer()
    server.add_fixtures()
    server.add_repo(GATED, {"config.json": QWEN_CONFIG}, gated=True, allowed_tokens={USED})
    with server:
        yield server


@pytest.fixture
def operator(
    kube_cluster: Any, namespace: str, hub: HubServer, tmp_path: Path
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        kube_cluster.kubeconfig,
        namespace,
        tmp_path,
        hub_endpoint=hub.endpoint,
        mirror=None,
        extra_env={"SPECOPS_LOG_LEVEL": "DEBUG", "SPECOPS_HUB_TOKEN": OPERATOR},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        print(f"--- operator log ({proc.identity}) ---\n{proc.logs()}")


def secret(kube: Kube, name: str, value: str, *, labelled: bool, key: str = "HF_TOKEN") -> None:
    labels = {HUB_TOKEN_SECRET_LABEL: "true"} if labelled else {}
    kube.core.create_namespaced_secret(
        kube.ns, {"metadata": {"name": name, "labels": labels}, "stringData": {key: value}}
    )


def readable(kube: Kube, operator: OperatorProcess) -> dict[str, str]:
    """Everything a tenant or an admin reads about the resources, by where it comes from."""
    statuses = kube.custom.list_namespaced_custom_object(
        "serving.specops.dev", "v1alpha1", kube.ns, "speculativedeployments"
    )
    events = [e.to_dict() for e in kube.core.list_namespaced_event(kube.ns).items]
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    return {
        "status": json.dumps([i.get("status") for i in statuses["items"]]),
        "events": json.dumps(events, default=str),
        "log": operator.log_path.read_text(),
        "metrics": metrics,
    }


def assert_no_marker(kube: Kube, operator: OperatorProcess) -> None:
    for where, text in readable(kube, operator).items():
        for marker in MARKERS:
            assert marker not in text, f"{marker} leaked into the {where}"
            encoded = base64.b64encode(marker.encode()).decode()
            assert encoded.rstrip("=") not in text, f"base64 of {marker} leaked into the {where}"


# --------------------------------------------------------------------------- (a) secrets


@pytest.mark.parametrize(
    "name", ["../../kube-system/secrets/x", "..", "kube-system/hf", "HF", "a%2Fb"]
)
def test_a_secret_name_that_leaves_the_namespace_is_refused_at_admission(
    kube: Kube, name: str
) -> None:
    with pytest.raises(ApiException) as refused:
        kube.create(resource("crafted", qwen_spec(hfTokenSecretRef={"name": name})))
    assert refused.value.status == 422
    assert "hfTokenSecretRef.name" in json.loads(refused.value.body)["message"]


def test_only_a_labelled_one_line_secret_is_a_token_and_no_value_ever_shows(
    kube: Kube, operator: OperatorProcess, hub: HubServer
) -> None:
    secret(kube, "used", USED, labelled=True)
    secret(kube, "unlabelled", UNLABELLED, labelled=False)
    secret(kube, "pem", MULTILINE, labelled=True)
    gated = {"verifier": {"model": GATED}, "gpu": {"type": "H100-80GB"}, "replicas": 0}
    for name in ("used", "unlabelled", "pem", "absent"):
        kube.create(resource(name, {**gated, "hfTokenSecretRef": {"name": name}}))
    kube.create(resource("anonymous", gated))

    kube.wait_condition("used", "ModelsResolved", "True", reason="Resolved", timeout=60)
    refused = {
        name: kube.wait_condition(name, "ModelsResolved", "False", reason="TokenSecretNotFound")
        for name in ("unlabelled", "pem", "absent")
    }
    messages = {m["message"].replace(name, "NAME") for name, m in refused.items()}
    assert len(messages) == 1, f"the message is an oracle: {messages}"
    assert HUB_TOKEN_SECRET_LABEL in messages.pop()
    # The operator's own token is not lent to a resource without a Secret.
    anonymous = kube.wait_condition("anonymous", "ModelsResolved", "False", timeout=60)
    assert anonymous["reason"] == "GatedModel", anonymous
    wait_for(
        "TokenSecretNotFound Events", lambda: "TokenSecretNotFound" in kube.event_reasons("pem")
    )

    sent = {r.authorization for r in hub.requests if r.authorization}
    assert sent == {f"Bearer {USED}"}, "only the labelled token went to the Hub"
    assert "response body" not in operator.log_path.read_text(), "the REST client logged bodies"
    assert " DEBUG " in operator.log_path.read_text() or '"DEBUG"' in operator.log_path.read_text()
    assert_no_marker(kube, operator)


# --------------------------------------------------------------------------- (b) ownership


def squatter_deployment() -> dict[str, Any]:
    return {
        "metadata": {"name": "squat", "labels": {"app": "theirs"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "theirs"}},
            "template": {
                "metadata": {"labels": {"app": "theirs"}},
                "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
            },
        },
    }


def test_objects_someone_else_created_are_reported_never_taken_over(
    kube: Kube, operator: OperatorProcess
) -> None:
    kube.apps.create_namespaced_deployment(kube.ns, squatter_deployment())
    before_svc = kube.core.create_namespaced_service(
        kube.ns, {"metadata": {"name": "squat"}, "spec": {"ports": [{"port": 1234}]}}
    )

    def settled() -> Any:
        dep = kube.apps.read_namespaced_deployment("squat", kube.ns)
        return dep if dep.status.observed_generation == dep.metadata.generation else None

    # The deployment controller writes its status once; after that nothing but us could.
    wait_for("the other Deployment's status", settled)
    stays_quiet(
        "the other Deployment",
        lambda: kube.apps.read_namespaced_deployment("squat", kube.ns).metadata.resource_version,
        seconds=2,
    )
    before_dep = kube.apps.read_namespaced_deployment("squat", kube.ns)
    kube.create(resource("squat", qwen_spec(replicas=0)))
    ready = kube.wait_condition("squat", "Ready", "False", reason="ObjectNotOwned")
    assert f"Deployment {kube.ns}/squat" in ready["message"]
    assert f"Service {kube.ns}/squat" in ready["message"]
    wait_for("an ObjectNotOwned Event", lambda: "ObjectNotOwned" in kube.event_reasons("squat"))
    event = next(e for e in kube.events("squat") if e.reason == "ObjectNotOwned")
    assert event.type == "Warning" and "Deployment" in event.message

    for before, read in (
        (before_dep, lambda: kube.apps.read_namespaced_deployment("squat", kube.ns)),
        (before_svc, lambda: kube.core.read_namespaced_service("squat", kube.ns)),
    ):
        after = read()
        assert after.metadata.resource_version == before.metadata.resource_version
        assert not after.metadata.owner_references
        assert "specops" not in {m.manager for m in after.metadata.managed_fields or []}

    # Once the conflict is gone, the retry (not a spec change) creates the resource's own.
    kube.core.delete_namespaced_service("squat", kube.ns)
    kube.apps.delete_namespaced_deployment("squat", kube.ns)

    def ours() -> bool:
        dep = kube.deployment("squat")
        refs = (dep.metadata.owner_references or []) if dep else []
        return any(r.controller and r.kind == "SpeculativeDeployment" for r in refs)

    wait_for("the resource's own Deployment", ours, timeout=90)
    svc = kube.core.read_namespaced_service("squat", kube.ns)
    assert [m.manager for m in svc.metadata.managed_fields] == ["specops"]
    assert svc.metadata.managed_fields[0].operation == "Apply"


# --------------------------------------------------------------------------- (c) refused applies


def test_a_child_the_api_server_rejects_is_a_condition_and_an_event(
    kube: Kube, operator: OperatorProcess
) -> None:
    broken = qwen_spec(replicas=0, vllm={"env": [{"name": "BROKEN", "valueFrom": {}}]})
    kube.create(resource("rejected", broken))
    ready = kube.wait_condition("rejected", "Ready", "False", reason="ApplyRejected")
    assert "Deployment rejected" in ready["message"] and "(422)" in ready["message"]
    assert "valueFrom" in ready["message"], "the server's own explanation is passed on"
    wait_for("an ApplyRejected Event", lambda: "ApplyRejected" in kube.event_reasons("rejected"))
    assert kube.deployment("rejected") is None
    assert "Traceback" not in operator.log_path.read_text()

    # Fixing the spec is enough: the next generation applies.
    kube.patch_spec("rejected", {"vllm": {"env": [{"name": "FIXED", "value": "1"}]}})
    kube.wait_condition("rejected", "Ready", "True", reason="ScaledToZero", generation=2)
