"""Events come from status transitions only, so a restart posts nothing new."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from specops.api.v1alpha1 import SpeculativeDeploymentStatus
from specops.controller.events import events_for
from specops.controller.status import Findings, SpeculationVerdict, Verdict, Workload, build_status
from specops.kube.events import EventLimiter, event_body

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RESOLVED = Verdict("True", "Resolved", "pinned")
COMPATIBLE = Verdict("True", "Compatible", "fits")


def ready_deployment(available: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "availableReplicas": available,
            "readyReplicas": available,
            "updatedReplicas": 1,
        },
    }


def cycle(old: SpeculativeDeploymentStatus, **kw: Any) -> SpeculativeDeploymentStatus:
    base: dict[str, Any] = {
        "generation": 1,
        "resolved": RESOLVED,
        "compatible": COMPATIBLE,
        "applied": True,
        "speculation": SpeculationVerdict(True, 3, "ModeAlways", "on"),
        "desired_replicas": 1,
        "workload": Workload.from_deployment(ready_deployment(0)),
    }
    base.update(kw)
    return build_status(old, Findings(**base), now=T0)


def reasons(old: SpeculativeDeploymentStatus, new: SpeculativeDeploymentStatus) -> list[str]:
    return [e.reason for e in events_for(old, new)]


def test_first_cycle_announces_resolution_only() -> None:
    assert reasons(SpeculativeDeploymentStatus(), cycle(SpeculativeDeploymentStatus())) == [
        "ModelsResolved"
    ]


def test_repeating_an_unchanged_cycle_posts_nothing() -> None:
    first = cycle(SpeculativeDeploymentStatus())
    assert reasons(first, cycle(first)) == []


def test_becoming_ready_and_losing_it_are_events() -> None:
    first = cycle(SpeculativeDeploymentStatus())
    ready = cycle(first, workload=Workload.from_deployment(ready_deployment(1)))
    assert reasons(first, ready) == ["Ready"]
    lost = cycle(ready, workload=Workload.from_deployment(ready_deployment(0)))
    assert reasons(ready, lost) == ["NotReady"]


def test_incompatible_update_warns_once() -> None:
    first = cycle(SpeculativeDeploymentStatus())
    bad = Verdict("False", "VocabSizeMismatch", "vocab 151936 vs 128256")
    blocked = cycle(first, compatible=bad, applied=False, speculation=None)
    events = events_for(first, blocked)
    assert [(e.type, e.reason) for e in events] == [("Warning", "VocabSizeMismatch")]
    assert "151936" in events[0].message
    assert reasons(blocked, cycle(blocked, compatible=bad, applied=False, speculation=None)) == []


def test_hub_outage_warns_on_transition_to_unknown() -> None:
    first = cycle(SpeculativeDeploymentStatus())
    down = Verdict("Unknown", "HubUnavailable", "503 from the Hub")
    assert reasons(first, cycle(first, resolved=down, applied=False, speculation=None)) == [
        "HubUnavailable"
    ]


def test_switching_speculation_and_scaling_are_events() -> None:
    first = cycle(SpeculativeDeploymentStatus())
    off = cycle(
        first,
        speculation=SpeculationVerdict(False, None, "ModeNever", "off"),
        desired_replicas=2,
    )
    assert reasons(first, off) == ["SpeculationDisabled", "Scaled"]


def test_new_revision_is_announced_as_resolved_again() -> None:
    from specops.api.v1alpha1 import ResolvedModelStatus, ResolvedStatus

    a = ResolvedStatus(verifier=ResolvedModelStatus(model="m", revision="main", sha="a" * 40))
    b = ResolvedStatus(verifier=ResolvedModelStatus(model="m", revision="v2", sha="b" * 40))
    first = cycle(SpeculativeDeploymentStatus(), resolved_models=a)
    assert reasons(first, cycle(first, resolved_models=b)) == ["ModelsResolved"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_limiter_drops_repeats_within_the_window_and_caps_bursts() -> None:
    clock = FakeClock()
    limiter = EventLimiter(window=60, burst=3, clock=clock)
    assert limiter.allow("u", "Ready", "1/1")
    assert not limiter.allow("u", "Ready", "1/1")
    assert limiter.allow("u", "NotReady", "0/1")
    assert limiter.allow("u", "Ready", "2/2")
    assert not limiter.allow("u", "Other", "x"), "a fourth distinct event in the window is a storm"
    assert limiter.allow("v", "Ready", "1/1"), "limits are per object"
    clock.now = 61
    assert limiter.allow("u", "Ready", "1/1")


def test_event_body_points_at_the_resource() -> None:
    owner = {
        "apiVersion": "serving.specops.dev/v1alpha1",
        "kind": "SpeculativeDeployment",
        "metadata": {"name": "qwen", "namespace": "ns", "uid": "u-1"},
    }
    body = event_body(owner, "Warning", "Incompatible", "x" * 5000, now=T0, instance="op-1")
    assert body["involvedObject"]["uid"] == "u-1"
    assert body["metadata"]["namespace"] == "ns"
    assert body["metadata"]["name"].startswith("qwen.")
    assert len(body["message"]) == 1024
    later = event_body(
        owner, "Warning", "Incompatible", "x", now=T0 + timedelta(seconds=1), instance="op-1"
    )
    assert later["metadata"]["name"] != body["metadata"]["name"]


def test_limiter_forgets_what_is_older_than_the_window() -> None:
    clock = FakeClock()
    limiter = EventLimiter(window=60, burst=3, clock=clock)
    for i in range(500):
        assert limiter.allow(f"uid-{i}", "Ready", f"message {i}")
    assert len(limiter) == 1000
    clock.now = 61
    assert limiter.allow("late", "Ready", "x")
    assert len(limiter) == 2, "everything from before the window is gone"
    assert limiter.allow("uid-0", "Ready", "message 0"), "and may be sent again"


def test_limiter_memory_is_capped_within_one_window() -> None:
    clock = FakeClock()
    limiter = EventLimiter(window=600, burst=3, max_keys=100, clock=clock)
    for i in range(1000):
        clock.now = i * 0.01
        limiter.allow(f"uid-{i}", "Reason", f"distinct message {i}")
    assert len(limiter) <= 200
    assert not limiter.allow("uid-999", "Reason", "distinct message 999"), "recent ones kept"
