"""``specops bench policy`` writes the fixed JSON shape from a real virtual-time sweep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STRATEGIES = {"no-spec", "k=1", "k=2", "k=3", "k=4", "k=5", "specops", "oracle"}
METRICS = {
    "itl_p50_ms",
    "itl_p99_ms",
    "latency_p50_s",
    "latency_p99_s",
    "ttft_p99_s",
    "throughput_tok_s",
}


def test_one_scenario_writes_points_for_every_strategy_and_a_plot(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "specops",
            "bench",
            "policy",
            "--profile",
            "summarization",
            "--perturb",
            "1.2",
            "--seed",
            "3",
            "--output",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["scenario"]["profile"] == "summarization" and doc["scenario"]["perturb"] == 1.2
    assert len(doc["points"]) == 10  # synchronous, 8 rates, throughput
    rates = [p["rate"] for p in doc["points"] if p["kind"] == "rate"]
    assert rates == sorted(rates) and len(rates) == 8
    for point in doc["points"]:
        assert set(point["strategies"]) == STRATEGIES
        for metrics in point["strategies"].values():
            assert set(metrics) == METRICS
            assert all(v > 0 for v in metrics.values())
        # the oracle is the best fixed setting of that point, in hindsight
        fixed = [
            point["strategies"][s]["latency_p50_s"] for s in STRATEGIES - {"specops", "oracle"}
        ]
        assert point["strategies"]["oracle"]["latency_p50_s"] == min(fixed)
    # speculation pays at batch one for this profile, and the policy took it
    sync = doc["points"][0]["strategies"]
    assert sync["specops"]["latency_p50_s"] < sync["no-spec"]["latency_p50_s"]
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "specops" in proc.stdout and "median request latency" in proc.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--perturb", "0"], "must be positive"),
        (["--alpha", "1.5"], "must lie in [0, 1]"),
        (["--model", "nobody/none"], "no speculator"),
    ],
    ids=["zero perturbation", "alpha above one", "a model without a speculator"],
)
def test_bad_scenarios_are_one_line_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "specops",
            "bench",
            "policy",
            *args,
            "--output",
            str(tmp_path / "x.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
