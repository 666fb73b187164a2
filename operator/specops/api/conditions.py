"""Pure helpers for ``metav1.Condition`` lists.

``lastTransitionTime`` must mean "when the status last changed", not "when we
last looked": a reconcile that re-asserts ``Ready=True`` every 30 seconds must
keep the old timestamp, or users (and alerting on condition age) see a flapping
resource. The clock is passed in, so tests need no time travel.
"""

from __future__ import annotations

from datetime import UTC, datetime

from specops.api.v1alpha1 import Condition

READY = "Ready"
RESOLVED = "Resolved"
COMPATIBLE = "Compatible"
PLANNED = "Planned"
PROGRESSING = "Progressing"
SPECULATING = "Speculating"


def _seconds(now: datetime) -> datetime:
    """metav1.Time has second precision; a naive time is taken as UTC."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).replace(microsecond=0)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Return a new list with condition ``type_`` set; the input is not modified.

    ``lastTransitionTime`` is kept when the status is unchanged (reason and
    message may still change) and set to ``now`` otherwise. Order is stable:
    an existing condition keeps its place, a new one is appended.
    """
    new = Condition.model_validate(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": _seconds(now),
            "observedGeneration": observed_generation,
        }
    )
    result: list[Condition] = []
    replaced = False
    for existing in conditions:
        if existing.type != type_:
            result.append(existing)
            continue
        if replaced:
            continue  # a duplicate of this type: conditions are a map keyed by type
        if existing.status == new.status:
            new = new.model_copy(update={"last_transition_time": existing.last_transition_time})
        result.append(new)
        replaced = True
    if not replaced:
        result.append(new)
    return result


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of that type, if present."""
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    """Whether the condition is present with status ``True``."""
    found = get_condition(conditions, type_)
    return found is not None and found.status == "True"
