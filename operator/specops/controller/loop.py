"""The closed loop: observe Prometheus, ask the policy, act through the normal cycle.

Every ``evaluation_seconds`` a kopf timer runs the ordinary reconcile with
trigger ``evaluate``; inside that cycle :meth:`PolicyLoop.evaluate` takes one
observation (``specops.observe``) and the pods' scheduling state, keeps the
short history the policy needs, calls :func:`specops.policy.decide.decide`
and returns the render decision. Rendering, server-side apply, the status
write and the Events then happen exactly as for any other trigger, so:

* a replica change changes only ``spec.replicas`` of the Deployment;
* a speculation change changes the pod template, which the Deployment rolls
  with the resource's rollout bounds (default: one pod at a time, no surge);
  :func:`rollout_for` allows one surge pod instead when no pod of the
  resource is waiting for GPUs, so capacity is kept while vLLM restarts;
* every other trigger (a child's event, the resync, a restart) renders the
  policy's *current* decision instead of the spec's defaults, so nothing
  but an evaluation changes what runs.

Metrics unavailable (Prometheus down, no replica reporting): the policy keeps
its state and says ``MetricsAvailable=False``; the loop renders that state.
GPUs exhausted: pods the scheduler cannot place are counted and handed to the
policy, which then stops asking for more; ``ReplicasSchedulable=False`` says
so in status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from specops.api.conditions import get_condition
from specops.api.v1alpha1 import (
    PlanStatus,
    SpeculativeDeployment,
    SpeculativeDeploymentStatus,
)
from specops.controller import policy_inputs
from specops.controller.events import EventSpec
from specops.controller.status import SpeculationVerdict, Verdict
from specops.hub import ResolvedModel
from specops.kube.client import KubeError
from specops.kube.kinds import Kind
from specops.observe import LabelNames, PrometheusObserver
from specops.policy.decide import (
    METRICS_AVAILABLE,
    ClusterState,
    Condition,
    PolicyState,
    decide,
)
from specops.policy.observations import Observation
from specops.render import RenderDecision, selector_string

log = logging.getLogger(__name__)

POD = Kind("v1", "Pod", "pods")
REPLICAS_SCHEDULABLE = "ReplicasSchedulable"
LOOP_CONDITIONS = (METRICS_AVAILABLE, REPLICAS_SCHEDULABLE)


class Observer(Protocol):
    """What the loop needs from :class:`specops.observe.PrometheusObserver`."""

    def observe(self, namespace: str, name: str, window_s: float) -> Observation: ...


class PodLister(Protocol):
    """What the loop needs from :class:`specops.kube.client.KubeClient`."""

    async def list_objects(
        self, kind: Kind, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]: ...


Base = tuple[RenderDecision, SpeculationVerdict, str]


@dataclass(frozen=True)
class PodCensus:
    """The resource's pods as the scheduler and kubelet see them."""

    ready: int = 0
    starting: int = 0
    unschedulable: int = 0
    why: str = ""
    """The scheduler's message for an unschedulable pod (e.g. Insufficient nvidia.com/gpu)."""

    @property
    def cluster(self) -> ClusterState:
        """The policy's view: credit only for pods that can run."""
        return ClusterState(
            ready=self.ready, starting=self.starting, unschedulable=self.unschedulable
        )


def census(pods: list[dict[str, Any]]) -> PodCensus:
    """Count pods that are ready, starting (scheduled or schedulable) and unschedulable.

    A pod is unschedulable when its ``PodScheduled`` condition is False with
    reason ``Unschedulable`` (what the scheduler sets with its FailedScheduling
    Event). Terminating pods count for nothing: they are leaving.
    """
    ready = starting = unschedulable = 0
    why = ""
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        conds = {c.get("type"): c for c in status.get("conditions") or []}
        scheduled = conds.get("PodScheduled") or {}
        if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            unschedulable += 1
            why = why or str(scheduled.get("message") or "no node fits")
        elif (conds.get("Ready") or {}).get("status") == "True":
            ready += 1
        else:
            starting += 1
    return PodCensus(ready, starting, unschedulable, why)


def rollout_for(
    deployment: dict[str, Any], pods: PodCensus | None, surge_allowed: bool
) -> dict[str, Any]:
    """The Deployment with one surge pod and none unavailable, when GPUs look free.

    Only applied when the resource keeps the default rollout (no surge, one
    unavailable) and no pod of it is unschedulable: a surge pod that cannot
    be placed would stall the rollout, so then the default, one pod at a
    time, stays. Pure; the pod template is untouched (no restart).
    """
    if (
        not surge_allowed
        or pods is None
        or pods.unschedulable
        or deployment.get("kind") != "Deployment"
    ):
        return deployment
    spec = dict(deployment.get("spec") or {})
    strategy = dict(spec.get("strategy") or {})
    rolling = dict(strategy.get("rollingUpdate") or {})
    if rolling.get("maxSurge") not in (0, "0", "0%") or rolling.get("maxUnavailable") != 1:
        return deployment  # the user chose bounds: keep them
    strategy["rollingUpdate"] = {"maxSurge": 1, "maxUnavailable": 0}
    spec["strategy"] = strategy
    return {**deployment, "spec": spec}


@dataclass
class Memory:
    """What the loop remembers about one resource between evaluations."""

    state: PolicyState | None = None
    observations: list[Observation] = field(default_factory=list)
    conditions: tuple[Condition, ...] = ()
    latest: Observation | None = None
    pods: PodCensus | None = None
    evaluated: bool = False
    restored: bool = False


@dataclass(frozen=True)
class LoopVerdict:
    """What the cycle renders and records."""

    render: RenderDecision
    speculation: SpeculationVerdict
    scale_reason: str
    conditions: tuple[tuple[str, Verdict], ...] = ()
    surge_allowed: bool = False
    pods: PodCensus | None = None


def wants_policy(resource: SpeculativeDeployment) -> bool:
    """Whether the policy decides anything for this resource (else the spec does)."""
    spec = resource.spec
    lo, hi = policy_inputs.scale_bounds(resource)
    auto_spec = spec.speculation.mode == "Auto" and spec.speculator is not None
    return auto_spec or hi > lo


def verdict_from(state: PolicyState, latest: Observation | None) -> LoopVerdict:
    """The render decision and status verdicts for the policy's state (pure)."""
    sp, rp = state.speculation, state.replicas
    k = sp.k if sp.active else None
    table = state.table if sp.active else None
    acceptance = latest.acceptance if latest is not None else None
    speculation = SpeculationVerdict(
        sp.active,
        k,
        sp.reason,
        sp.message or f"{sp.reason}: speculation {'on, k=' + str(k) if sp.active else 'off'}",
        acceptance_rate=acceptance.acceptance_rate if acceptance else None,
        mean_acceptance_length=acceptance.mean_acceptance_length if acceptance else None,
    )
    render = RenderDecision(
        sp.active,
        k,
        rp.desired,
        speculative_table=[(lo, hi, kk) for lo, hi, kk in table] if table else None,
    )
    return LoopVerdict(render, speculation, rp.reason)


def condition_verdicts(
    conditions: tuple[Condition, ...], pods: PodCensus | None
) -> tuple[tuple[str, Verdict], ...]:
    """Status conditions the loop owns: MetricsAvailable and ReplicasSchedulable."""
    out: list[tuple[str, Verdict]] = []
    for cond in conditions:
        if cond.type == METRICS_AVAILABLE and cond.status in ("True", "False", "Unknown"):
            out.append((cond.type, Verdict(cond.status, cond.reason, cond.message)))  # type: ignore[arg-type]
    if pods is not None:
        if pods.unschedulable:
            out.append(
                (
                    REPLICAS_SCHEDULABLE,
                    Verdict(
                        "False",
                        "InsufficientGPUs",
                        f"{pods.unschedulable} pod(s) cannot be scheduled: {pods.why}",
                    ),
                )
            )
        else:
            out.append(
                (
                    REPLICAS_SCHEDULABLE,
                    Verdict("True", "Scheduled", f"{pods.ready + pods.starting} pod(s) placed"),
                )
            )
    return tuple(out)


def loop_events(
    old: SpeculativeDeploymentStatus, new: SpeculativeDeploymentStatus
) -> list[EventSpec]:
    """Events for what :func:`specops.controller.events.events_for` does not cover.

    A new k with speculation staying on, and ``MetricsAvailable`` /
    ``ReplicasSchedulable`` turning False or back True. Like every Event,
    derived from the status difference (a restarted operator stays quiet) and
    rate-limited by the recorder.
    """
    events: list[EventSpec] = []
    before, after = old.speculation, new.speculation
    if (
        before is not None
        and after is not None
        and before.active
        and after.active
        and before.num_speculative_tokens is not None
        and after.num_speculative_tokens is not None
        and before.num_speculative_tokens != after.num_speculative_tokens
    ):
        events.append(
            EventSpec(
                "Normal",
                "SpeculativeTokensChanged",
                f"k {before.num_speculative_tokens} -> {after.num_speculative_tokens} "
                f"({after.reason})",
            )
        )
    for type_, bad in ((METRICS_AVAILABLE, "MetricsUnavailable"), (REPLICAS_SCHEDULABLE, None)):
        was = get_condition(old.conditions, type_)
        now = get_condition(new.conditions, type_)
        if now is None or (was is not None and was.status == now.status):
            continue
        if now.status == "False":
            events.append(EventSpec("Warning", bad or now.reason, now.message))
        elif now.status == "True" and was is not None and was.status == "False":
            events.append(EventSpec("Normal", now.reason, now.message))
    return events


class PolicyLoop:
    """Per-resource memory plus the two reads of an evaluation (Prometheus, pods)."""

    def __init__(
        self,
        observer: Observer,
        pods: PodLister,
        tuning: policy_inputs.LoopTuning,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.observer = observer
        self.pods = pods
        self.tuning = tuning
        self.clock = clock
        self._memory: dict[str, Memory] = {}

    def forget(self, uid: str) -> None:
        """Drop a deleted resource's memory."""
        self._memory.pop(uid, None)

    def memory(self, uid: str) -> Memory | None:
        """What is remembered about ``uid`` (for tests and debugging)."""
        return self._memory.get(uid)

    async def _observe(self, namespace: str, name: str) -> Observation:
        window = self.tuning.observation_window_seconds
        try:
            return await asyncio.to_thread(self.observer.observe, namespace, name, window)
        except Exception as exc:  # any failure is "could not see", never a crash
            log.warning("%s/%s: observation failed: %s", namespace, name, exc)
            return Observation.unavailable(self.clock(), window, f"observation failed: {exc}")

    async def _census(self, namespace: str, name: str) -> PodCensus | None:
        """The pods' state, or ``None`` when they cannot be listed (e.g. RBAC without
        ``pods list``): the policy then assumes every desired replica runs, as before
        pods were counted, rather than failing the whole cycle."""
        try:
            pods = await self.pods.list_objects(
                POD, namespace, label_selector=selector_string(name)
            )
        except KubeError as exc:
            log.warning("%s/%s: cannot list pods: %s", namespace, name, exc)
            return None
        return census(pods)

    async def evaluate(
        self,
        resource: SpeculativeDeployment,
        plan: PlanStatus,
        verifier: ResolvedModel,
        speculator: ResolvedModel | None,
        base: Base,
        *,
        fresh: bool,
    ) -> LoopVerdict | None:
        """The decision to render this cycle, or ``None`` to keep the spec's ``base``.

        ``fresh`` (the evaluation timer) takes a new observation and runs the
        policy; any other trigger re-renders what the policy last decided.
        """
        if not wants_policy(resource):
            return None
        namespace, name = str(resource.namespace), resource.name
        uid = str(resource.metadata.get("uid", ""))
        base_render = base[0]
        spec = policy_inputs.policy_spec(
            resource,
            plan,
            verifier.config,
            speculator.config if speculator else None,
            self.tuning,
            configured_k=base_render.num_speculative_tokens,
        )
        now = self.clock()
        mem = self._memory.setdefault(uid, Memory())
        if mem.state is None:
            restored = policy_inputs.restore_state(spec, resource.status, now)
            mem.state, mem.restored = restored.state, restored.from_status
        if fresh:
            observation = await self._observe(namespace, name)
            mem.pods = await self._census(namespace, name)
            # the decision's clock must not run behind the observation's end
            now = max(self.clock(), observation.at)
            mem.latest = observation
            horizon = now - spec.window_s
            mem.observations = [o for o in (*mem.observations, observation) if o.at >= horizon]
            cluster = mem.pods.cluster if mem.pods is not None else None
            decision = decide(spec, mem.observations, mem.state, now, cluster)
            mem.state = decision.state
            mem.conditions = decision.conditions
            mem.evaluated = True
            if decision.speculation_changed or decision.replicas_changed:
                sp, rp = decision.state.speculation, decision.state.replicas
                log.info(
                    "%s/%s: speculation %s k=%s (%s), replicas %d (%s)",
                    namespace,
                    name,
                    "on" if sp.active else "off",
                    sp.k,
                    sp.reason,
                    rp.desired,
                    rp.reason,
                )
        if not mem.evaluated and not mem.restored:
            return None  # nothing decided yet: the spec's defaults are the policy's start
        verdict = self._pin(resource, verdict_from(mem.state, mem.latest), base)
        if not mem.evaluated and verdict.render == base_render:
            return None  # restored, and the same as the spec's defaults: keep their wording
        return LoopVerdict(
            verdict.render,
            verdict.speculation,
            verdict.scale_reason,
            condition_verdicts(mem.conditions, mem.pods),
            surge_allowed=True,
            pods=mem.pods,
        )

    @staticmethod
    def _pin(resource: SpeculativeDeployment, verdict: LoopVerdict, base: Base) -> LoopVerdict:
        """Keep the spec's word where it pins: speculation mode, pinned replicas."""
        base_render, base_spec, base_scale = base
        spec = resource.spec
        render, speculation, scale_reason = (
            verdict.render,
            verdict.speculation,
            verdict.scale_reason,
        )
        if spec.speculation.mode != "Auto" or spec.speculator is None:
            render = RenderDecision(
                base_render.speculation_active,
                base_render.num_speculative_tokens,
                render.replicas,
                base_render.speculative_table,
            )
            speculation = base_spec
        lo, hi = policy_inputs.scale_bounds(resource)
        if lo == hi:
            replicas = base_render.replicas
            scale_reason = base_scale
        else:  # a spec change since the last evaluation moves the bounds at once
            replicas = min(max(render.replicas, lo), hi)
        render = RenderDecision(
            render.speculation_active,
            render.num_speculative_tokens,
            replicas,
            render.speculative_table,
        )
        return LoopVerdict(render, speculation, scale_reason)


def default_loop(
    prometheus_url: str, pods: PodLister, tuning: policy_inputs.LoopTuning | None = None
) -> PolicyLoop:
    """The loop on the operator's Prometheus, with label names and timings from the tuning."""
    tuning = tuning or policy_inputs.load_tuning()
    labels = LabelNames(
        namespace=tuning.namespace_label, instance=tuning.instance_label, pod=tuning.pod_label
    )
    return PolicyLoop(PrometheusObserver(prometheus_url, labels), pods, tuning)
