"""Speculation on/off and k through decide(): each row is a story told by observations over time."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from policy_support import observed, toy_spec

from specops.policy.decide import Decision, PolicySpec, PolicyState, decide, initial_state
from specops.policy.observations import Observation

PERIOD = 15.0
SATURATED = 400.0


@dataclass
class Run:
    """Drive decide() every PERIOD seconds; the pods run what the last decision said."""

    spec: PolicySpec
    state: PolicyState
    now: float = 0.0
    history: list[Observation] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def step(self, running: float, alpha: float = 0.75, seconds: float = PERIOD) -> Decision:
        end = self.now + seconds
        decision = self.decisions[-1] if self.decisions else None
        while self.now < end:
            self.now += PERIOD
            k = self.state.speculation.current_k
            self.history.append(observed(self.now, running, k=k, alpha=alpha))
            decision = decide(self.spec, self.history[-40:], self.state, self.now)
            self.state = decision.state
            self.decisions.append(decision)
        assert decision is not None
        return decision

    def switches(self) -> list[float]:
        return [
            d.state.speculation.last_switch_at or 0 for d in self.decisions if d.speculation_changed
        ]


def start(**overrides: object) -> Run:
    spec = toy_spec(**overrides)
    return Run(spec, initial_state(spec, replicas=1))


def test_low_load_keeps_speculation_on_with_k_from_the_measured_profile() -> None:
    run = start()
    d = run.step(running=1, alpha=0.8, seconds=600)
    assert d.speculation_active
    # the toy replica at batch 1 with alpha 0.8 is best at a k between 3 and 5
    assert 3 <= d.num_speculative_tokens <= 5
    best = max(d.predictions, key=lambda p: p.tokens_per_s)
    assert d.num_speculative_tokens == best.k or d.state.speculation.reason == "WithinHysteresis"


def test_saturation_turns_speculation_off_after_the_dwell_and_it_stays_off() -> None:
    run = start()
    run.step(running=1, seconds=120)
    assert run.state.speculation.active
    run.step(running=SATURATED, seconds=PERIOD)
    assert run.state.speculation.active, "a single window must not switch (dwell)"
    d = run.step(running=SATURATED, seconds=120)
    assert not d.speculation_active
    assert d.state.speculation.reason == "SpeculationCostsThroughput"
    switched_at = d.state.speculation.last_switch_at
    assert switched_at is not None and switched_at - 120 <= 60 + 2 * PERIOD
    run.step(running=SATURATED, seconds=1800)
    assert not run.state.speculation.active
    assert len(run.switches()) == 1


def test_when_load_falls_speculation_comes_back_after_dwell_and_min_interval() -> None:
    run = start()
    run.step(running=SATURATED, seconds=300)
    assert not run.state.speculation.active
    off_at = run.state.speculation.last_switch_at
    assert off_at is not None
    run.step(running=1, seconds=PERIOD)
    assert not run.state.speculation.active
    d = run.step(running=1, seconds=600)
    assert d.speculation_active
    on_at = d.state.speculation.last_switch_at
    assert on_at is not None and on_at - off_at >= 300
    assert d.state.speculation.reason == "SpeculationPays"


def test_collapsed_acceptance_turns_speculation_off_naming_acceptance() -> None:
    run = start(min_acceptance_rate=0.3)
    run.step(running=1, alpha=0.8, seconds=360)
    assert run.state.speculation.active
    d = run.step(running=1, alpha=0.05, seconds=120)
    assert not d.speculation_active
    assert d.state.speculation.reason == "AcceptanceBelowFloor"
    assert "Acceptance rate" in d.state.speculation.message


def test_while_off_the_profile_decays_toward_the_prior_and_speculation_returns() -> None:
    run = start(min_acceptance_rate=0.3)
    run.step(running=1, alpha=0.8, seconds=360)
    run.step(running=1, alpha=0.05, seconds=120)
    assert not run.state.speculation.active
    # soon after, the believed profile is still the collapsed one: stays off
    run.step(running=1, seconds=300)
    assert not run.state.speculation.active
    # after several half-lives the drafter prior dominates and speculation returns
    run.step(running=1, seconds=3600)
    assert run.state.speculation.active


@pytest.mark.parametrize(
    ("mode", "running", "active"),
    [("Always", 250, True), ("Never", 1, False)],
    ids=["Always keeps speculation on at saturation", "Never keeps it off at batch one"],
)
def test_pinned_modes_ignore_the_cost_model(mode: str, running: float, active: bool) -> None:
    run = start(mode=mode)
    d = run.step(running=running, seconds=900)
    assert d.speculation_active is active
    assert d.state.speculation.reason == ("PinnedAlways" if active else "PinnedNever")


@pytest.mark.parametrize(
    ("first", "second"),
    [(1, SATURATED), (SATURATED, 1)],
    ids=["on then off is at least the minimum interval apart", "off then on likewise"],
)
def test_switches_never_come_closer_than_the_minimum_interval(first: float, second: float) -> None:
    run = start()
    for _ in range(6):
        run.step(running=first, seconds=90)
        run.step(running=second, seconds=90)
    times = run.switches()
    assert times, "load alternating between extremes should switch at least once"
    assert all(b - a >= 300 for a, b in itertools.pairwise(times))


def test_a_small_predicted_gain_stays_within_the_hysteresis_band() -> None:
    run = start()
    run.step(running=1, seconds=300)
    k = run.state.speculation.k
    # find a load where some other setting is better, but by less than 20%
    for running in range(2, 120):
        d = run.step(running=running, seconds=PERIOD)
        best = max(d.predictions, key=lambda p: p.tokens_per_s)
        now = next(p for p in d.predictions if p.k == d.num_speculative_tokens)
        if best.k != now.k and best.tokens_per_s / now.tokens_per_s - 1 < 0.2:
            assert d.state.speculation.reason == "WithinHysteresis"
            assert d.state.speculation.k == k or d.speculation_changed is False
            return
    pytest.fail("no load with a small gain found")
