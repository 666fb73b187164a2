"""A sweep against the real simulator server agrees with the simulator's own counters."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from specops.prom.server import free_loopback_port

pytestmark = pytest.mark.integration

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
VERIFIER = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    """One real ``specops sim serve`` replica on loopback; yields its base URL."""
    port = free_loopback_port()
    log = (tmp_path / "sim.log").open("wb")
    spec = '{"method": "eagle3", "model": "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3", "num_speculative_tokens": 3}'  # noqa: E501
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "specops",
            "sim",
            "serve",
            VERIFIER,
            "--speculative-config",
            spec,
            "--max-num-seqs",
            "32",
            "--gpu",
            "H100-80GB",
            "--port",
            str(port),
            "--hub-mirror",
            str(HUB),
            "--load-time",
            "0",
            "--seed",
            "7",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"simulator did not start: {(tmp_path / 'sim.log').read_text()[-2000:]}")
        time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def counters(url: str) -> dict[str, float]:
    """Every sample summed over labels, by sample name."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def test_sweep_report_matches_simulator_metrics(simulator: str, tmp_path: Path) -> None:
    before = counters(simulator)
    out = tmp_path / "report"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "specops",
            "load",
            "sweep",
            "--url",
            simulator,
            "--model",
            VERIFIER,
            "--output",
            str(out),
            "--points",
            "2",
            "--throughput-concurrency",
            "16",
            "--duration",
            "3",
            "--max-requests",
            "40",
            "--prompt-tokens",
            "64",
            "--output-tokens",
            "32",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    after = counters(simulator)

    report = json.loads((out / "report.json").read_text())
    assert [p["name"] for p in report["profiles"]][:2] == ["synchronous", "throughput"]
    assert len(report["profiles"]) == 4
    for name in ("report.md", "latency_vs_rate.png", "throughput_vs_rate.png"):
        assert (out / name).stat().st_size > 0
    totals = report["totals"]
    assert totals["errored"] == 0
    assert totals["completed"] > 10

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    # What the load generator counted is exactly what the replica says it served.
    assert delta("vllm:request_success_total") == totals["completed"]
    assert delta("vllm:generation_tokens_total") == totals["output_tokens"]
    assert delta("vllm:prompt_tokens_total") == totals["prompt_tokens"]
    assert totals["output_tokens"] == 32 * totals["completed"]
    assert delta("vllm:time_to_first_token_seconds_count") == totals["completed"]

    # Client-side TTFT includes the server's, so its mean can only be larger.
    server_ttft_ms = 1000 * delta("vllm:time_to_first_token_seconds_sum") / totals["completed"]
    client_ttft_ms = (
        sum(p["ttft_ms"]["mean"] * p["completed"] for p in report["profiles"]) / totals["completed"]
    )
    assert client_ttft_ms >= 0.95 * server_ttft_ms
    # Throughput really saturates above the synchronous rate.
    sync, thr = report["profiles"][0], report["profiles"][1]
    assert thr["request_rate"] > 2 * sync["request_rate"]
    assert "| synchronous | c=1 |" in (out / "report.md").read_text()


def test_chat_api_with_prompts_from_jsonl(simulator: str, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "\n".join(json.dumps({"prompt": f"question {i} about cats and dogs"}) for i in range(3))
    )
    before = counters(simulator)
    out = tmp_path / "chat"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "specops",
            "load",
            "run",
            "--url",
            simulator,
            "--model",
            VERIFIER,
            "--api",
            "chat",
            "--prompts",
            str(prompts),
            "--concurrency",
            "2",
            "--max-requests",
            "6",
            "--output-tokens",
            "16",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    after = counters(simulator)
    [profile] = json.loads((out / "report.json").read_text())["profiles"]
    assert (profile["completed"], profile["errored"]) == (6, 0)
    assert profile["output_tokens"] == 6 * 16
    served = after["vllm:request_success_total"] - before.get("vllm:request_success_total", 0)
    assert served == 6
    prompt_tokens = after["vllm:prompt_tokens_total"] - before.get("vllm:prompt_tokens_total", 0)
    assert prompt_tokens == profile["prompt_tokens"]
