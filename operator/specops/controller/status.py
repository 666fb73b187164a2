"""Build the status of a SpeculativeDeployment from one reconcile's findings (pure).

The reconcile gathers facts (resolved models, findings, plan, the live
Deployment) into a :class:`Findings`; :func:`build_status` turns them into the
whole ``status`` object, written once per cycle. Conditions go through
:func:`specops.api.conditions.set_condition`, so ``lastTransitionTime`` only
moves when a condition's status does, and an unchanged cycle produces a status
equal to the stored one (no write, no event, no resourceVersion bump).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from specops.api.conditions import set_condition
from specops.api.redact import redact
from specops.api.v1alpha1 import (
    AutoscalingStatus,
    Condition,
    PlanStatus,
    ResolvedStatus,
    SpeculationStatus,
    SpeculativeDeploymentStatus,
)

MODELS_RESOLVED = "ModelsResolved"
COMPATIBLE = "Compatible"
SPECULATION_ACTIVE = "SpeculationActive"
READY = "Ready"
CONDITION_TYPES = (MODELS_RESOLVED, COMPATIBLE, SPECULATION_ACTIVE, READY)

#: Ready=False reasons for a cycle that could not write what it decided. Ready, because
#: the resource is not in the state its spec asks for and a person has to act; it is
#: the condition ``kubectl wait``, Argo CD and alerting look at.
OBJECT_NOT_OWNED = "ObjectNotOwned"
APPLY_REJECTED = "ApplyRejected"
RECONCILE_ERROR = "ReconcileError"
FAILURE_REASONS = (OBJECT_NOT_OWNED, APPLY_REJECTED, RECONCILE_ERROR)

Status = Literal["True", "False", "Unknown"]

#: Annotation on the child Deployment: the resource generation it was rendered from.
GENERATION_ANNOTATION = "specops.dev/generation"


@dataclass(frozen=True)
class Verdict:
    """One condition's verdict: status, CamelCase reason, a message a user can act on."""

    status: Status
    reason: str
    message: str


@dataclass(frozen=True)
class Workload:
    """What the live child Deployment says (``None`` fields: no Deployment)."""

    exists: bool = False
    object_generation: int = 0
    generation_rendered: int | None = None
    desired: int = 0
    replicas: int = 0
    ready: int = 0
    available: int = 0
    updated: int = 0
    up_to_date: bool = False
    progress_failed: str | None = None

    @classmethod
    def from_deployment(cls, deployment: dict[str, Any] | None) -> Workload:
        """Read a Deployment's status the way ``kubectl rollout status`` does."""
        if not deployment:
            return cls()
        meta = deployment.get("metadata") or {}
        spec = deployment.get("spec") or {}
        status = deployment.get("status") or {}
        raw = (meta.get("annotations") or {}).get(GENERATION_ANNOTATION)
        rendered = int(raw) if isinstance(raw, str) and raw.isdigit() else None
        desired = int(spec.get("replicas", 1))
        observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
        failed = None
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "Progressing"
                and cond.get("reason") == "ProgressDeadlineExceeded"
            ):
                failed = str(cond.get("message") or "progress deadline exceeded")
        updated = int(status.get("updatedReplicas") or 0)
        replicas = int(status.get("replicas") or 0)
        return cls(
            exists=True,
            object_generation=int(meta.get("generation") or 0),
            generation_rendered=rendered,
            desired=desired,
            replicas=replicas,
            ready=int(status.get("readyReplicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            updated=updated,
            up_to_date=observed and updated >= desired and replicas <= desired,
            progress_failed=failed,
        )


@dataclass(frozen=True)
class SpeculationVerdict:
    """Whether the applied workload drafts tokens, with what k and why."""

    active: bool
    num_speculative_tokens: int | None
    reason: str
    message: str
    #: vLLM's acceptance over the last observation window (``None``: not measured).
    acceptance_rate: float | None = None
    mean_acceptance_length: float | None = None


@dataclass(frozen=True)
class Findings:
    """Everything one reconcile learned, ready to be written as status."""

    generation: int
    resolved: Verdict
    compatible: Verdict
    resolved_models: ResolvedStatus | None = None
    plan: PlanStatus | None = None
    speculation: SpeculationVerdict | None = None
    desired_replicas: int | None = None
    scale_reason: str = "MinReplicas"
    applied: bool = False
    workload: Workload = field(default_factory=Workload)
    selector: str | None = None
    #: Conditions the control loop owns (MetricsAvailable, ReplicasSchedulable).
    extra_conditions: tuple[tuple[str, Verdict], ...] = ()
    #: Why some child could not be written (ObjectNotOwned, ApplyRejected); Ready says so.
    failure: Verdict | None = None


def ready_verdict(findings: Findings) -> Verdict:
    """Ready follows the child Deployment's available replicas, unless a child could not
    be written: then it is False with that reason, whatever the Deployment says."""
    if findings.failure is not None:
        return findings.failure
    work = findings.workload
    if not work.exists:
        if findings.applied:
            return Verdict("False", "Creating", "the vLLM Deployment is being created")
        return Verdict("False", "NoWorkload", "no vLLM Deployment: " + _blocker(findings))
    stale = not findings.applied
    suffix = ""
    if stale:
        gen = work.generation_rendered
        which = f"generation {gen}" if gen is not None else "an earlier generation"
        suffix = f"; serving {which} because generation {findings.generation} " + (
            "is not applied: " + _blocker(findings)
        )
    if work.progress_failed:
        return Verdict("False", "ProgressDeadlineExceeded", work.progress_failed + suffix)
    if work.desired == 0:
        return Verdict("True", "ScaledToZero", "the Deployment has 0 replicas" + suffix)
    if work.up_to_date and work.available >= work.desired:
        return Verdict(
            "True",
            "Available" if not stale else "AvailableOldGeneration",
            f"{work.available}/{work.desired} replicas available" + suffix,
        )
    reason = "RollingOut" if work.available else "ReplicasNotAvailable"
    return Verdict(
        "False",
        reason,
        f"{work.available}/{work.desired} replicas available, {work.updated} updated" + suffix,
    )


def _blocker(findings: Findings) -> str:
    for verdict in (findings.resolved, findings.compatible):
        if verdict.status != "True":
            return f"{verdict.reason}: {verdict.message}"
    if findings.failure is not None:
        return f"{findings.failure.reason}: {findings.failure.message}"
    return "not yet applied"


def parse_status(raw: dict[str, Any] | None) -> SpeculativeDeploymentStatus:
    """The stored status; anything unreadable counts as empty (we rewrite it)."""
    try:
        return SpeculativeDeploymentStatus.model_validate(raw or {})
    except ValueError:
        return SpeculativeDeploymentStatus()


def build_status(
    old: SpeculativeDeploymentStatus, findings: Findings, *, now: datetime
) -> SpeculativeDeploymentStatus:
    """The complete new status (conditions keep their transition times).

    Every message goes through :func:`specops.api.redact.redact` here, the one
    place where error text (a Hub or API server answer, an exception) becomes
    something a tenant can read.
    """
    gen = findings.generation
    conditions: list[Condition] = list(old.conditions)
    spec = findings.speculation
    if spec is None:
        spec_verdict = Verdict("Unknown", "NotApplied", _blocker(findings))
        if findings.workload.exists and old.speculation is not None and not findings.applied:
            was = "on" if old.speculation.active else "off"
            spec_verdict = Verdict(
                "True" if old.speculation.active else "False",
                "Unchanged",
                f"speculation stays {was} in the running workload; " + _blocker(findings),
            )
    else:
        spec_verdict = Verdict("True" if spec.active else "False", spec.reason, spec.message)
    for type_, verdict in (
        (MODELS_RESOLVED, findings.resolved),
        (COMPATIBLE, findings.compatible),
        (SPECULATION_ACTIVE, spec_verdict),
        (READY, ready_verdict(findings)),
        *findings.extra_conditions,
    ):
        conditions = set_condition(
            conditions,
            type_,
            verdict.status,
            verdict.reason,
            redact(verdict.message),
            now=now,
            observed_generation=gen,
        )

    speculation = old.speculation
    if spec is not None:
        previous = old.speculation
        changed = previous is None or previous.active != spec.active
        speculation = SpeculationStatus(
            active=spec.active,
            num_speculative_tokens=spec.num_speculative_tokens if spec.active else None,
            reason=spec.reason,
            last_transition_time=_second(now)
            if changed or previous is None
            else previous.last_transition_time,
            acceptance_rate=spec.acceptance_rate
            if spec.acceptance_rate is not None
            else previous.acceptance_rate
            if previous
            else None,
            mean_acceptance_length=spec.mean_acceptance_length
            if spec.mean_acceptance_length is not None
            else previous.mean_acceptance_length
            if previous
            else None,
        )

    autoscaling = old.autoscaling
    if findings.desired_replicas is not None:
        prev = old.autoscaling
        changed = prev is None or prev.desired_replicas != findings.desired_replicas
        autoscaling = AutoscalingStatus(
            desired_replicas=findings.desired_replicas,
            last_scale_time=_second(now) if changed else prev.last_scale_time if prev else None,
            reason=findings.scale_reason,
        )

    work = findings.workload
    return SpeculativeDeploymentStatus(
        observed_generation=gen,
        replicas=work.replicas if work.exists else 0,
        ready_replicas=work.ready if work.exists else 0,
        selector=findings.selector or old.selector,
        conditions=conditions,
        resolved=findings.resolved_models or old.resolved,
        plan=findings.plan or old.plan,
        speculation=speculation,
        autoscaling=autoscaling,
    )


def failed_status(
    old: SpeculativeDeploymentStatus, verdict: Verdict, *, generation: int, now: datetime
) -> SpeculativeDeploymentStatus:
    """The stored status with only Ready replaced by ``verdict`` (message redacted).

    For a cycle an exception ended: it learned nothing trustworthy, so what the
    last complete cycle reported stays (each condition keeps its own
    ``observedGeneration``), and Ready says why this one failed. The status's
    ``observedGeneration`` moves to ``generation``: the failure *is* the answer
    for it, and tools waiting for it (``kubectl wait``, Argo CD) then report it
    instead of waiting for ever.
    """
    conditions = set_condition(
        list(old.conditions),
        READY,
        verdict.status,
        verdict.reason,
        redact(verdict.message),
        now=now,
        observed_generation=generation,
    )
    return old.model_copy(update={"conditions": conditions, "observed_generation": generation})


def _second(now: datetime) -> datetime:
    return now.replace(microsecond=0)


def to_wire(status: SpeculativeDeploymentStatus) -> dict[str, Any]:
    """JSON-ready camelCase dict, as stored in the API."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def status_patch(
    old_raw: dict[str, Any] | None, new: SpeculativeDeploymentStatus
) -> dict[str, Any]:
    """A merge patch turning ``old_raw`` into ``new``: removed keys become ``None``."""
    wire = to_wire(new)
    patch: dict[str, Any] = dict(wire)
    for key in old_raw or {}:
        if key not in wire:
            patch[key] = None
    return patch
