"""A small roofline for policy tests, so they do not depend on the twin's calibration.

The cost model takes any ``(batch, context, k, efficiencies) -> step seconds``
function; this one has the same shape as ``specops.perfmodel`` (weights and
KV read at the memory bandwidth, FLOPs at the compute rate, a fixed overhead,
a drafter pass per drafted token) with Llama-3.1-8B-on-H100-like constants.
"""

from __future__ import annotations

from dataclasses import dataclass

from specops.policy.acceptance import AcceptanceProfile
from specops.policy.costmodel import CostModel
from specops.policy.decide import PolicySpec
from specops.policy.observations import Acceptance, Observation
from specops.policy.replicas import ReplicaSettings
from specops.policy.speculation import SpeculationSettings


@dataclass(frozen=True)
class ToyEff:
    bandwidth: float = 0.8
    compute: float = 0.25
    overhead_s: float = 0.0012
    draft_s: float = 0.0009


def toy_step(batch: float, context: float, k: int, eff: ToyEff) -> float:
    tokens = batch * (1 + k)
    memory = (16e9 + batch * context * 131072) / (3.35e12 * eff.bandwidth)
    compute = 2 * 8e9 * tokens / (989e12 * eff.compute)
    draft = k * (eff.draft_s + batch * 1e-6) if k else 0.0
    return max(memory, compute) + eff.overhead_s + draft


def toy_spec(**overrides: object) -> PolicySpec:
    base: dict[str, object] = {
        "cost": CostModel(toy_step, ToyEff()),
        "prior": AcceptanceProfile.flat(0.75),
        "prior_context": 1024.0,
        "max_batch": 256,
        "speculation": SpeculationSettings(
            dwell_s=60, min_switch_interval_s=300, restart_s=60, amortisation_s=3600
        ),
        "replicas": ReplicaSettings(),
    }
    base.update(overrides)
    return PolicySpec(**base)  # type: ignore[arg-type]


def accepted(alpha: float, k: int, drafts_per_s: float = 10.0) -> Acceptance:
    per_pos = tuple(alpha ** (i + 1) for i in range(k))
    al = 1 + sum(per_pos)
    return Acceptance(
        acceptance_rate=(al - 1) / k,
        mean_acceptance_length=al,
        per_position=per_pos,
        drafts_per_s=drafts_per_s,
    )


def observed(
    at: float,
    running: float,
    *,
    k: int = 0,
    alpha: float = 0.75,
    replicas: int = 1,
    waiting: float = 0.0,
    eff: ToyEff | None = None,
) -> Observation:
    """What Prometheus would show of the toy replica at this load."""
    step = toy_step(max(running, 1.0), 1024.0, k, eff or ToyEff())
    return Observation(
        at=at,
        window_s=15.0,
        replicas_reporting=replicas,
        running_per_replica=running,
        waiting_per_replica=waiting,
        mean_itl_s=step if running > 0 else None,
        acceptance=accepted(alpha, k) if k and running > 0 else None,
        num_speculative_tokens=k,
    )
