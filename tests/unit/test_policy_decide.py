"""decide(): missing metrics, the ITL objective, the dynamic table, random-input invariants."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_support import observed, toy_spec

from specops.policy.decide import ClusterState, PolicyState, decide, initial_state
from specops.policy.observations import Observation


def steady(
    spec_kwargs: dict[str, object], total: float, seconds: float, replicas: int = 1
) -> PolicyState:
    spec = toy_spec(**spec_kwargs)
    state = initial_state(spec, replicas)
    history: list[Observation] = []
    t = 0.0
    while t < seconds:
        t += 15
        n = state.replicas.desired
        history.append(observed(t, total / n, k=state.speculation.current_k, replicas=n))
        state = decide(spec, history[-40:], state, t).state
    return state


@pytest.mark.parametrize(
    "latest",
    [
        Observation.unavailable(at=600, window_s=15, reason="connection refused"),
        Observation(at=600, window_s=15, replicas_reporting=0, missing=("running: no series",)),
    ],
    ids=["Prometheus unreachable holds the state", "no replica reporting holds the state"],
)
def test_missing_metrics_keep_the_state_and_say_so(latest: Observation) -> None:
    spec = toy_spec(min_replicas=1, max_replicas=8)
    before = replace(steady({"min_replicas": 1, "max_replicas": 8}, 50, 300, replicas=5))
    history = [observed(t, 50, replicas=before.replicas.desired) for t in range(300, 600, 15)]
    d = decide(spec, [*history, latest], before, 600.0)
    assert d.state.replicas == before.replicas
    assert d.state.speculation == before.speculation
    assert not d.speculation_changed and not d.replicas_changed
    [cond] = d.conditions
    assert (cond.type, cond.status) == ("MetricsAvailable", "False")
    assert cond.reason in {"MetricsMissing", "NoObservations"}
    assert cond.message


def test_fresh_metrics_say_metrics_available() -> None:
    spec = toy_spec()
    d = decide(spec, [observed(15, 1, k=3)], initial_state(spec, 1), 15.0)
    [cond] = d.conditions
    assert (cond.type, cond.status, cond.reason) == ("MetricsAvailable", "True", "MetricsFresh")


def test_an_itl_objective_sets_the_target_concurrency_per_replica() -> None:
    # 200 requests in the system; time per output token must stay under 5 ms
    kwargs: dict[str, object] = {"min_replicas": 1, "max_replicas": 40, "target_itl_ms": 5.0}
    state = steady(kwargs, 200, 1200, 4)
    spec = toy_spec(**kwargs)
    per_replica = spec.cost.prior_model().max_batch_within(
        0.005, 1024, state.speculation.current_k, spec.prior
    )
    assert 0 < per_replica < 50
    assert state.replicas.desired == math.ceil(200 / per_replica)


def test_with_an_itl_objective_the_cheaper_of_spec_on_and_off_is_chosen() -> None:
    spec_kwargs = {"min_replicas": 1, "max_replicas": 64, "target_itl_ms": 6.0}
    state = steady(spec_kwargs, 80, 1800, 2)
    spec = toy_spec(**spec_kwargs)
    # speculation cuts time per token at small batches, so fewer replicas meet 6 ms with it on
    assert state.speculation.active
    fitted = spec.cost.prior_model()
    b_off = fitted.max_batch_within(0.006, 1024, 0, spec.prior)
    b_on = fitted.max_batch_within(0.006, 1024, state.speculation.k, spec.prior)
    assert b_on > b_off


def test_the_dynamic_table_is_rendered_when_vllm_supports_it() -> None:
    state = steady({"per_batch_size_table": True, "table_supported": True}, 4, 120)
    assert state.table is not None
    lo, hi = state.table[0][0], state.table[-1][1]
    assert (lo, hi) == (1, 256)
    assert state.table[0][2] >= 2, "small batches draft several tokens"
    assert state.table[-1][2] < state.table[0][2], "saturated batches draft fewer"


def test_no_table_when_vllm_cannot_take_one() -> None:
    state = steady({"per_batch_size_table": True, "table_supported": False}, 4, 120)
    assert state.table is None


observation_strategy = st.builds(
    lambda avail, running, waiting, itl, k, alpha, replicas: (
        avail,
        running,
        waiting,
        itl,
        k,
        alpha,
        replicas,
    ),
    st.booleans(),
    st.floats(0, 2000, allow_nan=False),
    st.floats(0, 5000, allow_nan=False),
    st.one_of(st.none(), st.floats(1e-4, 5.0)),
    st.integers(0, 6),
    st.floats(0, 1),
    st.integers(0, 50),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(observation_strategy, min_size=1, max_size=60),
    st.integers(1, 5),
    st.integers(0, 20),
    st.sampled_from(["Auto", "Always", "Never"]),
    st.one_of(st.none(), st.floats(1.0, 100.0)),
    st.one_of(st.none(), st.floats(0.0, 1.0)),
    st.booleans(),
)
def test_random_observations_never_raise_leave_bounds_or_toggle_faster_than_the_interval(
    seq: list[tuple[bool, float, float, float | None, int, float, int]],
    lo: int,
    extra: int,
    mode: str,
    itl_ms: float | None,
    floor: float | None,
    table: bool,
) -> None:
    from policy_support import accepted

    hi = lo + extra
    spec = toy_spec(
        min_replicas=lo,
        max_replicas=hi,
        mode=mode,
        target_itl_ms=itl_ms,
        min_acceptance_rate=floor,
        per_batch_size_table=table,
        table_supported=table,
    )
    state = initial_state(spec, lo)
    history: list[Observation] = []
    switches: list[float] = []
    toggles = 0
    t = 0.0
    for avail, running, waiting, itl, k, alpha, replicas in seq:
        t += 15
        if avail and replicas > 0:
            obs = Observation(
                at=t,
                window_s=15,
                replicas_reporting=replicas,
                running_per_replica=running,
                waiting_per_replica=waiting,
                mean_itl_s=itl,
                acceptance=accepted(alpha, k) if k else None,
                num_speculative_tokens=k,
            )
        else:
            obs = Observation.unavailable(t, 15, "test gap")
        history.append(obs)
        d = decide(spec, history[-30:], state, t, ClusterState(ready=state.replicas.desired))
        assert lo <= d.desired_replicas <= hi
        if d.speculation_changed:
            switches.append(t)
        if d.speculation_active != state.speculation.active:
            toggles += 1
        if mode == "Never":
            assert not d.speculation_active
        if mode == "Always":
            assert d.speculation_active
        state = d.state
    # every restart of the pods (on/off, k, a table render) respects the minimum interval
    gaps = [b - a for a, b in itertools.pairwise(switches)]
    assert all(g >= spec.speculation.min_switch_interval_s for g in gaps)
    if mode != "Auto":
        assert toggles == 0


def test_a_table_rendered_from_priors_is_refined_once_the_fit_sees_high_load() -> None:
    from policy_support import ToyEff

    from specops.policy.table import k_for_batch

    truth = ToyEff(compute=0.125)  # GEMMs twice as slow as the prior: invisible at batch 1
    spec = toy_spec(per_batch_size_table=True, table_supported=True)
    state = initial_state(spec, 1)
    history: list[Observation] = []
    renders: list[tuple[float, tuple[tuple[int, int, int], ...]]] = []
    t = 0.0
    for running, seconds in ((1, 120), (150, 900)):
        end = t + seconds
        while t < end:
            t += 15
            k = state.speculation.current_k
            if state.table is not None and state.speculation.active:
                k = k_for_batch(state.table, running)
            history.append(observed(t, running, k=k, eff=truth))
            d = decide(spec, history[-120:], state, t)
            if d.speculation_changed and d.state.table is not None:
                renders.append((t, d.state.table))
            state = d.state
    assert len(renders) == 2, renders
    (first_at, first), (second_at, second) = renders
    assert second_at - first_at >= spec.speculation.min_switch_interval_s
    # the refined table drafts less at the observed batch: verification is dearer than believed
    assert k_for_batch(second, 150) < k_for_batch(first, 150)
