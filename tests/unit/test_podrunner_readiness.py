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
