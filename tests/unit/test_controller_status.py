"""Status building: conditions, Ready from the child Deployment, stable transition times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from specops.api.conditions import get_condition
from specops.api.v1alpha1 import SpeculativeDeploymentStatus
from specops.controller.status import (
    GENERATION_ANNOTATION,
    Findings,
    SpeculationVerdict,
    Verdict,
    Workload,
    build_status,
    parse_status,
    ready_verdict,
    status_patch,
    to_wire,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
OK = Verdict("True", "Resolved", "both pinned")
COMPATIBLE = Verdict("True", "Compatible", "tp 1")


def deployment(
    *,
    desired: int = 1,
    available: int = 0,
    updated: int | None = None,
    generation: int = 1,
    observed: int = 1,
    rendered: int | None = 1,
    deadline: bool = False,
) -> dict[str, Any]:
    conditions = []
    if deadline:
        conditions.append(
            {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "timed out"}
        )
    annotations = {GENERATION_ANNOTATION: str(rendered)} if rendered is not None else {}
    return {
        "metadata": {"generation": generation, "annotations": annotations},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": observed,
            "replicas": desired,
            "readyReplicas": available,
            "availableReplicas": available,
            "updatedReplicas": desired if updated is None else updated,
            "conditions": conditions,
        },
    }


def findings(**kw: Any) -> Findings:
    base: dict[str, Any] = {
        "generation": 1,
        "resolved": OK,
        "compatible": COMPATIBLE,
        "applied": True,
        "speculation": SpeculationVerdict(True, 3, "ModeAlways", "on"),
        "desired_replicas": 1,
    }
    base.update(kw)
    return Findings(**base)


@pytest.mark.parametrize(
    ("work", "applied", "status", "reason"),
    [
        pytest.param(
            deployment(available=1), True, "True", "Available", id="all-replicas-available-is-ready"
        ),
        pytest.param(
            deployment(available=0),
            True,
            "False",
            "ReplicasNotAvailable",
            id="no-replica-available-is-not-ready",
        ),
        pytest.param(
            deployment(desired=2, available=1, updated=1),
            True,
            "False",
            "RollingOut",
            id="half-rolled-out-is-not-ready",
        ),
        pytest.param(
            deployment(available=1, observed=0),
            True,
            "False",
            "RollingOut",
            id="unobserved-spec-change-is-not-ready",
        ),
        pytest.param(
            deployment(desired=0),
            True,
            "True",
            "ScaledToZero",
            id="zero-replicas-is-ready-scaled-to-zero",
        ),
        pytest.param(
            deployment(available=0, deadline=True),
            True,
            "False",
            "ProgressDeadlineExceeded",
            id="stuck-rollout-says-deadline-exceeded",
        ),
        pytest.param(None, True, "False", "Creating", id="applied-but-not-yet-seen-is-creating"),
        pytest.param(
            None, False, "False", "NoWorkload", id="blocked-without-deployment-has-no-workload"
        ),
        pytest.param(
            deployment(available=1),
            False,
            "True",
            "AvailableOldGeneration",
            id="blocked-spec-keeps-old-generation-serving",
        ),
    ],
)
def test_ready_follows_the_child_deployment(
    work: dict[str, Any] | None, applied: bool, status: str, reason: str
) -> None:
    verdict = ready_verdict(findings(applied=applied, workload=Workload.from_deployment(work)))
    assert (verdict.status, verdict.reason) == (status, reason)


def test_blocked_spec_message_names_the_generation_that_keeps_serving() -> None:
    blocked = findings(
        generation=3,
        applied=False,
        compatible=Verdict("False", "VocabSizeMismatch", "drafter vocab differs"),
        workload=Workload.from_deployment(deployment(available=1, rendered=2)),
    )
    verdict = ready_verdict(blocked)
    assert "serving generation 2" in verdict.message
    assert "generation 3 is not applied" in verdict.message
    assert "VocabSizeMismatch" in verdict.message


def test_transition_time_only_moves_when_status_changes() -> None:
    first = build_status(
        SpeculativeDeploymentStatus(),
        findings(workload=Workload.from_deployment(deployment(available=0))),
        now=T0,
    )
    later = T0 + timedelta(minutes=5)
    same = build_status(
        first, findings(workload=Workload.from_deployment(deployment(available=0))), now=later
    )
    assert to_wire(same) == to_wire(first)
    ready = build_status(
        same, findings(workload=Workload.from_deployment(deployment(available=1))), now=later
    )
    cond = get_condition(ready.conditions, "Ready")
    resolved = get_condition(ready.conditions, "ModelsResolved")
    assert cond is not None and cond.status == "True" and cond.last_transition_time == later
    assert resolved is not None and resolved.last_transition_time == T0


def test_status_carries_generation_counts_and_speculation() -> None:
    new = build_status(
        SpeculativeDeploymentStatus(),
        findings(generation=7, workload=Workload.from_deployment(deployment(available=1))),
        now=T0,
    )
    wire = to_wire(new)
    assert wire["observedGeneration"] == 7
    assert wire["replicas"] == 1 and wire["readyReplicas"] == 1
    assert wire["speculation"]["active"] is True
    assert wire["speculation"]["numSpeculativeTokens"] == 3
    assert [c["type"] for c in wire["conditions"]] == [
        "ModelsResolved",
        "Compatible",
        "SpeculationActive",
        "Ready",
    ]
    assert all(c["observedGeneration"] == 7 for c in wire["conditions"])


def test_a_blocked_update_keeps_reporting_the_running_speculation() -> None:
    running = build_status(
        SpeculativeDeploymentStatus(),
        findings(workload=Workload.from_deployment(deployment(available=1))),
        now=T0,
    )
    blocked = build_status(
        running,
        findings(
            generation=2,
            applied=False,
            speculation=None,
            compatible=Verdict("False", "HeadsNotDivisible", "64 heads, TP 3"),
            workload=Workload.from_deployment(deployment(available=1)),
        ),
        now=T0 + timedelta(minutes=1),
    )
    spec = get_condition(blocked.conditions, "SpeculationActive")
    assert spec is not None and (spec.status, spec.reason) == ("True", "Unchanged")
    assert blocked.speculation == running.speculation


def test_status_patch_removes_keys_no_longer_reported() -> None:
    new = SpeculativeDeploymentStatus(observed_generation=1)
    patch = status_patch({"observedGeneration": 0, "plan": {"x": 1}, "kopf": {}}, new)
    assert patch["plan"] is None and patch["kopf"] is None
    assert patch["observedGeneration"] == 1


def test_unreadable_stored_status_counts_as_empty() -> None:
    assert parse_status({"conditions": "garbage"}) == SpeculativeDeploymentStatus()
