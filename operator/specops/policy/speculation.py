"""Speculation on/off and k: switch only when it clearly pays, and not too often.

Every pod-level change restarts vLLM (replicas serve nothing while they
reload), so the rule is deliberately sticky:

* the predicted gain of the best candidate over the current setting must
  exceed the hysteresis band (default 20%) *and* repay the restart within the
  amortisation horizon;
* it must do so continuously for the dwell time;
* and at least the minimum interval (default 5 minutes) must have passed
  since the last switch.

Acceptance collapsing below the user's floor turns speculation off through
the same gates. While off, acceptance is not measured; the last measured
profile is blended toward the drafter's prior as it ages, and speculation
comes back when the prediction at the current load clears the band.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from specops.policy.acceptance import AcceptanceProfile, decay_weight
from specops.policy.costmodel import FittedCostModel, Prediction
from specops.policy.observations import Acceptance
from specops.policy.table import Band, k_for_batch

Mode = Literal["Auto", "Always", "Never"]

SWITCH_REASONS = frozenset(
    {
        "SpeculationPays",
        "SpeculationCostsThroughput",
        "SpeculativeTokensTuned",
        "AcceptanceBelowFloor",
        "ITLObjectiveFewerReplicas",
        "SpeculationTableRendered",
    }
)
"""Reasons that explain a setting; a later "nothing better" keeps them in status."""


@dataclass(frozen=True)
class SpeculationSettings:
    """Knobs of the on/off and k rule (seconds unless named otherwise)."""

    hysteresis: float = 0.20
    """Relative predicted gain a switch must clear."""
    dwell_s: float = 60.0
    """How long the gain (or low acceptance) must persist before acting."""
    min_switch_interval_s: float = 300.0
    restart_s: float = 180.0
    """Time a replica serves nothing while vLLM reloads (the cost of a switch)."""
    amortisation_s: float = 3600.0
    """Horizon over which a switch has to earn back its restart."""
    prior_half_life_s: float = 900.0
    """Age at which a measured profile counts half, the drafter prior the other half."""
    max_k: int = 5
    table_refresh_gain: float = 0.05
    """Predicted gain at the current load that justifies re-rendering the dynamic table."""

    @property
    def required_gain(self) -> float:
        """The bar a switch must clear: the band, or the restart's share of the horizon."""
        return max(self.hysteresis, self.restart_s / max(self.amortisation_s, 1.0))


@dataclass(frozen=True)
class SpeculationState:
    """What the pods run now and what the rule remembers between evaluations."""

    active: bool
    k: int
    """Drafted tokens while active (kept while off, as the k to come back with)."""
    reason: str = "Initial"
    message: str = ""
    last_switch_at: float | None = None
    pending_since: float | None = None
    """Since when some alternative has cleared the bar without interruption."""
    below_floor_since: float | None = None
    profile: AcceptanceProfile | None = None
    """Last measured conditional acceptance."""
    profile_at: float | None = None

    @property
    def current_k(self) -> int:
        """Drafted tokens now (0 when off)."""
        return self.k if self.active else 0


@dataclass(frozen=True)
class SpeculationOutcome:
    """Result of one evaluation."""

    state: SpeculationState
    changed: bool
    predictions: tuple[Prediction, ...]
    belief: AcceptanceProfile
    """The acceptance profile the predictions used."""


def believed_profile(
    state: SpeculationState, prior: AcceptanceProfile, now: float, half_life_s: float
) -> AcceptanceProfile:
    """The measured profile, blended toward the prior as it ages (only while unmeasured)."""
    if state.profile is None or state.profile_at is None:
        return prior
    return state.profile.decayed_toward(prior, decay_weight(now - state.profile_at, half_life_s))


def learn(state: SpeculationState, acceptance: Acceptance | None, now: float) -> SpeculationState:
    """Fold a window's measured acceptance into the state (only windows with drafts count)."""
    if acceptance is not None and acceptance.drafts_per_s > 0 and state.active:
        measured = AcceptanceProfile.from_observed(acceptance)
        if measured is not None:
            return replace(state, profile=measured, profile_at=now)
    return state


def candidates(
    model: FittedCostModel[Any],
    profile: AcceptanceProfile,
    batch: float,
    context: float,
    max_k: int,
) -> tuple[Prediction, ...]:
    """Predictions for k = 0 (off) .. max_k at the observed load."""
    return tuple(model.predict(batch, context, k, profile) for k in range(max_k + 1))


def _pct(x: float) -> str:
    return f"{100.0 * x:+.0f}%"


def evaluate(
    *,
    mode: Mode,
    has_speculator: bool,
    state: SpeculationState,
    model: FittedCostModel[Any],
    prior: AcceptanceProfile,
    batch: float,
    context: float,
    acceptance: Acceptance | None,
    min_acceptance_rate: float | None,
    settings: SpeculationSettings,
    now: float,
    preferred_k: int | None = None,
    preferred_reason: tuple[str, str] | None = None,
    table: tuple[Band, ...] | None = None,
) -> SpeculationOutcome:
    """Decide speculation for one evaluation period.

    ``preferred_k`` lets the replica planner override the throughput ranking
    when an ITL objective makes one setting need fewer replicas; it goes
    through the same dwell and interval gates.

    With a dynamic ``table`` vLLM already picks K per concurrency band, so
    "on" means the table's K at the observed batch; the pod-level question is
    only whether to run the drafter at all.
    """
    state = learn(state, acceptance, now)
    belief = (
        state.profile
        if state.active and state.profile is not None
        else believed_profile(state, prior, now, settings.prior_half_life_s)
    )
    assert belief is not None
    preds = candidates(model, belief, batch, context, settings.max_k)
    current_k = state.current_k
    if table is not None:
        table_k = k_for_batch(table, batch)
        current_k = table_k if state.active else 0

    def move(active: bool, k: int, reason: str, message: str) -> SpeculationOutcome:
        if active == state.active and (not active or k == state.k):
            new = replace(state, reason=reason, message=message, pending_since=None)
            return SpeculationOutcome(new, False, preds, belief)
        new = replace(
            state,
            active=active,
            k=k if active else state.k,
            reason=reason,
            message=message,
            last_switch_at=now,
            pending_since=None,
            below_floor_since=None,
        )
        return SpeculationOutcome(new, True, preds, belief)

    def hold(reason: str, message: str, pending_since: float | None) -> SpeculationOutcome:
        new = replace(state, reason=reason, message=message, pending_since=pending_since)
        return SpeculationOutcome(new, False, preds, belief)

    if not has_speculator:
        return move(False, state.k, "NoSpeculator", "No speculator is configured.")
    if mode == "Never":
        return move(False, state.k, "PinnedNever", "spec.speculation.mode is Never.")
    if mode == "Always":
        k = state.k if state.k > 0 else max(1, best_k(preds))
        return move(True, k, "PinnedAlways", f"spec.speculation.mode is Always; k={k}.")

    interval_ok = (
        state.last_switch_at is None or now - state.last_switch_at >= settings.min_switch_interval_s
    )
    # Acceptance floor: measured acceptance rate persistently below the user's floor.
    if (
        state.active
        and min_acceptance_rate is not None
        and acceptance is not None
        and acceptance.drafts_per_s > 0
    ):
        if acceptance.acceptance_rate < min_acceptance_rate:
            since = state.below_floor_since if state.below_floor_since is not None else now
            state = replace(state, below_floor_since=since)
            msg = (
                f"Acceptance rate {acceptance.acceptance_rate:.2f} is below the floor "
                f"{min_acceptance_rate:.2f} since {now - since:.0f} s."
            )
            if now - since >= settings.dwell_s and interval_ok:
                return move(False, state.k, "AcceptanceBelowFloor", msg)
            msg += " Waiting for dwell/interval."
            return hold("AcceptanceBelowFloor", msg, state.pending_since)
        state = replace(state, below_floor_since=None)

    by_k = {p.k: p for p in preds}
    if table is not None:
        # The table already holds the best K for this band (0 where drafting does not pay),
        # so "on" means the table's K and "off" never beats it on step time.
        target = table_k if preferred_k is None or preferred_k > 0 else 0
    else:
        target = preferred_k if preferred_k is not None else best_k(preds)
    if (
        target > 0
        and min_acceptance_rate is not None
        and belief.acceptance_rate(target) < min_acceptance_rate
    ):
        target = 0
    now_tp = by_k[current_k].tokens_per_s
    gain = by_k[target].tokens_per_s / now_tp - 1.0 if now_tp > 0 else 0.0
    describe = (
        f"at {batch:.1f} running per replica: k={current_k} predicts "
        f"{by_k[current_k].tokens_per_s:.0f} tok/s, k={target} {by_k[target].tokens_per_s:.0f} "
        f"tok/s ({_pct(gain)}, acceptance length {by_k[target].tokens_per_step:.2f})"
    )
    if target == current_k:
        # Keep the reason of the last switch (e.g. AcceptanceBelowFloor) while it still holds.
        if state.reason in SWITCH_REASONS:
            return hold(state.reason, state.message, None)
        return hold("Optimal", f"Current setting is the best predicted {describe}.", None)
    # An ITL objective that saves replicas is its own justification (cost, not tok/s).
    objective = (
        preferred_reason if preferred_k is not None and (target > 0) == (preferred_k > 0) else None
    )
    clears = objective is not None or gain > settings.required_gain
    if not clears:
        return hold(
            "WithinHysteresis",
            f"Gain below the {_pct(settings.required_gain)} bar {describe}.",
            None,
        )
    since = state.pending_since if state.pending_since is not None else now
    if now - since < settings.dwell_s:
        return hold("Dwelling", f"Waiting {settings.dwell_s:.0f} s of dwell {describe}.", since)
    if not interval_ok:
        return hold(
            "MinSwitchInterval",
            f"Last switch was under {settings.min_switch_interval_s:.0f} s ago {describe}.",
            since,
        )
    if objective is not None:
        reason = objective[0]
    elif target == 0:
        reason = "SpeculationCostsThroughput"
    elif current_k == 0:
        reason = "SpeculationPays"
    else:
        reason = "SpeculativeTokensTuned"
    message = f"Switching {describe}." + (f" {objective[1]}" if objective else "")
    if table is not None and target > 0:
        target = max(k for _, _, k in table)  # the speculative config's k covers the table
    return move(target > 0, target if target > 0 else state.k, reason, message)


def best_k(preds: tuple[Prediction, ...]) -> int:
    """The k with the highest predicted tokens/s (the smallest k on ties)."""
    best = preds[0]
    for p in preds[1:]:
        if p.tokens_per_s > best.tokens_per_s * (1 + 1e-9):
            best = p
    return best.k
