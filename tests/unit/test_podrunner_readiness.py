"""Front-door readiness follows a kubelet's failureThreshold, not a single probe."""

import pytest

from specops.podrunner.balance import probe_readiness


@pytest.mark.parametrize(
    ("ok", "was_ready", "alive", "failures", "expected"),
    [
        pytest.param(
            True, False, True, 0, True, id="a loaded replica becomes ready on one success"
        ),
        pytest.param(False, False, True, 1, False, id="a loading replica stays unready"),
        pytest.param(False, True, True, 1, True, id="one slow probe keeps a busy replica ready"),
        pytest.param(False, True, True, 2, True, id="two misses still keep it ready"),
        pytest.param(False, True, True, 3, False, id="the third miss in a row takes it out"),
        pytest.param(False, True, False, 1, False, id="a dead simulator is unready at once"),
    ],
)
def test_probe_readiness(
    ok: bool, was_ready: bool, alive: bool, failures: int, expected: bool
) -> None:
    assert (
        probe_readiness(ok=ok, was_ready=was_ready, alive=alive, failures=failures, threshold=3)
        is expected
    )


def test_readiness_patch_is_what_a_kubelet_writes_for_the_vllm_container() -> None:
    from specops.podrunner.runner import readiness_patch

    patch = readiness_patch(False, "2026-11-28T00:00:00Z")
    conditions = patch["status"]["conditions"]
    assert {c["type"] for c in conditions} == {"Ready", "ContainersReady"}
    assert {(c["status"], c["reason"]) for c in conditions} == {("False", "SimulatorNotReady")}
    assert patch["status"]["containerStatuses"] == [{"name": "vllm", "ready": False}]
    ready = readiness_patch(True, "2026-11-28T00:00:00Z")["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("True", "SimulatorReady")
