"""The reconciler's pure decisions: which child events need a cycle, backoff, generation marks."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client

from specops.controller.reconcile import Reconciler, backoff, owned_by, with_generation
from specops.controller.status import Findings, Verdict, Workload
from specops.kube.client import KubeClient
from specops.kube.events import EventRecorder
from specops.metrics import OperatorMetrics
from specops.settings import load_settings

OK = Verdict("True", "Ok", "")


def reconciler() -> Reconciler:
    kube = KubeClient(client.ApiClient(client.Configuration()))  # never called here
    settings = load_settings(prometheus_url="http://127.0.0.1:9")
    return Reconciler(settings, kube, EventRecorder(kube, instance="t"), OperatorMetrics())


def deployment(generation: int, available: int, uid: str = "u1") -> dict[str, Any]:
    return {
        "metadata": {
            "generation": generation,
            "ownerReferences": [{"uid": uid, "controller": True}],
        },
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": generation,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": available,
            "readyReplicas": available,
        },
    }


def test_child_events_that_change_nothing_we_report_are_skipped() -> None:
    r = reconciler()
    seen = deployment(1, 0)
    r._last["u1"] = Findings(1, OK, OK, applied=True, workload=Workload.from_deployment(seen))
    assert not r.child_needs_attention(seen), "the echo of our own apply"
    assert r.child_needs_attention(deployment(1, 1)), "a replica became available: Ready changes"
    assert r.child_needs_attention(deployment(2, 0)), "someone edited the spec: repair it"


def test_unknown_owner_needs_a_cycle_unless_one_is_running() -> None:
    r = reconciler()
    assert r.child_needs_attention(deployment(1, 0, uid="new"))

    async def while_locked() -> bool:
        lock = r._locks.setdefault("new", asyncio.Lock())
        async with lock:
            return r.child_needs_attention(deployment(1, 0, uid="new"))

    assert not asyncio.run(while_locked())
    orphan = deployment(1, 0)
    orphan["metadata"]["ownerReferences"] = []
    assert not r.child_needs_attention(orphan)


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after() -> None:
    assert [backoff(n, base=5, cap=60) for n in range(6)] == [5, 10, 20, 40, 60, 60]
    assert backoff(0, base=5, cap=60, hint=30) == 30
    assert backoff(0, base=5, cap=60, hint=600) == 60


def test_generation_mark_touches_only_deployment_metadata() -> None:
    dep = {"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": {"a": 1}}}
    marked = with_generation(dep, 7)
    assert marked["metadata"]["annotations"] == {"specops.dev/generation": "7"}
    assert marked["spec"] == dep["spec"] and "annotations" not in dep["metadata"]
    svc = {"kind": "Service", "metadata": {"name": "x"}}
    assert with_generation(svc, 7) is svc


def test_owned_by_matches_uid_only() -> None:
    assert owned_by({"metadata": {"ownerReferences": [{"uid": "a"}]}}, "a")
    assert not owned_by({"metadata": {"ownerReferences": [{"uid": "b"}]}}, "a")
    assert not owned_by({"metadata": {}}, "a")


def test_a_cycle_is_needed_for_unseen_generations_only() -> None:
    from specops.controller.reconcile import Result

    r = reconciler()
    body = {"metadata": {"uid": "u9", "namespace": "ns", "name": "x", "generation": 1}}
    assert r.needs_cycle(body), "first sight in this process (the operator started)"
    r._settle(body, Result("blocked"))
    assert not r.needs_cycle(body), "our own status write, or a spec already refused"
    assert r.needs_cycle({**body, "metadata": {**body["metadata"], "generation": 2}})


def test_retries_are_scheduled_doubled_and_cancelled() -> None:
    from specops.controller.reconcile import Result

    async def scenario() -> None:
        r = reconciler()
        body = {"metadata": {"uid": "u7", "namespace": "ns", "name": "x", "generation": 1}}
        r._settle(body, Result("retry", "hub down", 3600.0))
        first = r._retry_tasks["u7"]
        assert r._retry_counts["u7"] == 1
        r._settle(body, Result("retry", "hub down", 3600.0))
        await asyncio.sleep(0)
        assert first.cancelled() and r._retry_counts["u7"] == 2, "one pending retry per resource"
        second = r._retry_tasks["u7"]
        r._settle(body, Result("applied"))
        await asyncio.sleep(0)
        assert second.cancelled() and "u7" not in r._retry_counts
        r._settle(body, Result("retry", "again", 3600.0))
        r.close()
        await asyncio.sleep(0)
        assert not r._retry_tasks

    asyncio.run(scenario())
