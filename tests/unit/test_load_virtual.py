"""Virtual-time load: the simulator library driven by the same profiles and reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops.cli import main
from specops.load import virtual
from specops.load.runner import Bounds
from specops.load.schedule import Profile
from specops.load.stats import summarise
from specops.sim.engine import Workload, simulate

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SPEC = (
    '--speculative-config \'{"method": "eagle3", '
    '"model": "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3", "num_speculative_tokens": 3}\''
)


def runner(vllm_args: str = SPEC, **kw: object) -> virtual.VirtualRunner:
    options: dict[str, object] = {
        "model": MODEL,
        "gpu": "H100-80GB",
        "vllm_args": vllm_args,
        "hub_mirror": HUB,
        "prompts": None,
        "prompt_tokens": 64,
        "output_tokens": 32,
        "bounds": Bounds(duration_s=10.0, max_requests=30),
        "seed": 5,
    }
    options.update(kw)
    return virtual.make_runner(**options)  # type: ignore[arg-type]


def test_records_carry_the_engines_own_latencies() -> None:
    run = runner()
    records = run(Profile("c4", "concurrency", 4), 1)
    direct = simulate(
        run.replica.engine,
        Workload(num_requests=30, prompt_tokens=64, output_tokens=32, concurrency=4, seed=6),
    )
    assert len(records) == len(direct.records) == 30
    for mine, theirs in zip(records, direct.records, strict=True):
        assert mine.ttft == pytest.approx(theirs.ttft)
        assert mine.latency == pytest.approx(theirs.e2e)
        assert mine.output_tokens == theirs.output_tokens == 32
        assert mine.prompt_tokens == 64


def test_speculation_shows_as_multi_token_chunks_and_faster_tpot() -> None:
    spec = summarise(runner()(Profile("sync", "concurrency", 1), 1))
    plain = summarise(runner(vllm_args="")(Profile("sync", "concurrency", 1), 1))
    # 32 tokens in fewer than 32 chunks when drafts are accepted.
    assert spec.itl_ms.count < plain.itl_ms.count
    assert spec.tpot_ms.p50 < plain.tpot_ms.p50


def test_same_seed_same_numbers() -> None:
    a = summarise(runner()(Profile("r", "rate", 8.0), 3)).as_dict()
    b = summarise(runner()(Profile("r", "rate", 8.0), 3)).as_dict()
    assert a == b


def test_rate_profiles_are_bounded_by_rate_times_duration() -> None:
    run = runner(bounds=Bounds(duration_s=2.0, max_requests=100))
    assert len(run(Profile("r", "rate", 5.0), 1)) == 10


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"gpu": "TPU-v9"}, "TPU-v9"),
        ({"output_tokens": 10**6}, "max-model-len"),
        ({"vllm_args": "--speculative-config '{"}, "--vllm-args"),
    ],
)
def test_bad_virtual_settings_are_clear_errors(kw: dict[str, object], message: str) -> None:
    with pytest.raises(virtual.VirtualError, match=message):
        runner(**kw)


def test_virtual_sweep_command_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "virt"
    argv = ["load", "sweep", "--virtual", "--model", MODEL, "--hub-mirror", str(HUB)]
    argv += ["--vllm-args", SPEC, "--output", str(out), "--max-requests", "40"]
    argv += ["--prompt-tokens", "128", "--output-tokens", "64", "--throughput-concurrency", "32"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "virtual"
    assert len(report["profiles"]) == 10
    rates = [p["request_rate"] for p in report["profiles"]]
    assert rates[1] > rates[0]
    assert all(rates[0] < p["target_rate"] < rates[1] for p in report["profiles"][2:])
    assert "simulated H100-80GB" in (out / "report.md").read_text()


def test_prompt_file_sets_the_virtual_prompt_length_by_words() -> None:
    run = runner(prompts=["one two three", "four five six seven eight"])
    assert run.prompt_tokens == 4
