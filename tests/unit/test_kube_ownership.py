"""ChildApplier: every write carries a precondition that keeps it off objects we do not own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fakekube import FakeKube

from specops.kube.client import KubeError
from specops.kube.kinds import Kind
from specops.kube.ownership import CREATE_ONLY, ChildApplier, NotOwned, controlled_by

OWNER = "owner-1"
PATH = "/api/v1/namespaces/ns/services/web"


def service(owner: str | None = OWNER) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "ns"}
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "controller": True}]
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"ports": [1]}}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_controlled_means_a_controller_reference_with_our_uid() -> None:
    assert controlled_by(service(), OWNER)
    assert not controlled_by(service("other"), OWNER)
    plain = service()
    plain["metadata"]["ownerReferences"][0]["controller"] = False
    assert not controlled_by(plain, OWNER), "a mere owner is not the controller"
    assert not controlled_by(service(), "")


def test_a_new_child_is_created_by_one_create_only_apply() -> None:
    kube = FakeKube()
    applier = ChildApplier(kube)
    created = run(applier.apply(OWNER, service()))
    assert [(m, p) for m, p, _ in kube.writes] == [("PATCH", PATH)]
    assert kube.writes[0][2]["metadata"]["resourceVersion"] == CREATE_ONLY
    assert created["metadata"]["uid"] == kube.objects[PATH]["metadata"]["uid"]


def test_a_known_child_is_applied_with_its_uid_and_recreated_if_deleted() -> None:
    kube = FakeKube()
    applier = ChildApplier(kube)
    first = run(applier.apply(OWNER, service()))
    run(applier.apply(OWNER, service()))
    assert kube.writes[-1][2]["metadata"]["uid"] == first["metadata"]["uid"]
    assert [m for m, _ in kube.calls] == ["PATCH", "PATCH"], "no read in the steady state"
    del kube.objects[PATH]
    again = run(applier.apply(OWNER, service()))
    assert again["metadata"]["uid"] != first["metadata"]["uid"]


def test_an_object_replaced_between_read_and_write_is_not_written() -> None:
    class Racing(FakeKube):
        async def get(self, kind: Kind, namespace: str | None, name: str) -> Any:
            seen = await super().get(kind, namespace, name)
            # Someone deletes our child and creates their own right after our read.
            self.objects.pop(PATH)
            self.put(PATH, service(owner=None))
            return seen

    kube = Racing()
    kube.put(PATH, service())  # ours, but this process has not seen it yet
    with pytest.raises(KubeError) as raised:
        run(ChildApplier(kube).apply(OWNER, service()))
    assert raised.value.status == 409 and raised.value.retryable
    assert "ownerReferences" not in kube.objects[PATH]["metadata"], "theirs was not written"


def test_someone_elses_object_raises_not_owned_and_is_left_alone() -> None:
    kube = FakeKube()
    theirs = kube.put(PATH, service(owner="another-resource"))
    with pytest.raises(NotOwned, match="Service ns/web already exists"):
        run(ChildApplier(kube).apply(OWNER, service()))
    assert kube.objects[PATH] == theirs


def test_forgetting_a_resource_drops_its_children() -> None:
    kube = FakeKube()
    applier = ChildApplier(kube)
    run(applier.apply(OWNER, service()))
    applier.forget(OWNER)
    kube.calls.clear()
    run(applier.apply(OWNER, service()))
    assert ("GET", PATH) in kube.calls, "a forgotten child is checked again"
