"""Whole reconcile cycles against an in-memory API server, as an untrusted tenant would drive them.

Covers the token Secret rules (own namespace, opt-in label, one message for
every failure), no adoption of objects the resource does not control, a 4xx
apply becoming a condition and an Event, and the catch-all for any exception,
with a marker token that must show up in no status, Event, log line or metric.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fakekube import MARKER, FakeKube

from specops.api import redact as registry
from specops.api.v1alpha1 import HUB_TOKEN_SECRET_LABEL
from specops.controller import reconcile as reconcile_module
from specops.controller.reconcile import Reconciler, Result
from specops.hub import Resolver
from specops.kube.client import KubeError
from specops.kube.events import EventRecorder
from specops.metrics import OperatorMetrics
from specops.settings import load_settings

NS = "team-a"
OWNER_UID = "owner-uid-1"
CR_PATH = f"/apis/serving.specops.dev/v1alpha1/namespaces/{NS}/speculativedeployments/qwen"
DEPLOYMENT_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/qwen"
SERVICE_PATH = f"/api/v1/namespaces/{NS}/services/qwen"
LABELLED = {HUB_TOKEN_SECRET_LABEL: "true"}


class RecordingResolver(Resolver):
    """The real resolver (fixture mirror), remembering which token each look-up used."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str | None] = []

    def resolve(self, *args: Any, **kwargs: Any) -> Any:
        self.tokens.append(kwargs.get("token"))
        return super().resolve(*args, **kwargs)


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.clear()
    yield
    registry.clear()


def resource(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.specops.dev/v1alpha1",
        "kind": "SpeculativeDeployment",
        "metadata": {"name": "qwen", "namespace": NS, "uid": OWNER_UID, "generation": 1},
        "spec": {
            "verifier": {"model": "Qwen/Qwen3-8B"},
            "speculator": {"model": "RedHatAI/Qwen3-8B-speculator.eagle3"},
            "gpu": {"type": "H100-80GB"},
            "speculation": {"mode": "Always"},
            **spec,
        },
    }


class World:
    def __init__(self, kube: FakeKube | None = None, **settings: Any) -> None:
        self.kube = kube or FakeKube()
        self.resolver = RecordingResolver()
        self.metrics = OperatorMetrics()
        self.reconciler = Reconciler(
            load_settings(
                prometheus_url="http://127.0.0.1:9",
                hub_mirror="tests/fixtures/hub",
                hub_endpoint="http://127.0.0.1:9",
                **settings,
            ),
            self.kube,
            EventRecorder(self.kube, instance="t"),
            self.metrics,
            resolver=self.resolver,
        )

    def create(self, body: dict[str, Any]) -> None:
        self.kube.objects[CR_PATH] = body

    def cycle(self, trigger: str = "change") -> Result:
        async def run() -> Result:
            try:
                return await self.reconciler.reconcile(self.kube.objects[CR_PATH], trigger=trigger)
            finally:
                self.reconciler.close()

        return asyncio.run(run())

    def condition(self, type_: str) -> dict[str, Any]:
        conditions = self.kube.objects[CR_PATH]["status"]["conditions"]
        return next(c for c in conditions if c["type"] == type_)

    def events(self) -> list[tuple[str, str, str]]:
        return [(e["type"], e["reason"], e["message"]) for e in self.kube.events]

    def readable(self) -> str:
        """Everything a tenant (or a scraper) can read: status, Events, /metrics."""
        return (
            json.dumps([self.kube.objects[CR_PATH].get("status"), self.kube.events])
            + self.metrics.exposition().decode()
        )


# --------------------------------------------------------------------------- the token


def test_a_labelled_secret_in_the_own_namespace_is_the_token() -> None:
    world = World()
    world.kube.secret(NS, "hf", {"HF_TOKEN": MARKER}, LABELLED)
    world.create(resource(hfTokenSecretRef={"name": "hf"}))
    assert world.cycle().outcome == "applied"
    assert set(world.resolver.tokens) == {MARKER}
    assert world.kube.requested("GET").count(f"/api/v1/namespaces/{NS}/secrets/hf") == 1


UNUSABLE = {
    "missing Secret": None,
    "no label": ({"HF_TOKEN": MARKER}, None),
    "label not true": ({"HF_TOKEN": MARKER}, {HUB_TOKEN_SECRET_LABEL: "yes"}),
    "missing key": ({"OTHER": MARKER}, LABELLED),
    "line break": ({"HF_TOKEN": f"{MARKER}\nsecond line"}, LABELLED),
    "PEM key": ({"HF_TOKEN": f"-----BEGIN KEY-----\n{MARKER}\n-----END KEY-----"}, LABELLED),
    "non-ASCII": ({"HF_TOKEN": f"{MARKER}é"}, LABELLED),
    "control character": ({"HF_TOKEN": f"{MARKER}\x07"}, LABELLED),
    "space": ({"HF_TOKEN": f"Bearer {MARKER}"}, LABELLED),
}


def refused_message(case: str, caplog: pytest.LogCaptureFixture) -> tuple[str, World]:
    world = World()
    setup = UNUSABLE[case]
    if setup is not None:
        world.kube.secret(NS, "hf", setup[0], setup[1])
    world.create(resource(hfTokenSecretRef={"name": "hf"}))
    with caplog.at_level(logging.DEBUG):
        result = world.cycle()
    assert result.outcome == "retry"
    cond = world.condition("ModelsResolved")
    assert (cond["status"], cond["reason"]) == ("False", "TokenSecretNotFound")
    assert world.resolver.tokens == [], "an unusable Secret must never be sent to the Hub"
    assert world.kube.requested("POST") == [f"/api/v1/namespaces/{NS}/events"], "nothing applied"
    return str(cond["message"]), world


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_every_unusable_token_secret_reads_the_same_and_leaks_nothing(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    message, world = refused_message(case, caplog)
    baseline, _ = refused_message("missing Secret", caplog)
    assert message == baseline, "the message must not tell which Secrets exist or hold what"
    assert HUB_TOKEN_SECRET_LABEL in message and "hf" in message and "HF_TOKEN" in message
    assert ("Warning", "TokenSecretNotFound", message) in world.events()
    assert MARKER not in world.readable()
    assert MARKER not in caplog.text
    assert "MARKER" not in world.readable() + caplog.text, "no fragment of a multi-line value"


def test_the_secret_is_only_ever_read_from_the_resources_namespace() -> None:
    world = World()
    world.kube.secret("kube-system", "hf", {"HF_TOKEN": MARKER}, LABELLED)
    world.create(resource(hfTokenSecretRef={"name": "hf"}))
    world.cycle()
    secret_reads = [p for p in world.kube.requested("GET") if "/secrets/" in p]
    assert secret_reads == [f"/api/v1/namespaces/{NS}/secrets/hf"]
    assert world.condition("ModelsResolved")["reason"] == "TokenSecretNotFound"


def test_the_operators_own_token_is_lent_to_tenants_only_when_enabled() -> None:
    for enabled, expected in ((False, {None}), (True, {MARKER})):
        world = World(hub_token=MARKER, hub_token_for_tenants=enabled)
        world.create(resource())
        assert world.cycle().outcome == "applied"
        assert set(world.resolver.tokens) == expected, f"hub_token_for_tenants={enabled}"


# --------------------------------------------------------------------------- ownership


@pytest.mark.parametrize(
    ("path", "kind"),
    [(DEPLOYMENT_PATH, "Deployment"), (SERVICE_PATH, "Service")],
    ids=["Deployment", "Service"],
)
def test_an_object_the_resource_does_not_control_is_never_taken_over(path: str, kind: str) -> None:
    world = World()
    theirs = world.kube.put(
        path,
        {
            "apiVersion": "apps/v1" if kind == "Deployment" else "v1",
            "kind": kind,
            "metadata": {"name": "qwen", "namespace": NS, "labels": {"team": "b"}},
            "spec": {"theirs": True},
        },
    )
    world.create(resource())
    result = world.cycle()
    assert result.outcome == "retry" and result.retry_after
    assert world.kube.objects[path] == theirs, "not a byte changed"
    attempts = [body["metadata"] for _, p, body in world.kube.writes if p == path]
    assert attempts == [{**attempts[0], "resourceVersion": "1"}], "only a create-only apply"
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ObjectNotOwned")
    assert f"{kind} {NS}/qwen" in ready["message"]
    assert ("Warning", "ObjectNotOwned", ready["message"]) in world.events()


def test_an_object_controlled_by_another_owner_is_not_ours_either() -> None:
    world = World()
    world.kube.put(
        SERVICE_PATH,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "qwen",
                "namespace": NS,
                "ownerReferences": [
                    {"uid": "someone-else", "controller": True},
                    {"uid": OWNER_UID, "controller": False},
                ],
            },
        },
    )
    world.create(resource())
    world.cycle()
    assert world.condition("Ready")["reason"] == "ObjectNotOwned"


def test_nothing_is_pruned_in_a_cycle_that_could_not_write_everything() -> None:
    world = World()
    world.create(resource(modelCache={"accessModes": ["ReadWriteMany"], "size": "100Gi"}))
    assert world.cycle().outcome == "applied"
    world.cycle("resync")  # records the children, so the next change prunes
    claim = f"/api/v1/namespaces/{NS}/persistentvolumeclaims/qwen-model-cache"
    assert claim in world.kube.objects
    world.kube.failures[("PATCH", "/services/qwen")] = KubeError(
        422, "Invalid", "spec.ports: Required value", retryable=False
    )
    # Per-pod caches: the shared claim is no longer rendered (pruned when all goes well).
    world.kube.objects[CR_PATH]["spec"]["modelCache"] = {"accessModes": ["ReadWriteOnce"]}
    world.kube.objects[CR_PATH]["metadata"]["generation"] = 2
    assert world.cycle().outcome == "blocked"
    assert claim in world.kube.objects, "a failed cycle must not delete children"
    del world.kube.failures[("PATCH", "/services/qwen")]
    assert world.cycle("resync").outcome == "applied"
    assert claim not in world.kube.objects, "pruned once every child is written"


def test_steady_state_cycles_need_no_extra_read_and_a_replaced_child_is_caught() -> None:
    world = World()
    world.create(resource())
    assert world.cycle().outcome == "applied"
    world.kube.calls.clear()
    assert world.cycle("resync").outcome == "applied"
    child_reads = [p for p in world.kube.requested("GET") if p in (DEPLOYMENT_PATH, SERVICE_PATH)]
    assert child_reads == [], "children created by this process are not read again"

    # Deleted behind our back, and someone else's object of the same name appears:
    # the apply carries the old uid as its precondition, so it lands on nothing.
    del world.kube.objects[SERVICE_PATH]
    impostor = world.kube.put(
        SERVICE_PATH, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "qwen"}}
    )
    assert world.cycle("resync").outcome == "retry"
    assert world.kube.objects[SERVICE_PATH] == impostor
    assert world.condition("Ready")["reason"] == "ObjectNotOwned"


def test_a_restarted_operator_verifies_its_children_once_then_applies_with_a_precondition() -> None:
    first = World()
    first.create(resource())
    assert first.cycle().outcome == "applied"
    live_version = first.kube.objects[DEPLOYMENT_PATH]["metadata"]["resourceVersion"]
    restarted = World(kube=first.kube)  # a new process: nothing remembered
    first.kube.writes.clear()
    assert restarted.cycle("resync").outcome == "applied"
    sent = [body["metadata"] for _, p, body in first.kube.writes if p == DEPLOYMENT_PATH]
    assert [m.get("resourceVersion") for m in sent] == ["1", live_version], (
        "create-only first; on 409 read, check the owner, apply on exactly what was read"
    )
    managers = [
        m["manager"] for m in first.kube.objects[DEPLOYMENT_PATH]["metadata"]["managedFields"]
    ]
    assert managers == ["specops"]


# --------------------------------------------------------------------------- refused applies


def test_an_apply_the_api_server_refuses_is_a_condition_and_an_event() -> None:
    world = World()
    world.kube.secret(NS, "hf", {"HF_TOKEN": MARKER}, LABELLED)
    world.kube.failures[("PATCH", "/deployments/qwen")] = KubeError(
        422,
        "Invalid",
        f'Deployment.apps "qwen" is invalid: spec.template.env[0].value: {MARKER}',
        retryable=False,
    )
    world.create(resource(hfTokenSecretRef={"name": "hf"}))
    result = world.cycle()
    assert result.outcome == "blocked"
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ApplyRejected")
    assert "Deployment qwen" in ready["message"] and "Invalid (422)" in ready["message"]
    assert any(e[:2] == ("Warning", "ApplyRejected") for e in world.events())
    assert MARKER not in world.readable() and MARKER not in result.message


def test_a_forbidden_apply_is_reported_too() -> None:
    world = World()
    world.kube.failures[("PATCH", "/services/qwen")] = KubeError(
        403, "Forbidden", "services is forbidden: quota", retryable=False
    )
    world.create(resource())
    world.cycle()
    ready = world.condition("Ready")
    assert ready["reason"] == "ApplyRejected" and "Service qwen" in ready["message"]


# --------------------------------------------------------------------------- the catch-all


def test_any_exception_in_a_cycle_becomes_a_redacted_condition_and_a_retry(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    world = World(hub_token=MARKER)
    world.create(resource())
    assert world.cycle().outcome == "applied"
    registry.register_secret(MARKER)

    def explode(*_: Any, **__: Any) -> Any:
        raise RuntimeError(f"renderer bug near {MARKER}")

    monkeypatch.setattr(reconcile_module, "render", explode)
    world.kube.objects[CR_PATH]["metadata"]["generation"] = 2
    with caplog.at_level(logging.DEBUG):
        result = world.cycle()
    assert result.outcome == "retry" and result.retry_after
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ReconcileError")
    assert "RuntimeError: renderer bug near [redacted]" in ready["message"]
    assert world.condition("ModelsResolved")["status"] == "True", "the rest is left as it was"
    assert world.kube.objects[CR_PATH]["status"]["observedGeneration"] == 2, "it is the answer"
    assert any(e[:2] == ("Warning", "ReconcileError") for e in world.events())
    assert MARKER not in world.readable() + result.message
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info]


def test_a_non_retryable_api_error_is_a_condition_not_a_silent_stop() -> None:
    world = World()
    world.create(resource())
    world.kube.failures[("GET", "/persistentvolumeclaims")] = KubeError(
        403, "Forbidden", "cannot list persistentvolumeclaims", retryable=False
    )
    assert world.cycle().outcome == "applied"  # a first cycle has nothing to prune
    result = world.cycle("resync")  # pruning lists the children: Forbidden
    assert result.outcome == "retry" and result.retry_after
    assert world.condition("Ready")["reason"] == "ReconcileError"
    assert "Forbidden" in world.condition("Ready")["message"]


# --------------------------------------------------------------------------- memory returned


def test_a_deleted_resources_models_leave_the_resolver_cache() -> None:
    """Forgetting a resource asks the resolver to drop every model no live resource names
    (and keeps the ones another resource still names)."""
    world = World()
    kept: list[frozenset[str]] = []
    world.resolver.forget_unused = lambda in_use: kept.append(frozenset(in_use)) or 0  # type: ignore[method-assign]
    world.create(resource())
    assert world.cycle().outcome == "applied"
    other = resource(speculator=None, speculation={"mode": "Never"})
    other["metadata"] = {**other["metadata"], "name": "other", "uid": "other-uid"}
    world.kube.objects[CR_PATH.replace("/qwen", "/other")] = other
    asyncio.run(world.reconciler.reconcile(other))
    world.reconciler.forget(world.kube.objects[CR_PATH])
    assert kept == [frozenset({"Qwen/Qwen3-8B"})], "the drafter only the deleted one named stays"
    world.reconciler.forget(other)
    assert kept[-1] == frozenset()
