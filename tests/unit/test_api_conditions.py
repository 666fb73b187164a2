"""set_condition keeps lastTransitionTime unless the status changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from specops.api.conditions import READY, get_condition, is_true, set_condition

T0 = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_a_new_condition_is_appended_with_second_precision() -> None:
    conditions = set_condition([], READY, "False", "Loading", "weights", now=T0)
    assert len(conditions) == 1
    assert conditions[0].last_transition_time == T0.replace(microsecond=0)
    assert conditions[0].reason == "Loading"


def test_same_status_keeps_the_transition_time_but_updates_reason_and_message() -> None:
    first = set_condition([], READY, "True", "ReplicasReady", "1/1", now=T0, observed_generation=1)
    second = set_condition(
        first, READY, "True", "ReplicasReady", "2/2", now=T1, observed_generation=2
    )
    assert second[0].last_transition_time == T0.replace(microsecond=0)
    assert second[0].message == "2/2"
    assert second[0].observed_generation == 2
    assert first[0].message == "1/1", "the input list is not modified"


def test_a_status_change_moves_the_transition_time() -> None:
    first = set_condition([], READY, "True", "ReplicasReady", "", now=T0)
    second = set_condition(first, READY, "False", "ReplicasUnavailable", "0/1", now=T1)
    assert second[0].last_transition_time == T1.replace(microsecond=0)
    assert not is_true(second, READY)


def test_other_conditions_keep_their_place_and_naive_times_are_utc() -> None:
    conditions = set_condition([], "Resolved", "True", "Pinned", "", now=T0)
    conditions = set_condition(conditions, READY, "Unknown", "Pending", "", now=T0)
    conditions = set_condition(
        conditions, "Resolved", "False", "RepoMissing", "", now=datetime(2026, 1, 1)
    )
    assert [c.type for c in conditions] == ["Resolved", READY]
    resolved = get_condition(conditions, "Resolved")
    assert resolved is not None and resolved.last_transition_time.tzinfo is not None
    assert get_condition(conditions, "Missing") is None
