"""The pod runner's loop with real simulators, fed pod lists directly (no cluster needed).

Covers what the cluster test cannot provoke on demand: a pod whose
arguments the simulator rejects must not take the runner or its neighbours
down, and must be retried with a growing delay, with the reason logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from specops.podrunner import plan
from specops.podrunner.runner import STATE_FILE, TARGETS_FILE, Options, PodRunner

pytestmark = pytest.mark.integration

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
NODE = {
    "metadata": {
        "name": "h100-0",
        "labels": {plan.GPU_TYPE_LABEL: "H100-80GB"},
        "annotations": {plan.KWOK_ANNOTATION: "fake"},
    }
}


def pod(name: str, model: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": {plan.MANAGED_BY_LABEL: "specops", "app.kubernetes.io/instance": "x"},
        },
        "spec": {
            "nodeName": "h100-0",
            "containers": [
                {"name": "vllm", "command": ["vllm"], "args": ["serve", model, "--port", "8000"]}
            ],
        },
        "status": {"phase": "Running"},
    }


def test_a_rejected_pod_is_retried_with_backoff_while_others_serve(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pods = [pod("good", "meta-llama/Llama-3.1-8B-Instruct"), pod("bad", "nope/missing")]
    options = Options(
        targets_dir=tmp_path,
        log_dir=tmp_path / "logs",
        hub_mirror=str(HUB),
        load_time_s=0.5,
        interval_s=0.3,
        restart_backoff_s=1.0,
    )
    runner = PodRunner(lambda: (list(pods), [], [NODE]), options)

    def state() -> dict[str, Any]:
        try:
            return dict(json.loads((tmp_path / STATE_FILE).read_text()))
        except (OSError, ValueError):
            return {"simulators": {}}

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:
            for _ in range(200):
                sims = state()["simulators"]
                if sims.get("ns/good", {}).get("ready"):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"good pod never became ready: {state()}")
            # Let the bad pod crash a few times: delays 1 s, 2 s, 4 s...
            await asyncio.sleep(5.0)
            good_pid = state()["simulators"]["ns/good"]["pid"]
            pods.pop(0)  # the good pod goes away
            for _ in range(100):
                if "ns/good" not in state()["simulators"]:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("simulator of a deleted pod kept running")
            assert good_pid not in [r.sim.proc.pid for r in runner.running.values()]
        finally:
            stop.set()
            await task

    asyncio.run(scenario())

    crashes = [r for r in caplog.records if "simulator for ns/bad exited" in r.getMessage()]
    # 5 s of crashing with 1, 2, 4 s delays is 2-4 attempts, not one every 0.3 s poll.
    print("CRASHES", len(crashes))
    assert 2 <= len(crashes) <= 4, [r.getMessage() for r in crashes]
    assert "nope/missing" in crashes[0].getMessage()
    assert runner.running == {}
    assert json.loads((tmp_path / TARGETS_FILE).read_text()) == []
