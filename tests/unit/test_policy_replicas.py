"""Replica decisions: Knative-style windows, stabilised scale-down, credit, reversal bound."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from specops.policy.observations import Observation
from specops.policy.replicas import ReplicaSettings, ReplicaState, evaluate

SETTINGS = ReplicaSettings(
    stable_window_s=60, panic_window_s=6, panic_threshold=2.0, scale_down_stabilization_s=300
)


@dataclass
class Autoscaler:
    """One observation of total demand every ``tick`` s; new replicas are ready at once."""

    desired: int = 1
    target: float = 10
    lo: int = 1
    hi: int = 10
    starting: int = 0
    unschedulable: int = 0
    now: float = 0.0
    tick: float = 2.0
    history: list[Observation] = field(default_factory=list)
    state: ReplicaState = field(default_factory=lambda: ReplicaState(desired=1))
    changes: list[tuple[float, int]] = field(default_factory=list)

    def run(self, demand: float, seconds: float) -> ReplicaState:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now += self.tick
            n = self.state.desired
            self.history.append(
                Observation(
                    at=self.now,
                    window_s=self.tick,
                    replicas_reporting=n,
                    running_per_replica=demand / n,
                )
            )
            self.history = self.history[-200:]
            out = evaluate(
                state=self.state,
                observations=self.history,
                target_per_replica=self.target,
                min_replicas=self.lo,
                max_replicas=self.hi,
                ready=n - self.starting,
                starting=self.starting,
                unschedulable=self.unschedulable,
                settings=SETTINGS,
                now=self.now,
            )
            if out.changed:
                self.changes.append((self.now, out.state.desired))
            self.state = out.state
        return self.state


def test_sustained_load_above_target_scales_to_demand_over_target() -> None:
    a = Autoscaler()
    a.run(10, 120)
    state = a.run(35, 120)
    assert state.desired == 4
    assert state.reason in {"ScaleUp", "Steady"}


def test_a_sustained_1_5x_step_is_acted_on_within_the_stable_window() -> None:
    a = Autoscaler(state=ReplicaState(desired=4))
    a.run(40, 120)
    start = a.now
    a.run(60, 90)
    first_up = next(t for t, n in a.changes if t > start and n > 4)
    assert first_up - start <= 30


def test_a_2x_burst_is_acted_on_within_the_panic_window() -> None:
    a = Autoscaler(state=ReplicaState(desired=2))
    a.run(20, 120)
    start = a.now
    state = a.run(80, 10)
    assert state.desired >= 8
    first_up = next(t for t, n in a.changes if t > start)
    assert first_up - start <= 10
    assert state.reason == "ScaleUpPanic" or a.state.panic_since is not None


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    a = Autoscaler()
    a.run(50, 120)
    assert a.state.desired == 5
    drop = a.now
    a.run(10, 240)
    assert a.state.desired == 5, "no scale-down inside the 300 s window"
    a.run(10, 120)
    assert a.state.desired == 1
    down_at = next(t for t, n in a.changes if t > drop)
    assert down_at - drop >= 300 - a.tick


def test_at_most_one_direction_reversal_per_stabilisation_window() -> None:
    a = Autoscaler()
    for _ in range(6):
        a.run(60, 90)
        a.run(5, 330)
    directions = [
        1 if n2 > n1 else -1 for (_, n1), (_, n2) in zip(a.changes, a.changes[1:], strict=False)
    ]
    times = [t for t, _ in a.changes[1:]]
    reversals = [
        t for t, d0, d1 in zip(times[1:], directions, directions[1:], strict=False) if d0 != d1
    ]
    assert len(reversals) >= 2, "the alternating load should reverse direction repeatedly"
    for first, second in itertools.pairwise(reversals):
        assert second - first >= 300


def test_unschedulable_pods_stop_further_requests_for_replicas() -> None:
    a = Autoscaler(state=ReplicaState(desired=3), unschedulable=1)
    state = a.run(90, 60)
    assert state.desired == 3
    assert state.reason == "GPUCapacityExhausted"


def test_replicas_still_starting_absorb_the_queue_that_builds_meanwhile() -> None:
    # 2 replicas ready, 2 starting; 40 running + 20 queued (target 10 per replica)
    obs = [
        Observation(
            at=t, window_s=2, replicas_reporting=2, running_per_replica=20, waiting_per_replica=10
        )
        for t in range(2, 62, 2)
    ]
    with_credit = evaluate(
        state=ReplicaState(desired=4),
        observations=obs,
        target_per_replica=10,
        min_replicas=1,
        max_replicas=20,
        ready=2,
        starting=2,
        unschedulable=0,
        settings=SETTINGS,
        now=60,
    )
    without = evaluate(
        state=ReplicaState(desired=4),
        observations=obs,
        target_per_replica=10,
        min_replicas=1,
        max_replicas=20,
        ready=4,
        starting=0,
        unschedulable=0,
        settings=SETTINGS,
        now=60,
    )
    assert with_credit.state.desired == 4
    assert without.state.desired == 6


@pytest.mark.parametrize(
    ("demand", "expected"),
    [(0, 2), (1000, 5)],
    ids=["no load never goes below minReplicas", "huge load never goes above maxReplicas"],
)
def test_the_count_stays_within_bounds(demand: float, expected: int) -> None:
    a = Autoscaler(lo=2, hi=5, state=ReplicaState(desired=3))
    assert a.run(demand, 900).desired == expected


def test_no_observation_in_the_window_holds_the_count() -> None:
    out = evaluate(
        state=ReplicaState(desired=3),
        observations=[],
        target_per_replica=10,
        min_replicas=1,
        max_replicas=10,
        ready=3,
        starting=0,
        unschedulable=0,
        settings=SETTINGS,
        now=100,
    )
    assert out.state.desired == 3 and not out.changed
    assert out.state.reason == "MetricsUnavailable"


def test_a_backlog_counts_as_the_rate_that_drains_it_not_as_concurrency() -> None:
    # 2 ready + 2 starting, each ready replica 10 running at target; 400 queued at the front.
    # 20 requests/s finish, so a request takes 1 s: draining 400 in 60 s is ~7 more requests
    # in the system, not 400.
    obs = [
        Observation(
            at=t,
            window_s=2,
            replicas_reporting=2,
            running_per_replica=10,
            waiting_per_replica=200,
            requests_per_s=20,
        )
        for t in range(2, 62, 2)
    ]
    common = {
        "state": ReplicaState(desired=4),
        "observations": obs,
        "target_per_replica": 10,
        "min_replicas": 1,
        "max_replicas": 100,
        "ready": 2,
        "starting": 2,
        "unschedulable": 0,
        "now": 60,
    }
    drained = evaluate(settings=SETTINGS, **common)  # type: ignore[arg-type]
    raw = evaluate(settings=ReplicaSettings(queue_drain_s=0), **common)  # type: ignore[arg-type]
    assert drained.state.desired == 4
    assert raw.state.desired > 20
