"""The policy's cost model on the twin's physics (:mod:`specops.perfmodel`).

Only the formulas and the calibrated *priors* come from ``perfmodel``; the
efficiency terms are then fitted from observations (``costmodel``). The
simulator's actual parameters are never consulted, which is what the
benchmark's ``--perturb`` checks.
"""

from __future__ import annotations

import math

from specops.perfmodel import Efficiencies, Replica, decode_step_seconds
from specops.policy.costmodel import CostModel, StepFunction

FRACTIONS = ("bandwidth", "compute", "comm")
"""Efficiency terms that are fractions of datasheet speed (capped at 1)."""


def replica_step(replica: Replica) -> StepFunction[Efficiencies]:
    """Step time for a possibly fractional mean batch (linear between whole batches).

    Observed running-request gauges are averages over a window, so the batch
    the fit sees is rarely a whole number.
    """

    def step(batch: float, context: float, k: int, eff: Efficiencies) -> float:
        b = max(batch, 1.0)
        lo = math.floor(b)
        low = decode_step_seconds(replica, lo, context, k, eff)
        if b == lo:
            return low
        high = decode_step_seconds(replica, lo + 1, context, k, eff)
        return low + (b - lo) * (high - low)

    return step


def cost_model(replica: Replica, priors: Efficiencies | None = None) -> CostModel[Efficiencies]:
    """Cost model of ``replica`` starting from ``priors`` (default: its calibrated prior)."""
    eff = priors or replica.default_efficiencies()
    fields = [
        "bandwidth",
        "compute",
        "overhead_ms",
        "spec_overhead_ms",
        "drafter_step_ms",
        "spec_per_token_us",
        "per_seq_us",
    ]
    if replica.tp > 1:
        fields += ["comm", "comm_latency_us"]
    fitted = tuple(f for f in fields if getattr(eff, f) > 0)
    return CostModel(
        step=replica_step(replica),
        priors=eff,
        fields=fitted,
        upper=tuple((f, 1.0) for f in FRACTIONS),
    )
