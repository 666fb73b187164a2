"""Which Events a status change deserves (pure).

Events are derived from the difference between the stored status and the new
one, never from "what happened in this process". A restarted operator reads
the stored status, finds nothing changed, and stays quiet: no Events storm.
"""

from __future__ import annotations

from dataclasses import dataclass

from specops.api.conditions import get_condition
from specops.api.v1alpha1 import SpeculativeDeploymentStatus
from specops.controller.status import (
    COMPATIBLE,
    FAILURE_REASONS,
    MODELS_RESOLVED,
    READY,
    SPECULATION_ACTIVE,
)
from specops.kube.events import EventType


@dataclass(frozen=True)
class EventSpec:
    """One Event to post on the resource."""

    type: EventType
    reason: str
    message: str


def _models(status: SpeculativeDeploymentStatus) -> str:
    resolved = status.resolved
    if resolved is None:
        return ""
    text = f"verifier {resolved.verifier.model}@{resolved.verifier.sha[:12]}"
    if resolved.speculator is not None:
        text += f", speculator {resolved.speculator.model}@{resolved.speculator.sha[:12]}"
    return text


def events_for(
    old: SpeculativeDeploymentStatus, new: SpeculativeDeploymentStatus
) -> list[EventSpec]:
    """Events for the transitions from ``old`` to ``new``, in a stable order."""
    events: list[EventSpec] = []

    def transition(type_: str) -> tuple[str | None, str | None, str, str]:
        before = get_condition(old.conditions, type_)
        after = get_condition(new.conditions, type_)
        if after is None:
            return (before.status if before else None, None, "", "")
        return (before.status if before else None, after.status, after.reason, after.message)

    was, now, reason, message = transition(MODELS_RESOLVED)
    if now == "True" and (was != "True" or _models(old) != _models(new)):
        events.append(EventSpec("Normal", "ModelsResolved", _models(new) or message))
    elif now in ("False", "Unknown") and was != now:
        events.append(EventSpec("Warning", reason, message))

    was, now, reason, message = transition(COMPATIBLE)
    if now == "False" and was != "False":
        events.append(EventSpec("Warning", reason, message))

    was, now, reason, message = transition(SPECULATION_ACTIVE)
    if now in ("True", "False") and was in ("True", "False") and was != now:
        switched = "SpeculationEnabled" if now == "True" else "SpeculationDisabled"
        events.append(EventSpec("Normal", switched, f"{reason}: {message}"))

    old_scale = old.autoscaling.desired_replicas if old.autoscaling else None
    new_scale = new.autoscaling.desired_replicas if new.autoscaling else None
    if old_scale is not None and new_scale is not None and old_scale != new_scale:
        why = new.autoscaling.reason if new.autoscaling else None
        events.append(
            EventSpec(
                "Normal",
                "Scaled",
                f"replicas {old_scale} -> {new_scale} ({why or 'unknown'})",
            )
        )

    was, now, reason, message = transition(READY)
    before = get_condition(old.conditions, READY)
    if now == "True" and was != "True":
        events.append(EventSpec("Normal", "Ready", message))
    elif (
        now == "False"
        and reason in FAILURE_REASONS
        and (before is None or (before.reason, before.message) != (reason, message))
    ):
        # A child not written (someone else's object, refused by the API server) or a
        # failed cycle: a Warning naming it, once per distinct failure.
        events.append(EventSpec("Warning", reason, message))
    elif now == "False" and was == "True":
        events.append(EventSpec("Warning", "NotReady", f"{reason}: {message}"))
    return events
