"""Pure parts of the Kubernetes adapter: Lease claims, pruning, the kind table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from specops.kube.client import KubeError, _classify
from specops.kube.kinds import CHILD_KINDS, UnknownKind, kind_of, object_key
from specops.kube.leader import Observation, claim, observe
from specops.kube.prune import stale_children

WALL = datetime(2026, 1, 1, tzinfo=UTC)


def held_by(holder: str, renew: str = "t1") -> dict[str, Any]:
    return {
        "holderIdentity": holder,
        "leaseDurationSeconds": 15,
        "acquireTime": "t0",
        "renewTime": renew,
        "leaseTransitions": 2,
    }


def test_a_missing_lease_is_claimed() -> None:
    spec = claim(None, None, identity="me", duration=15, now=0, wall=WALL)
    assert spec is not None and spec["holderIdentity"] == "me" and spec["leaseTransitions"] == 0


def test_the_holder_renews_its_own_lease() -> None:
    spec = claim(held_by("me"), None, identity="me", duration=15, now=0, wall=WALL)
    assert spec is not None and spec["renewTime"] != "t1" and spec["leaseTransitions"] == 2


def test_a_live_lease_of_another_replica_is_respected() -> None:
    seen = observe(None, held_by("other"), now=100.0)
    assert claim(held_by("other"), seen, identity="me", duration=15, now=114.0, wall=WALL) is None


def test_a_lease_not_renewed_for_its_duration_is_taken_over() -> None:
    seen = observe(None, held_by("other"), now=100.0)
    seen = observe(seen, held_by("other"), now=110.0)  # unchanged record: still since 100
    assert seen.since == 100.0
    spec = claim(held_by("other"), seen, identity="me", duration=15, now=115.5, wall=WALL)
    assert spec is not None and spec["holderIdentity"] == "me" and spec["leaseTransitions"] == 3


def test_a_renewal_resets_the_expiry_clock() -> None:
    seen = observe(None, held_by("other", renew="t1"), now=100.0)
    seen = observe(seen, held_by("other", renew="t2"), now=112.0)
    assert (
        claim(held_by("other", "t2"), seen, identity="me", duration=15, now=120.0, wall=WALL)
        is None
    )


def test_a_released_lease_is_free_at_once() -> None:
    released = {**held_by(""), "leaseDurationSeconds": 1}
    seen = observe(None, released, now=100.0)
    assert claim(released, seen, identity="me", duration=15, now=100.0, wall=WALL) is not None


def test_skewed_remote_timestamps_do_not_matter() -> None:
    """Expiry is judged on our monotonic clock only, never on renewTime's value."""
    far_past = held_by("other", renew="1970-01-01T00:00:00.000000Z")
    seen = observe(None, far_past, now=5.0)
    assert claim(far_past, seen, identity="me", duration=15, now=6.0, wall=WALL) is None
    assert Observation(seen.record, 5.0) == seen


def child(kind: str, name: str, uid: str, api: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "ownerReferences": [{"uid": uid}]},
    }


def test_prune_deletes_only_our_children_that_are_no_longer_rendered() -> None:
    live = [
        child("Deployment", "a", "u1", "apps/v1"),
        child("Service", "a", "u1"),
        child("PersistentVolumeClaim", "a-cache", "u1"),
        child("PersistentVolumeClaim", "b-cache", "u2"),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine"}},
    ]
    keep = {("apps/v1", "Deployment", "a"), ("v1", "Service", "a")}
    stale = stale_children(live, keep, "u1")
    assert [object_key(o) for o in stale] == [("v1", "PersistentVolumeClaim", "a-cache")]


def test_every_child_kind_maps_to_a_url() -> None:
    assert kind_of({"apiVersion": "apps/v1", "kind": "Deployment"}).object_path("ns", "x") == (
        "/apis/apps/v1/namespaces/ns/deployments/x"
    )
    assert kind_of({"apiVersion": "v1", "kind": "Service"}).collection_path("ns") == (
        "/api/v1/namespaces/ns/services"
    )
    assert len({k.plural for k in CHILD_KINDS}) == len(CHILD_KINDS)


def test_an_unknown_kind_is_refused_with_its_name() -> None:
    with pytest.raises(UnknownKind, match="CronJob"):
        kind_of({"apiVersion": "batch/v1", "kind": "CronJob"})


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(409, True), (429, True), (503, True), (500, True), (422, False), (403, False), (404, False)],
)
def test_api_errors_are_classified(status: int, retryable: bool) -> None:
    from kubernetes.client.exceptions import ApiException

    exc = ApiException(status=status, reason="R")
    exc.body = '{"message": "m", "reason": "Why"}'
    classified = _classify(exc)
    assert isinstance(classified, KubeError)
    assert (classified.status, classified.retryable, classified.reason) == (
        status,
        retryable,
        "Why",
    )


def test_network_errors_are_retryable() -> None:
    assert _classify(ConnectionRefusedError("no")).retryable
