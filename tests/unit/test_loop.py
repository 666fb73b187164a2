"""The closed loop's translation and bookkeeping: pods, rollout, restore, events, blind cycles."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from specops.api.conditions import set_condition
from specops.api.v1alpha1 import (
    AutoscalingStatus,
    SpeculationStatus,
    SpeculativeDeployment,
    SpeculativeDeploymentStatus,
)
from specops.controller import checks, decision, policy_inputs
from specops.controller.loop import (
    POD,
    PodCensus,
    PolicyLoop,
    census,
    condition_verdicts,
    loop_events,
    rollout_for,
    verdict_from,
)
from specops.hub import ResolvedModel
from specops.kube.kinds import Kind
from specops.observe import PrometheusObserver
from specops.policy.acceptance import AcceptanceProfile
from specops.policy.decide import Condition, initial_state
from specops.settings import SettingsError

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
NOW = 1_800_000_000.0


def resolved(ref: str) -> ResolvedModel:
    config = json.loads((HUB / ref / "config.json").read_text())
    return ResolvedModel(ref, "main", "0" * 40, config, None, "mirror")


def resource(**spec: Any) -> SpeculativeDeployment:
    body = {
        "metadata": {"name": "qwen", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": {
            "verifier": {"model": "Qwen/Qwen3-8B"},
            "speculator": {"model": "RedHatAI/Qwen3-8B-speculator.eagle3"},
            "gpu": {"type": "H100-80GB"},
            **spec,
        },
    }
    return SpeculativeDeployment.model_validate(body)


VERIFIER = resolved("Qwen/Qwen3-8B")
DRAFTER = resolved("RedHatAI/Qwen3-8B-speculator.eagle3")


def plan_for(res: SpeculativeDeployment) -> Any:
    plan = checks.check(res.spec, VERIFIER, DRAFTER).plan
    assert plan is not None
    return plan


def pod(
    *,
    ready: bool = False,
    unschedulable: bool = False,
    deleting: bool = False,
    phase: str = "Pending",
) -> dict[str, Any]:
    conditions = []
    if unschedulable:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/6 nodes are available: 6 Insufficient nvidia.com/gpu.",
            }
        )
    else:
        conditions.append({"type": "PodScheduled", "status": "True"})
        conditions.append({"type": "Ready", "status": "True" if ready else "False"})
    meta: dict[str, Any] = {"name": "p"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": conditions}}


# ---------------------------------------------------------------- pods


def test_census_counts_ready_starting_and_unschedulable_and_ignores_leaving_pods() -> None:
    got = census(
        [
            pod(ready=True, phase="Running"),
            pod(ready=True, phase="Running", deleting=True),
            pod(phase="Running"),
            pod(unschedulable=True),
            pod(unschedulable=True),
            pod(phase="Failed"),
        ]
    )
    assert (got.ready, got.starting, got.unschedulable) == (1, 1, 2)
    assert "Insufficient nvidia.com/gpu" in got.why
    assert got.cluster.unschedulable == 2


def deployment(surge: Any = 0, unavailable: Any = 1) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "spec": {
            "replicas": 2,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
            },
            "template": {"spec": {"containers": [{"name": "vllm"}]}},
        },
    }


def test_surge_one_pod_while_no_pod_waits_for_gpus() -> None:
    out = rollout_for(deployment(), PodCensus(ready=2), surge_allowed=True)
    assert out["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert out["spec"]["template"] == deployment()["spec"]["template"]


@pytest.mark.parametrize(
    ("obj", "pods", "allowed"),
    [
        (deployment(), PodCensus(ready=1, unschedulable=1), True),
        (deployment(), None, True),
        (deployment(), PodCensus(ready=2), False),
        (deployment(surge="25%", unavailable=0), PodCensus(ready=2), True),
        ({"kind": "Service", "spec": {}}, PodCensus(ready=2), True),
    ],
    ids=[
        "one pod at a time when a pod is unschedulable",
        "one pod at a time before pods were counted",
        "one pod at a time when the loop does not drive",
        "the user's own rollout bounds are kept",
        "only Deployments have a rollout",
    ],
)
def test_rollout_is_left_alone(obj: dict[str, Any], pods: PodCensus | None, allowed: bool) -> None:
    assert rollout_for(obj, pods, allowed) == obj


# ---------------------------------------------------------------- inputs


def test_policy_spec_follows_the_resource_plan_and_tuning() -> None:
    res = resource(
        autoscaling={
            "minReplicas": 1,
            "maxReplicas": 4,
            "targetConcurrencyPerReplica": 8,
            "scaleDownStabilizationSeconds": 42,
        },
        speculation={"mode": "Auto", "minAcceptanceRate": 0.3, "windowSeconds": 60},
    )
    tuning = policy_inputs.load_tuning(dwell_seconds=7, stable_window_seconds=11)
    spec = policy_inputs.policy_spec(res, plan_for(res), VERIFIER.config, DRAFTER.config, tuning, 3)
    assert (spec.min_replicas, spec.max_replicas) == (1, 4)
    assert spec.target_concurrency_per_replica == 8.0
    assert spec.min_acceptance_rate == 0.3
    assert spec.window_s == 60.0
    assert spec.configured_k == 3
    assert spec.speculation.dwell_s == 7
    assert spec.replicas.stable_window_s == 11
    assert spec.replicas.scale_down_stabilization_s == 42
    assert spec.kv_capacity_tokens is not None and spec.kv_capacity_tokens > 10_000
    # the cost model is the planned replica's: an 8B model on an H100 steps in a few ms
    step = spec.cost.prior_model().step_time(1, 1024, 0)
    assert 0.003 < step < 0.02


def test_pinned_replicas_turn_the_autoscaler_off() -> None:
    res = resource(replicas=3)
    assert policy_inputs.scale_bounds(res) == (3, 3)
    assert policy_inputs.scale_bounds(resource(autoscaling={"maxReplicas": 5})) == (1, 5)


def test_bad_tuning_is_one_clear_line() -> None:
    with pytest.raises(SettingsError, match="SPECOPS_POLICY_DWELL_SECONDS") as info:
        policy_inputs.load_tuning(dwell_seconds=-1)
    assert "\n" not in str(info.value)
    with pytest.raises(SettingsError, match="ACCEPTANCE_PRIOR"):
        policy_inputs.load_tuning(acceptance_prior="poetry")


@pytest.mark.parametrize("alpha", [0.3, 0.55, 0.8])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_flat_alpha_reproduces_the_stored_acceptance_length(alpha: float, k: int) -> None:
    length = AcceptanceProfile.flat(alpha).expected_tokens(k)
    got = policy_inputs.flat_alpha_for(length, k)
    assert got is not None and got == pytest.approx(alpha, abs=1e-6)


def test_restart_restores_switch_time_replicas_and_measured_acceptance() -> None:
    res = resource(
        autoscaling={"minReplicas": 1, "maxReplicas": 4, "scaleDownStabilizationSeconds": 300}
    )
    spec = policy_inputs.policy_spec(
        res, plan_for(res), VERIFIER.config, DRAFTER.config, policy_inputs.LoopTuning(), 3
    )
    switched = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    status = SpeculativeDeploymentStatus(
        speculation=SpeculationStatus(
            active=False,
            reason="SpeculationCostsThroughput",
            last_transition_time=switched,
            mean_acceptance_length=AcceptanceProfile.flat(0.5).expected_tokens(3),
            num_speculative_tokens=None,
        ),
        autoscaling=AutoscalingStatus(
            desired_replicas=3, last_scale_time=switched, reason="ScaleUp"
        ),
    )
    got = policy_inputs.restore_state(spec, status, NOW)
    assert got.from_status
    sp, rp = got.state.speculation, got.state.replicas
    assert not sp.active and sp.reason == "SpeculationCostsThroughput"
    assert sp.last_switch_at == switched.timestamp()
    assert rp.desired == 3 and rp.last_scale_at == switched.timestamp()
    # the stored replica count is the floor of the scale-down window that restarts now
    assert rp.recommendations == ((NOW, 3),)


def test_no_status_means_the_initial_state() -> None:
    res = resource()
    spec = policy_inputs.policy_spec(
        res, plan_for(res), VERIFIER.config, DRAFTER.config, policy_inputs.LoopTuning(), 3
    )
    got = policy_inputs.restore_state(spec, None, NOW)
    assert not got.from_status
    assert got.state == initial_state(spec, 1)


# ---------------------------------------------------------------- verdicts and events


def test_the_verdict_renders_the_policy_state() -> None:
    res = resource(autoscaling={"maxReplicas": 4})
    spec = policy_inputs.policy_spec(
        res, plan_for(res), VERIFIER.config, DRAFTER.config, policy_inputs.LoopTuning(), 4
    )
    state = initial_state(spec, 2)
    got = verdict_from(state, None)
    assert got.render.speculation_active and got.render.num_speculative_tokens == 4
    assert got.render.replicas == 2
    assert got.speculation.active and got.speculation.acceptance_rate is None


def test_conditions_say_metrics_are_missing_and_gpus_are_exhausted() -> None:
    got = dict(
        condition_verdicts(
            (Condition("MetricsAvailable", "False", "MetricsMissing", "Prometheus unreachable"),),
            PodCensus(ready=1, unschedulable=2, why="Insufficient nvidia.com/gpu"),
        )
    )
    assert got["MetricsAvailable"].status == "False"
    assert got["ReplicasSchedulable"].status == "False"
    assert got["ReplicasSchedulable"].reason == "InsufficientGPUs"
    assert "2 pod(s)" in got["ReplicasSchedulable"].message


def status_with(*conds: tuple[str, str, str], k: int | None = None) -> SpeculativeDeploymentStatus:
    conditions: list[Any] = []
    for type_, status, reason in conds:
        conditions = set_condition(
            conditions, type_, status, reason, "msg", now=datetime.now(UTC), observed_generation=1
        )
    speculation = (
        SpeculationStatus(active=True, num_speculative_tokens=k, reason="SpeculativeTokensTuned")
        if k
        else None
    )
    return SpeculativeDeploymentStatus(conditions=conditions, speculation=speculation)


def test_events_for_a_new_k_and_for_metrics_going_missing_and_back() -> None:
    fresh = ("MetricsAvailable", "True", "MetricsFresh")
    missing = ("MetricsAvailable", "False", "MetricsMissing")
    tuned = loop_events(status_with(fresh, k=3), status_with(fresh, k=2))
    assert [(e.reason, e.message.split(" (")[0]) for e in tuned] == [
        ("SpeculativeTokensChanged", "k 3 -> 2")
    ]
    assert [e.reason for e in loop_events(status_with(fresh), status_with(missing))] == [
        "MetricsUnavailable"
    ]
    assert [e.reason for e in loop_events(status_with(missing), status_with(fresh))] == [
        "MetricsFresh"
    ]
    # unchanged, and a first evaluation that finds metrics: nothing to tell
    assert loop_events(status_with(missing), status_with(missing)) == []
    assert loop_events(status_with(), status_with(fresh)) == []


# ---------------------------------------------------------------- one blind evaluation


class Pods:
    """The pods the API server would list (a data source, not a behaviour stub)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.asked: list[tuple[str, str | None]] = []

    async def list_objects(
        self, kind: Kind, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        assert kind == POD
        self.asked.append((str(namespace), label_selector))
        return self.items


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_prometheus_down_holds_state_and_says_metrics_are_unavailable() -> None:
    """A real observer on a port nobody listens on: the cycle holds what runs."""
    res = resource(autoscaling={"minReplicas": 1, "maxReplicas": 4})
    res = res.model_copy(
        update={
            "status": SpeculativeDeploymentStatus(
                speculation=SpeculationStatus(active=False, reason="SpeculationCostsThroughput"),
                autoscaling=AutoscalingStatus(desired_replicas=3, reason="ScaleUp"),
            )
        }
    )
    observer = PrometheusObserver(
        f"http://127.0.0.1:{closed_port()}", timeout_s=2, clock=lambda: NOW
    )
    pods = Pods([pod(ready=True, phase="Running")] * 3)
    loop = PolicyLoop(observer, pods, policy_inputs.LoopTuning(), clock=lambda: NOW)
    base = decision.decide(res.spec, DRAFTER.config)
    for _ in range(3):
        got = asyncio.run(loop.evaluate(res, plan_for(res), VERIFIER, DRAFTER, base, fresh=True))
        assert got is not None
        assert not got.render.speculation_active  # not toggled back on for lack of data
        assert got.render.replicas == 3  # not scaled to the minimum for lack of data
        conds = dict(got.conditions)
        assert conds["MetricsAvailable"].status == "False"
        assert "unreachable" in conds["MetricsAvailable"].message
    namespace, selector = pods.asked[0]
    assert namespace == "ns" and "app.kubernetes.io/instance=qwen" in str(selector)


def test_nothing_decided_yet_renders_the_spec_defaults() -> None:
    res = resource()
    loop = PolicyLoop(
        PrometheusObserver(f"http://127.0.0.1:{closed_port()}"),
        Pods([]),
        policy_inputs.LoopTuning(),
        clock=lambda: NOW,
    )
    base = decision.decide(res.spec, DRAFTER.config)
    assert (
        asyncio.run(loop.evaluate(res, plan_for(res), VERIFIER, DRAFTER, base, fresh=False)) is None
    )


def test_pinned_modes_are_left_to_the_spec() -> None:
    res = resource(speculation={"mode": "Always"})
    loop = PolicyLoop(
        PrometheusObserver(f"http://127.0.0.1:{closed_port()}"),
        Pods([]),
        policy_inputs.LoopTuning(),
        clock=lambda: NOW,
    )
    base = decision.decide(res.spec, DRAFTER.config)
    assert (
        asyncio.run(loop.evaluate(res, plan_for(res), VERIFIER, DRAFTER, base, fresh=True)) is None
    )


@pytest.mark.parametrize(
    ("stored_active", "expect_override"),
    [(True, False), (False, True)],
    ids=["a restart that finds the spec's defaults keeps them", "a restart keeps speculation off"],
)
def test_restart_renders_the_stored_decision(stored_active: bool, expect_override: bool) -> None:
    res = resource().model_copy(
        update={
            "status": SpeculativeDeploymentStatus(
                speculation=SpeculationStatus(
                    active=stored_active,
                    num_speculative_tokens=3 if stored_active else None,
                    reason="AutoInitial" if stored_active else "SpeculationCostsThroughput",
                ),
                autoscaling=AutoscalingStatus(desired_replicas=1, reason="MinReplicas"),
            )
        }
    )
    loop = PolicyLoop(
        PrometheusObserver(f"http://127.0.0.1:{closed_port()}"),
        Pods([]),
        policy_inputs.LoopTuning(),
        clock=lambda: NOW,
    )
    base = decision.decide(res.spec, DRAFTER.config)
    got = asyncio.run(loop.evaluate(res, plan_for(res), VERIFIER, DRAFTER, base, fresh=False))
    if not expect_override:
        assert got is None
    else:
        assert got is not None and not got.render.speculation_active
        assert got.speculation.reason == "SpeculationCostsThroughput"


@pytest.mark.parametrize(
    ("spec", "wanted"),
    [
        ({"speculator": {"model": "d"}}, True),
        ({"speculator": {"model": "d"}, "speculation": {"mode": "Always"}}, False),
        ({"autoscaling": {"minReplicas": 1, "maxReplicas": 3}}, True),
        ({"replicas": 2, "autoscaling": {"minReplicas": 1, "maxReplicas": 3}}, False),
        ({"autoscaling": {"minReplicas": "x"}}, False),
        ({}, False),
    ],
    ids=[
        "Auto speculation is evaluated",
        "pinned speculation without a range is not",
        "an autoscaling range is evaluated",
        "pinned replicas are not",
        "an unreadable spec is left to the reconcile",
        "plain serving at fixed replicas is not",
    ],
)
def test_which_resources_the_evaluation_visits(spec: dict[str, Any], wanted: bool) -> None:
    from specops.controller.handlers import wants_policy_body

    assert wants_policy_body({"spec": spec}) is wanted


def test_specops_run_settings_reject_a_bad_loop_knob_or_prometheus_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from specops.settings import load_settings

    monkeypatch.setenv("SPECOPS_POLICY_DWELL_SECONDS", "-3")
    with pytest.raises(SettingsError, match="SPECOPS_POLICY_DWELL_SECONDS") as info:
        load_settings()
    assert "\n" not in str(info.value)
    monkeypatch.delenv("SPECOPS_POLICY_DWELL_SECONDS")
    with pytest.raises(SettingsError, match="SPECOPS_PROMETHEUS_URL"):
        load_settings(prometheus_url="prometheus:9090")


class ForbiddenPods:
    """An API server whose RBAC does not grant ``pods list`` (an older install)."""

    async def list_objects(
        self, kind: Kind, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        from specops.kube.client import KubeError

        raise KubeError(403, "Forbidden", "pods is forbidden", retryable=False)


def test_pods_that_cannot_be_listed_do_not_fail_the_cycle() -> None:
    res = resource(autoscaling={"minReplicas": 1, "maxReplicas": 4})
    observer = PrometheusObserver(
        f"http://127.0.0.1:{closed_port()}", timeout_s=2, clock=lambda: NOW
    )
    loop = PolicyLoop(observer, ForbiddenPods(), policy_inputs.LoopTuning(), clock=lambda: NOW)
    base = decision.decide(res.spec, DRAFTER.config)
    got = asyncio.run(loop.evaluate(res, plan_for(res), VERIFIER, DRAFTER, base, fresh=True))
    assert got is not None and got.render.replicas == 1
    conds = dict(got.conditions)
    assert "ReplicasSchedulable" not in conds and conds["MetricsAvailable"].status == "False"
    assert got.pods is None
