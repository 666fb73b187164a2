"""The policy's entry point: ``decide(spec, observations, state, now) -> Decision``.

Gather first, decide second (cert-manager's pattern): the controller turns
the resource and the cluster into a :class:`PolicySpec` and a
:class:`ClusterState`, the observe adapter turns Prometheus into
:class:`~specops.policy.observations.Observation` s, and this function returns
what to run plus a CamelCase reason and a message for every change. The clock
is an argument, so tests and the virtual-time benchmark drive it.

When the latest observation is missing or blind, nothing changes: the state
is kept and ``MetricsAvailable=False`` says why. A gap in the data is never a
reason to scale to the minimum or to toggle speculation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from specops.policy.acceptance import AcceptanceProfile
from specops.policy.costmodel import CostModel, FittedCostModel, OperatingPoint, Prediction
from specops.policy.observations import Observation
from specops.policy.replicas import ReplicaSettings, ReplicaState
from specops.policy.replicas import evaluate as evaluate_replicas
from specops.policy.speculation import (
    Mode,
    SpeculationSettings,
    SpeculationState,
    believed_profile,
    best_k,
    candidates,
    learn,
)
from specops.policy.speculation import evaluate as evaluate_speculation
from specops.policy.table import Band, k_for_batch, merge_tables, speculation_table

METRICS_AVAILABLE = "MetricsAvailable"


@dataclass(frozen=True)
class PolicySpec:
    """What the policy needs from the resource, its plan and the operator settings."""

    cost: CostModel[Any]
    prior: AcceptanceProfile
    """The drafter's prior per-position acceptance (by task or model card)."""
    mode: Mode = "Auto"
    has_speculator: bool = True
    min_replicas: int = 1
    max_replicas: int = 1
    target_concurrency_per_replica: float | None = None
    target_itl_ms: float | None = None
    """Objective on time per output token (what a user sees), in ms."""
    min_acceptance_rate: float | None = None
    window_s: float = 300.0
    per_batch_size_table: bool = False
    table_supported: bool = False
    configured_k: int | None = None
    prior_context: float = 1024.0
    """Mean context tokens per sequence to assume when KV usage does not tell."""
    kv_capacity_tokens: float | None = None
    """KV-cache tokens one replica holds (from the plan), to read context from KV usage."""
    max_batch: int = 256
    speculation: SpeculationSettings = field(default_factory=SpeculationSettings)
    replicas: ReplicaSettings = field(default_factory=ReplicaSettings)


@dataclass(frozen=True)
class ClusterState:
    """What Kubernetes says about the pods (not Prometheus)."""

    ready: int = 0
    starting: int = 0
    unschedulable: int = 0


@dataclass(frozen=True)
class Condition:
    """A condition to set, like ``metav1.Condition`` without the timestamps."""

    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class PolicyState:
    """Everything the policy remembers between evaluations (stored by the controller)."""

    speculation: SpeculationState
    replicas: ReplicaState
    metrics_available: bool = True
    table: tuple[Band, ...] | None = None


@dataclass(frozen=True)
class Decision:
    """What to run now, and why."""

    state: PolicyState
    speculation_changed: bool
    replicas_changed: bool
    conditions: tuple[Condition, ...]
    predictions: tuple[Prediction, ...] = ()
    model: FittedCostModel[Any] | None = None

    @property
    def speculation_active(self) -> bool:
        """vLLM should draft tokens."""
        return self.state.speculation.active

    @property
    def num_speculative_tokens(self) -> int:
        """k to render (0 when off)."""
        return self.state.speculation.current_k

    @property
    def desired_replicas(self) -> int:
        """Replica count to apply."""
        return self.state.replicas.desired

    @property
    def table(self) -> tuple[Band, ...] | None:
        """``num_speculative_tokens_per_batch_size`` to render (only while speculation is on)."""
        return self.state.table if self.state.speculation.active else None


def initial_state(spec: PolicySpec, replicas: int) -> PolicyState:
    """State before any observation: speculation per mode, k from the prior at batch 1."""
    clamped = min(max(replicas, spec.min_replicas), max(spec.max_replicas, spec.min_replicas))
    on = spec.has_speculator and spec.mode != "Never"
    if spec.configured_k is not None:
        k = spec.configured_k
    else:
        preds = candidates(
            spec.cost.prior_model(), spec.prior, 1.0, spec.prior_context, spec.speculation.max_k
        )
        k = max(1, best_k(preds))
    reason = "Initial" if on else ("PinnedNever" if spec.has_speculator else "NoSpeculator")
    return PolicyState(
        speculation=SpeculationState(active=on, k=k, reason=reason),
        replicas=ReplicaState(desired=clamped),
    )


def _context(spec: PolicySpec, obs: Observation) -> float:
    if (
        spec.kv_capacity_tokens is not None
        and obs.kv_cache_usage is not None
        and obs.running_per_replica
        and obs.running_per_replica >= 1
    ):
        return obs.kv_cache_usage * spec.kv_capacity_tokens / obs.running_per_replica
    return spec.prior_context


MAX_FIT_POINTS = 24
"""Windows the fit uses at most (evenly thinned, newest kept): bounds the cost of a decision."""


def operating_points(spec: PolicySpec, observations: Sequence[Observation]) -> list[OperatingPoint]:
    """Observed steps to fit: mean ITL is vLLM's time between a request's engine steps."""
    points = []
    for obs in observations:
        if (
            obs.available
            and obs.mean_itl_s is not None
            and obs.mean_itl_s > 0
            and obs.running_per_replica is not None
            and obs.running_per_replica >= 0.5
        ):
            points.append(
                OperatingPoint(
                    batch=obs.running_per_replica,
                    context=_context(spec, obs),
                    k=obs.num_speculative_tokens,
                    step_s=obs.mean_itl_s,
                )
            )
    if len(points) > MAX_FIT_POINTS:
        stride = len(points) / MAX_FIT_POINTS
        points = [points[len(points) - 1 - int(i * stride)] for i in range(MAX_FIT_POINTS)][::-1]
    return points


def _blind(state: PolicyState, latest: Observation | None, now: float) -> Decision:
    if latest is None:
        reason, message = "NoObservations", "No observation was made yet; holding the state."
    else:
        reason = "MetricsMissing"
        seen = "; ".join(latest.missing) or "no replica reported"
        message = f"Could not see the deployment's load ({seen}); holding the current state."
    cond = Condition(METRICS_AVAILABLE, "False", reason, message)
    return Decision(replace(state, metrics_available=False), False, False, (cond,))


def decide(
    spec: PolicySpec,
    observations: Sequence[Observation],
    state: PolicyState,
    now: float,
    cluster: ClusterState | None = None,
) -> Decision:
    """One evaluation: speculation, k, table and replicas, each with a reason."""
    cluster = cluster or ClusterState(ready=state.replicas.desired)
    recent = [o for o in observations if now - spec.window_s - 1e-9 <= o.at <= now + 1e-9]
    latest = recent[-1] if recent else None
    if latest is None or not latest.available:
        return _blind(state, latest, now)
    usable = [o for o in recent if o.available]

    # The fit uses every observation the caller kept (older operating points, e.g. with
    # another k, are what makes the terms identifiable); the window only bounds the load.
    model = spec.cost.fit(operating_points(spec, [o for o in observations if o.available]))
    # Load for the speculation decision: the stable window's mean running per replica.
    stable = [o for o in usable if o.at >= now - spec.replicas.stable_window_s - 1e-9] or [latest]
    batch = sum(o.running_per_replica or 0.0 for o in stable) / len(stable)
    contexts = [_context(spec, o) for o in stable]
    context = sum(contexts) / len(contexts)

    preferred_k: int | None = None
    preferred_reason: tuple[str, str] | None = None
    target = float(spec.target_concurrency_per_replica or spec.max_batch)
    sp = learn(state.speculation, latest.acceptance, now)
    if spec.target_itl_ms is not None:
        tpot = spec.target_itl_ms / 1000.0
        belief = (
            sp.profile
            if sp.active and sp.profile is not None
            else believed_profile(sp, spec.prior, now, spec.speculation.prior_half_life_s)
        )
        per_k = {
            k: model.max_batch_within(tpot, context, k, belief, spec.max_batch)
            for k in range(spec.speculation.max_k + 1)
        }
        k_on = max(range(1, spec.speculation.max_k + 1), key=lambda k: (per_k[k], -k))
        b_off, b_on = per_k[0], per_k[k_on]
        demand = sum(o.total_concurrency or 0.0 for o in stable) / len(stable)
        n_off = max(math.ceil(demand / b_off - 1e-9), spec.min_replicas) if b_off else math.inf
        n_on = max(math.ceil(demand / b_on - 1e-9), spec.min_replicas) if b_on else math.inf
        if spec.mode == "Auto" and spec.has_speculator and n_off != n_on:
            preferred_k = k_on if n_on < n_off else 0
            preferred_reason = (
                "ITLObjectiveFewerReplicas",
                f"To keep time per token under {spec.target_itl_ms:g} ms, speculation "
                f"{'on' if preferred_k else 'off'} needs {min(n_on, n_off)} replica(s) "
                f"instead of {max(n_on, n_off)}.",
            )
        b_now = per_k[sp.current_k]
        target = min(target, float(max(b_now, 1)))

    table_mode = spec.per_batch_size_table and spec.table_supported
    table = state.table
    if table_mode and (table is None or not sp.active):
        # while off (or before the first render) the table to come back with is re-derived
        table = speculation_table(
            model,
            believed_profile(sp, spec.prior, now, spec.speculation.prior_half_life_s),
            context,
            spec.speculation.max_k,
            spec.max_batch,
        )
    spec_out = evaluate_speculation(
        mode=spec.mode,
        has_speculator=spec.has_speculator,
        state=sp,
        model=model,
        prior=spec.prior,
        batch=batch,
        context=context,
        acceptance=latest.acceptance,
        min_acceptance_rate=spec.min_acceptance_rate,
        settings=spec.speculation,
        now=now,
        preferred_k=preferred_k,
        preferred_reason=preferred_reason,
        table=table if table_mode else None,
    )
    # Time per token at the target batch vs at the observed one, with what the pods run now.
    belief_now = spec_out.belief
    k_now = sp.current_k
    if table_mode and table is not None and sp.active:
        k_now = k_for_batch(table, batch)
    tpot_target = model.predict(target, context, k_now, belief_now).tpot_s

    def latency_scale(running: float) -> float:
        # Only inflates a lightly loaded fleet's count (replicas.py treats the excess above
        # the target batch as backlog).
        return max(1.0, tpot_target / model.predict(running, context, k_now, belief_now).tpot_s)

    rep_out = evaluate_replicas(
        state=state.replicas,
        observations=usable,
        target_per_replica=target,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        ready=cluster.ready,
        starting=cluster.starting,
        unschedulable=cluster.unschedulable,
        settings=spec.replicas,
        now=now,
        latency_scale=latency_scale,
    )
    if table_mode and spec_out.changed and spec_out.state.active:
        # a restart is happening anyway: render the table from the freshest model
        table = speculation_table(
            model, spec_out.belief, context, spec.speculation.max_k, spec.max_batch
        )
        top = max(k for _, _, k in table)
        spec_out = replace(spec_out, state=replace(spec_out.state, k=max(top, 1)))
    if not table_mode:
        table = None
    spec_changed = spec_out.changed
    settings = spec.speculation
    if (
        table_mode
        and table is not None
        and not spec_changed
        and spec_out.state.active
        and state.speculation.active
        and table == state.table
        and (
            state.speculation.last_switch_at is None
            or now - state.speculation.last_switch_at >= settings.min_switch_interval_s
        )
    ):
        # The table does not depend on the load, only on the fitted model and the measured
        # profile; as they learn (e.g. compute efficiency, invisible at batch 1) a fresh table
        # may be worth a restart. Same price as any switch, but a refinement, not a flip.
        derived = speculation_table(model, spec_out.belief, context, settings.max_k, spec.max_batch)
        # Learn only where the fit has seen data: bands above the largest observed batch keep
        # their K (the fit extrapolates there). And refinements only ever draft less: while a
        # band drafts nothing its speculation cost is not observed, and a fit drifting back
        # toward the priors must not flip it on again (that is a switch, through the band).
        seen = max((o.running_per_replica or 0.0) for o in observations if o.available)
        fresh = merge_tables(derived, table, up_to=int(seen), max_batch=spec.max_batch)
        if fresh != table:
            # the best predicted gain at a load the stable window actually saw
            gains = []
            for obs in stable:
                b = obs.running_per_replica or 1.0
                old_tp = model.predict(b, context, k_for_batch(table, b), spec_out.belief)
                new_tp = model.predict(b, context, k_for_batch(fresh, b), spec_out.belief)
                gains.append(new_tp.tokens_per_s / old_tp.tokens_per_s - 1)
            bar = max(settings.table_refresh_gain, settings.restart_s / settings.amortisation_s)
            if max(gains, default=0.0) > bar:
                table = fresh
    if table_mode and spec_out.state.active and state.speculation.active and table != state.table:
        # A first render (or a re-render while on) restarts the pods like any switch: it is
        # reported as a change and starts the minimum interval.
        top = max(k for _, _, k in table or ((0, 0, 1),))
        spec_out = replace(
            spec_out,
            state=replace(
                spec_out.state,
                k=max(top, 1),
                last_switch_at=now,
                reason="SpeculationTableRendered",
                message=f"Rendered num_speculative_tokens_per_batch_size {list(table or ())}.",
            ),
        )
        spec_changed = True
    fitted = "prior efficiencies" if model.points == 0 else f"fit on {model.points} windows"
    cond = Condition(
        METRICS_AVAILABLE,
        "True",
        "MetricsFresh",
        f"{latest.replicas_reporting} replica(s) reporting; cost model: {fitted} "
        f"(rms log error {model.rms_log_error:.3f}).",
    )
    new_state = PolicyState(
        speculation=spec_out.state,
        replicas=rep_out.state,
        metrics_available=True,
        table=table,
    )
    return Decision(
        state=new_state,
        speculation_changed=spec_changed,
        replicas_changed=rep_out.changed,
        conditions=(cond,),
        predictions=spec_out.predictions,
        model=model,
    )
