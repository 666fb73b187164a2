"""What the policy is handed: a :class:`PolicySpec` and a restored state, built from the resource.

Pure (no I/O): the resource, its GPU plan, the resolved models' configs and
the loop's tuning go in; the policy's inputs come out. Keeping this apart
from :mod:`specops.controller.loop` (which does the I/O) is what lets the
translation be unit-tested table by table, and lets an operator restart
rebuild the policy's memory from ``status`` alone.

Why the state is restored from ``status``: the policy remembers when it last
switched speculation and scaled (minimum interval, stabilisation windows) and
what acceptance it last measured. A restarted operator that forgot these
would re-enable speculation the moment it came back, or scale down at once,
restarting pods for nothing. ``status.speculation`` and
``status.autoscaling`` already carry the last decision and its time, which is
the part that must survive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from specops import gpus, modelarch
from specops.api.v1alpha1 import PlanStatus, SpeculativeDeployment, SpeculativeDeploymentStatus
from specops.perfmodel import Replica
from specops.policy.acceptance import PRIOR_ALPHA, AcceptanceProfile
from specops.policy.decide import PolicySpec, PolicyState, initial_state
from specops.policy.physics import cost_model
from specops.policy.replicas import ReplicaSettings
from specops.policy.speculation import SpeculationSettings
from specops.settings import SettingsError

#: vLLM release that first understands ``num_speculative_tokens_per_batch_size``.
TABLE_MIN_VLLM = (0, 33, 0)
#: vLLM V1's default ``max_num_seqs``: the most sequences one replica batches.
DEFAULT_MAX_BATCH = 256


class LoopTuning(BaseSettings):
    """Time constants and thresholds of the closed loop (``SPECOPS_POLICY_*``).

    Production defaults follow the issue and the autoscalers users compare
    with (calibration.md: Knative's 60 s stable / 6 s panic windows, a 20%
    hysteresis band, 5 minutes between switches); tests and the demo shorten
    them so decisions fit in minutes.
    """

    model_config = SettingsConfigDict(env_prefix="SPECOPS_POLICY_", extra="ignore", frozen=True)

    observation_window_seconds: float = Field(
        default=60.0, gt=0, description="PromQL range of one observation (rates, means)."
    )
    stable_window_seconds: float = Field(
        default=60.0, gt=0, description="Autoscaler's stable window (mean concurrency)."
    )
    panic_window_seconds: float = Field(
        default=6.0, gt=0, description="Autoscaler's panic window (bursts)."
    )
    hysteresis: float = Field(
        default=0.20, ge=0, description="Predicted relative gain a speculation switch must clear."
    )
    dwell_seconds: float = Field(
        default=60.0, ge=0, description="How long a switch must keep paying before it is made."
    )
    min_switch_interval_seconds: float = Field(
        default=300.0, ge=0, description="Least time between two speculation switches."
    )
    restart_seconds: float = Field(
        default=180.0, ge=0, description="Time a replica serves nothing while vLLM restarts."
    )
    prior_half_life_seconds: float = Field(
        default=900.0,
        gt=0,
        description="Age at which a measured acceptance profile counts half against the prior.",
    )
    acceptance_prior: str = Field(
        default="chat",
        description="Task whose published acceptance is the drafter's prior (code, math, ...).",
    )
    namespace_label: str = Field(
        default="namespace", description="Prometheus label carrying the pod's namespace."
    )
    instance_label: str = Field(
        default="app_kubernetes_io_instance",
        description="Prometheus label carrying the SpeculativeDeployment's name.",
    )
    pod_label: str = Field(default="pod", description="Prometheus label carrying the pod name.")


def load_tuning(**overrides: Any) -> LoopTuning:
    """Environment plus overrides; a bad value is one clear :class:`SettingsError` line."""
    try:
        tuning = LoopTuning(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = [
            f"SPECOPS_POLICY_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        ]
        raise SettingsError("; ".join(lines)) from None
    if tuning.acceptance_prior not in PRIOR_ALPHA:
        raise SettingsError(
            f"SPECOPS_POLICY_ACCEPTANCE_PRIOR: {tuning.acceptance_prior!r} is not one of "
            + ", ".join(sorted(PRIOR_ALPHA))
        )
    return tuning


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def replica_of(
    plan: PlanStatus, verifier_config: Mapping[str, Any], drafter_config: Mapping[str, Any] | None
) -> Replica:
    """The cost model's replica: the planned GPU and TP, the resolved architectures."""
    gpu = gpus.lookup(plan.gpu_type) if plan.gpu_type else gpus.custom(plan.gpu_memory_gib)
    verifier = modelarch.from_config(dict(verifier_config))
    drafter = modelarch.from_config(dict(drafter_config)) if drafter_config else None
    return Replica.build(verifier, gpu, plan.tensor_parallel_size, drafter)


def scale_bounds(resource: SpeculativeDeployment) -> tuple[int, int]:
    """Replica bounds: a pinned ``spec.replicas`` (scale subresource) turns the autoscaler off."""
    spec = resource.spec
    if spec.replicas is not None:
        return spec.replicas, spec.replicas
    return spec.autoscaling.min_replicas, max(
        spec.autoscaling.max_replicas, spec.autoscaling.min_replicas
    )


def policy_spec(
    resource: SpeculativeDeployment,
    plan: PlanStatus,
    verifier_config: Mapping[str, Any],
    drafter_config: Mapping[str, Any] | None,
    tuning: LoopTuning,
    configured_k: int | None,
) -> PolicySpec:
    """Everything :func:`specops.policy.decide.decide` needs about this resource."""
    spec = resource.spec
    lo, hi = scale_bounds(resource)
    replica = replica_of(plan, verifier_config, drafter_config if spec.speculator else None)
    kv_tokens = plan.kv_budget_gib * 2**30 / plan.kv_bytes_per_token
    auto = spec.autoscaling
    return PolicySpec(
        cost=cost_model(replica),
        prior=AcceptanceProfile.flat(PRIOR_ALPHA[tuning.acceptance_prior]),
        mode=spec.speculation.mode,
        has_speculator=spec.speculator is not None,
        min_replicas=lo,
        max_replicas=hi,
        target_concurrency_per_replica=(
            float(auto.target_concurrency_per_replica)
            if auto.target_concurrency_per_replica
            else None
        ),
        target_itl_ms=auto.target_itl_milliseconds,
        min_acceptance_rate=spec.speculation.min_acceptance_rate,
        window_s=float(spec.speculation.window_seconds),
        per_batch_size_table=spec.speculation.per_batch_size_table,
        table_supported=_version(spec.vllm.version) >= TABLE_MIN_VLLM,
        configured_k=configured_k,
        kv_capacity_tokens=kv_tokens if kv_tokens > 0 else None,
        max_batch=DEFAULT_MAX_BATCH,
        speculation=SpeculationSettings(
            hysteresis=tuning.hysteresis,
            dwell_s=tuning.dwell_seconds,
            min_switch_interval_s=tuning.min_switch_interval_seconds,
            restart_s=tuning.restart_seconds,
            prior_half_life_s=tuning.prior_half_life_seconds,
        ),
        replicas=ReplicaSettings(
            stable_window_s=tuning.stable_window_seconds,
            panic_window_s=tuning.panic_window_seconds,
            scale_down_stabilization_s=float(auto.scale_down_stabilization_seconds),
        ),
    )


def flat_alpha_for(mean_acceptance_length: float, k: int) -> float | None:
    """The flat per-token acceptance that emits ``mean_acceptance_length`` tokens at ``k``.

    Status keeps vLLM's mean acceptance length, not the per-position profile;
    after a restart this flat profile is the best reading of it (EAGLE-3's
    conditional acceptance is nearly flat, calibration.md).
    """
    if k < 1 or not math.isfinite(mean_acceptance_length):
        return None
    target = min(max(mean_acceptance_length, 1.0), k + 1.0)
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if AcceptanceProfile.flat(mid).expected_tokens(k) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


@dataclass(frozen=True)
class Restored:
    """The policy state rebuilt from status, and whether status held a decision at all."""

    state: PolicyState
    from_status: bool


def restore_state(
    spec: PolicySpec, status: SpeculativeDeploymentStatus | None, now: float
) -> Restored:
    """The policy's state as the last decision left it (status), else the initial state.

    The scale-down recommendation history restarts with the stored replica
    count, so a restart never releases capacity before a full stabilisation
    window has passed.
    """
    stored_replicas = status.autoscaling.desired_replicas if status and status.autoscaling else None
    base = initial_state(spec, stored_replicas or spec.min_replicas)
    if status is None or (status.speculation is None and status.autoscaling is None):
        return Restored(base, False)
    sp = base.speculation
    stored = status.speculation
    if stored is not None and spec.mode == "Auto" and spec.has_speculator:
        k = stored.num_speculative_tokens or sp.k
        profile = None
        if stored.mean_acceptance_length is not None:
            alpha = flat_alpha_for(stored.mean_acceptance_length, k)
            profile = AcceptanceProfile.flat(alpha) if alpha is not None else None
        sp = replace(
            sp,
            active=stored.active,
            k=k,
            reason=stored.reason or sp.reason,
            last_switch_at=_epoch(stored.last_transition_time),
            profile=profile,
            profile_at=now if profile is not None else None,
        )
    rp = base.replicas
    scaled = status.autoscaling
    if scaled is not None and scaled.desired_replicas is not None:
        rp = replace(
            rp,
            reason=scaled.reason or rp.reason,
            last_scale_at=_epoch(scaled.last_scale_time),
            recommendations=((now, rp.desired),),
        )
    return Restored(replace(base, speculation=sp, replicas=rp), True)
