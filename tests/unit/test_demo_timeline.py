"""The demo's pure parts: load shape, overlay, what a sample says, and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from specops.api.v1alpha1 import SpeculativeDeployment
from specops.demo import report, schedule, timeline
from specops.demo.timeline import Sample
from specops.demo.values import DemoTiming, overlay
from specops.load.stats import RequestRecord

ROOT = Path(__file__).resolve().parents[2]


def test_the_load_rises_to_the_peak_and_falls_in_equal_plateaus() -> None:
    plan = schedule.steps(100.0, 40.0)
    rates = [s.rate for s in plan]
    peak = rates.index(max(rates))
    assert max(rates) == 40.0
    assert rates[:peak] == sorted(rates[:peak])
    assert rates[peak:] == sorted(rates[peak:], reverse=True)
    assert rates[0] < 40.0 and rates[-1] < 40.0
    assert plan[0].start == 0.0 and plan[-1].end == pytest.approx(100.0)
    assert {round(s.end - s.start, 6) for s in plan} == {10.0}


def test_arrivals_follow_each_plateaus_rate_and_stay_inside_it() -> None:
    plan = schedule.steps(200.0, 50.0, shape=(0.1, 1.0))
    got = schedule.arrivals(plan, seed=3)
    assert got == sorted(got)
    low = [t for t, i in got if i == 0]
    high = [t for t, i in got if i == 1]
    assert all(0 <= t < 100 for t in low) and all(100 <= t < 200 for t in high)
    assert len(low) == pytest.approx(500, rel=0.15)
    assert len(high) == pytest.approx(5000, rel=0.05)
    assert schedule.arrivals(plan, seed=3) == got


@pytest.mark.parametrize(
    ("duration", "peak", "shape"),
    [(0, 1, schedule.SHAPE), (10, -1, schedule.SHAPE), (10, 1, ()), (10, 1, (0.5, 0.0))],
    ids=["no duration", "negative peak", "empty shape", "a zero step"],
)
def test_bad_load_shapes_are_refused(
    duration: float, peak: float, shape: tuple[float, ...]
) -> None:
    with pytest.raises(ValueError):
        schedule.steps(duration, peak, shape)


def test_step_at_finds_the_plateau_and_nothing_outside() -> None:
    plan = schedule.steps(30.0, 10.0, shape=(0.5, 1.0, 0.5))
    assert schedule.step_at(plan, 15.0) == plan[1]
    assert schedule.step_at(plan, -1.0) is None
    assert schedule.step_at(plan, 30.0) is None


def test_the_overlay_keeps_the_example_and_shortens_its_clock() -> None:
    example = yaml.safe_load((ROOT / "manifests/examples/qwen3-8b.yaml").read_text())
    out = overlay(example, max_replicas=4, timing=DemoTiming(window_s=30))
    assert example["spec"]["speculation"] == {"mode": "Auto"}  # input untouched
    assert out["metadata"]["namespace"] == "demo"
    assert out["spec"]["verifier"] == example["spec"]["verifier"]
    assert out["spec"]["autoscaling"]["maxReplicas"] == 4
    assert out["spec"]["autoscaling"]["targetITLMilliseconds"] == 15
    assert out["spec"]["speculation"] == {"mode": "Auto", "windowSeconds": 30}
    SpeculativeDeployment.model_validate(out)  # still a valid resource


def test_the_overlay_refuses_other_kinds() -> None:
    with pytest.raises(ValueError, match="SpeculativeDeployment"):
        overlay({"kind": "Deployment"})


STATUS: dict[str, Any] = {
    "status": {
        "replicas": 2,
        "readyReplicas": 1,
        "speculation": {"active": False, "numSpeculativeTokens": None, "reason": "HighLoad"},
        "autoscaling": {"desiredReplicas": 3, "reason": "ITLAboveTarget"},
    }
}


def test_status_fields_read_the_decision_and_its_reasons() -> None:
    assert timeline.status_fields(STATUS) == {
        "speculation_active": False,
        "k": None,
        "speculation_reason": "HighLoad",
        "speculation_message": None,
        "desired_replicas": 3,
        "scale_reason": "ITLAboveTarget",
        "replicas": 2,
        "ready_replicas": 1,
    }


def test_status_fields_fall_back_to_the_condition_and_never_invent_values() -> None:
    cond = {"status": {"conditions": [{"type": "SpeculationActive", "status": "True",
                                        "reason": "AutoInitial", "message": "k=3"}]}}  # fmt: skip
    fields = timeline.status_fields(cond)
    assert fields["speculation_active"] is True
    assert fields["speculation_reason"] == "AutoInitial"
    assert fields["speculation_message"] == "k=3"
    assert fields["desired_replicas"] is None
    assert timeline.status_fields(None)["speculation_active"] is None


def record(start: float, end: float, tokens: int = 11, error: str = "") -> RequestRecord:
    chunks = [start + 0.1 + i * 0.01 for i in range(tokens)] if not error else []
    return RequestRecord(start=start, end=end, chunk_times=chunks, output_tokens=tokens,
                         error=error)  # fmt: skip


def test_window_stats_count_only_requests_that_ended_inside() -> None:
    records = [record(0, 1.0), record(0, 2.5), record(1, 3.5), record(2, 2.2, error="HTTP 503")]
    rate, errors, tpot = timeline.window_stats(records, 2.0, 4.0)
    assert rate == pytest.approx(1.0)  # two good ones in 2 s
    assert errors == 1
    assert tpot is not None and tpot > 0
    assert timeline.window_stats(records, 4.0, 4.0) == (None, 0, None)


def s(t: float, active: bool | None, k: int | None, desired: int | None, **kw: Any) -> Sample:
    return Sample(t=t, offered_rate=1.0, speculation_active=active, k=k,
                  desired_replicas=desired, **kw)  # fmt: skip


def test_transitions_name_each_change_with_the_reason_then_shown() -> None:
    samples = [
        s(0, True, 3, 1, speculation_reason="AutoInitial"),
        s(3, None, None, None),  # an API hiccup is not a change
        s(6, False, None, 1, speculation_reason="DoesNotPay", speculation_message="k=0 wins"),
        s(9, False, None, 2, scale_reason="ITLAboveTarget"),
        s(12, True, 2, 2, speculation_reason="Pays"),
    ]
    got = [
        (c.t, c.what, c.before, c.after, c.reason, c.message) for c in timeline.transitions(samples)
    ]
    assert got == [
        (6, "speculation", "on k=3", "off", "DoesNotPay", "k=0 wins"),
        (9, "replicas", "1", "2", "ITLAboveTarget", ""),
        (12, "speculation", "off", "on k=2", "Pays", ""),
    ]


def test_live_line_shows_unknowns_as_dashes() -> None:
    line = timeline.live_line(s(5, None, None, None))
    assert "?/?/?" in line and " - " in line
    shown = timeline.live_line(s(5, True, 3, 2, ready_replicas=2, serving_replicas=1))
    assert "1/2/2" in shown and "on k=3" in shown


def test_summary_and_report_line_up_steps_with_what_ran() -> None:
    plan = schedule.steps(20.0, 10.0, shape=(0.5, 1.0))
    samples = [
        s(1, True, 3, 1, ready_replicas=1, vllm_itl_ms=10.0, speculation_reason="AutoInitial"),
        s(11, False, None, 2, ready_replicas=1, vllm_itl_ms=20.0, scale_reason="Up"),
        s(15, False, None, 2, ready_replicas=2, vllm_itl_ms=30.0, scale_reason="Up"),
    ]
    records = [(0, record(0.5, 2.0)), (1, record(10.5, 12.0)), (1, record(11, 13, error="x"))]
    summaries = timeline.summarise(plan, samples, records)
    assert summaries[0].speculation == "on k=3" and summaries[0].replicas == "1"
    assert summaries[1].speculation == "off" and summaries[1].replicas == "1→2"
    assert summaries[1].vllm_itl_ms == pytest.approx(25.0)
    assert summaries[1].errors == 1 and summaries[1].completed_rate == pytest.approx(0.1)
    assert summaries[1].reasons == ["Up"]
    text = report.markdown(
        meta={"resource": "demo/q", "model": "Qwen/Qwen3-8B", "gpu": "H100-80GB",
              "peak_rate": 10.0, "duration_s": 20.0, "prompt_tokens": 8, "output_tokens": 11,
              "target_itl_ms": 15.0, "window_s": 30, "evaluation_s": 5.0,
              "kubeconfig": "/k", "prometheus_url": "http://127.0.0.1:1"},
        summaries=summaries,
        changes=timeline.transitions(samples),
        events=[{"type": "Normal", "reason": "Scaled", "count": 2, "message": "a|b"}],
        operator={"pods": ["p"], "forbidden": 0, "errors": 0, "log_dir": "/l"},
        plots=["/x/load.png"],
    )  # fmt: skip
    assert "| 2 | 10-20 | 10.0 | 0.1 | 1 |" in text
    assert "| 11 | speculation | on k=3 | off |" in text
    assert "a\\|b" in text
    assert "![load](load.png)" in text
    assert "make demo-down" in text


def test_plots_and_timeline_are_written(tmp_path: Path) -> None:
    plan = schedule.steps(10.0, 2.0, shape=(1.0,))
    samples = [s(1, True, 3, 1, ready_replicas=1, tokens_per_s=5.0), s(4, False, None, 2)]
    paths = report.plots(samples, plan, tmp_path, target_itl_ms=15.0)
    assert sorted(p.name for p in paths) == [
        "itl.png", "load.png", "replicas.png", "speculation_k.png", "throughput.png",
    ]  # fmt: skip
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    data = json.loads(report.timeline_json({}, plan, samples, [], [], {}))
    assert data["samples"][1]["speculation_active"] is False
