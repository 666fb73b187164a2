"""Replica count, Knative-style: stable and panic windows over observed concurrency.

Demand is the number of requests in the system (running + waiting) summed
over replicas; the wanted count is demand / target concurrency per replica.

* The stable window (default 60 s) averages demand for ordinary changes; the
  panic window (default 6 s) reacts to bursts: when it asks for at least
  ``panic_threshold`` times the current capacity, the autoscaler panics and
  scales up on the short window, never down, until a stable window passes
  without a new trigger.
* Scale-down is stabilised: the count follows the highest recommendation of
  the last ``scale_down_stabilization_s`` (GPU cold starts take minutes, so
  releasing capacity is the expensive mistake).
* Replicas still starting get credit: each is expected to absorb ``target``
  of the queue, so a queue that builds during a cold start does not order
  yet more replicas.
* At most one direction reversal per stabilisation window.
* When pods cannot be scheduled (no free GPUs) the count is not raised
  further: asking for more would only add Pending pods.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from specops.policy.observations import Observation


@dataclass(frozen=True)
class ReplicaSettings:
    """Windows and thresholds (seconds)."""

    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    scale_down_stabilization_s: float = 300.0
    queue_drain_s: float = 60.0
    """Waiting requests count as the arrival rate that drains them in this time (0: raw)."""
    burst_ratio: float = 1.5
    """Also panic when the panic window's demand is this multiple of the stable window's."""


@dataclass(frozen=True)
class ReplicaState:
    """What the autoscaler remembers."""

    desired: int
    reason: str = "Initial"
    message: str = ""
    last_scale_at: float | None = None
    last_direction: int = 0
    reversals: tuple[float, ...] = ()
    recommendations: tuple[tuple[float, int], ...] = ()
    panic_since: float | None = None


@dataclass(frozen=True)
class ReplicaOutcome:
    """Result of one evaluation."""

    state: ReplicaState
    changed: bool
    demand: float
    """Requests in the system over the stable window (after credit)."""


LatencyScale = Callable[[float], float]
"""Per-replica running batch -> (time per token at the target) / (time per token at it)."""


def _demand(
    obs: Observation,
    starting: int,
    target: float,
    scale: LatencyScale | None = None,
    drain_s: float = 0.0,
) -> float | None:
    if not obs.available or obs.running_per_replica is None:
        return None
    per, n = obs.running_per_replica, obs.replicas_reporting
    waiting = (obs.waiting_per_replica or 0.0) * n
    if per <= target or scale is None:
        # Little's law: the same arrivals served at the target's time per token keep
        # proportionally more requests in the system than a lightly loaded fleet shows.
        steady = per * n * (scale(per) if scale is not None and per > 0 else 1.0)
        backlog = waiting
    else:
        # Beyond the target batch requests are piling up: what exceeds it is backlog.
        steady = target * n
        backlog = (per - target) * n + waiting
    if drain_s > 0 and obs.requests_per_s and steady > 0:
        # A backlog is not a rate: draining it within drain_s is an extra arrival rate of
        # backlog / drain_s, i.e. (Little again) that rate times a request's time.
        request_s = steady / obs.requests_per_s
        backlog = min(backlog, backlog / drain_s * request_s)
    return steady + max(0.0, backlog - starting * target)


def _window_mean(
    observations: Sequence[Observation],
    now: float,
    window: float,
    starting: int,
    target: float,
    scale: LatencyScale | None = None,
    drain_s: float = 0.0,
) -> float | None:
    values = [
        d
        for o in observations
        if now - window - 1e-9 <= o.at <= now
        for d in [_demand(o, starting, target, scale, drain_s)]
        if d is not None
    ]
    if not values:
        return None
    return sum(values) / len(values)


def _want(demand: float, target: float) -> int:
    return max(0, math.ceil(demand / target - 1e-9))


def evaluate(
    *,
    state: ReplicaState,
    observations: Sequence[Observation],
    target_per_replica: float,
    min_replicas: int,
    max_replicas: int,
    ready: int,
    starting: int,
    unschedulable: int,
    settings: ReplicaSettings,
    now: float,
    latency_scale: LatencyScale | None = None,
) -> ReplicaOutcome:
    """Replicas wanted now, clamped to [min, max], with the reason.

    Knative assumes a request takes as long at any concurrency; an LLM's time
    per token grows with the batch, so a concurrency target met by a lightly
    loaded fleet is missed once the fleet shrinks. With ``latency_scale``
    (from the cost model) the observed running requests are first converted
    to what the same arrivals would keep in the system at the target batch,
    which removes that limit cycle.
    """
    target = max(target_per_replica, 1e-6)
    lo, hi = min_replicas, max(max_replicas, min_replicas)
    current = min(max(state.desired, lo), hi)
    # Two readings of the same windows: the raw count (requests piling up are the fastest
    # sign of overload) decides *whether* to panic; the drained one (a backlog counts as
    # the arrival rate that clears it in queue_drain_s) decides *how many* replicas, so a
    # queue that grows during a cold start does not order a fleet for the backlog.
    drain = settings.queue_drain_s

    def mean(window_s: float, drain_s: float) -> float | None:
        return _window_mean(observations, now, window_s, starting, target, latency_scale, drain_s)

    stable = mean(settings.stable_window_s, drain)
    panic = mean(settings.panic_window_s, drain)
    raw_stable = mean(settings.stable_window_s, 0.0)
    raw_panic = mean(settings.panic_window_s, 0.0)

    def keep(reason: str, message: str, demand: float = 0.0) -> ReplicaOutcome:
        changed = current != state.desired
        new = replace(state, desired=current, reason=reason, message=message)
        if changed:
            new = replace(new, last_scale_at=now)
        return ReplicaOutcome(new, changed, demand)

    if stable is None or raw_stable is None:
        return keep("MetricsUnavailable", "No load observed in the stable window; holding.")
    panic = stable if panic is None else panic
    raw_panic = raw_stable if raw_panic is None else raw_panic
    want_stable = _want(stable, target)
    want_panic = _want(panic, target)
    want_raw_panic = _want(raw_panic, target)
    capacity = max(ready + starting, 1)

    panic_since = state.panic_since
    burst = raw_panic >= settings.burst_ratio * raw_stable and raw_stable > 0
    if want_raw_panic > current and (
        want_raw_panic >= settings.panic_threshold * capacity or burst
    ):
        panic_since = now
    elif panic_since is not None and now - panic_since >= settings.stable_window_s:
        panic_since = None
    in_panic = panic_since is not None
    triggered = panic_since == now

    if in_panic:
        # act within the panic window: at least one more replica when it just triggered
        floor = current + 1 if triggered and want_raw_panic > current else current
        wanted, basis = max(want_panic, floor), "panic"
    else:
        wanted, basis = want_stable, "stable"
    window = settings.scale_down_stabilization_s
    # The first evaluation counts the running count as a recommendation, so a fresh
    # autoscaler does not drop capacity before it has watched a full window.
    history = state.recommendations or ((now, current),)
    recs = (*((t, n) for t, n in history if now - t < window), (now, wanted))
    if wanted < current:
        wanted = max(n for _, n in recs)
    wanted = min(max(wanted, lo), hi)
    state = replace(state, recommendations=recs[-256:], panic_since=panic_since)
    demand = panic if in_panic else stable
    summary = (
        f"{demand:.1f} requests in the system ({basis} window), target {target:.1f} per replica"
    )
    if wanted == current:
        reason = "PanicMode" if in_panic else "Steady"
        msg = f"Holding {current}: {summary}."
        new = replace(state, desired=current, reason=reason, message=msg)
        return ReplicaOutcome(new, current != state.desired, demand)

    direction = 1 if wanted > current else -1
    if direction > 0 and starting > 0 and wanted < settings.panic_threshold * capacity:
        # Credit for replicas still starting: the queue that builds during their cold start
        # is theirs to drain; only a demand beyond panic over the full capacity adds more.
        msg = (
            f"{starting} replica(s) still starting; holding {current} although {summary} "
            f"wants {wanted}."
        )
        new = replace(state, desired=current, reason="WaitingForStartingReplicas", message=msg)
        return ReplicaOutcome(new, current != state.desired, demand)
    if direction > 0 and unschedulable > 0:
        msg = (
            f"{unschedulable} replica(s) cannot be scheduled (no free GPUs); not asking for "
            f"more than {current} although {summary} wants {wanted}."
        )
        new = replace(state, desired=current, reason="GPUCapacityExhausted", message=msg)
        return ReplicaOutcome(new, current != state.desired, demand)
    reversals = tuple(t for t in state.reversals if now - t < settings.scale_down_stabilization_s)
    is_reversal = state.last_direction != 0 and direction != state.last_direction
    if is_reversal and reversals:
        msg = (
            f"Already reversed direction within {settings.scale_down_stabilization_s:.0f} s; "
            f"holding {current} although {summary} wants {wanted}."
        )
        new = replace(
            state, desired=current, reason="ReversalBound", message=msg, reversals=reversals
        )
        return ReplicaOutcome(new, current != state.desired, demand)
    if is_reversal:
        reversals = (*reversals, now)
    reason = ("ScaleUpPanic" if in_panic else "ScaleUp") if direction > 0 else "ScaleDown"
    msg = f"Scaling {current} -> {wanted}: {summary}."
    new = replace(
        state,
        desired=wanted,
        reason=reason,
        message=msg,
        last_scale_at=now,
        last_direction=direction,
        reversals=reversals,
    )
    return ReplicaOutcome(new, True, demand)
