"""One simulated replica as a real process on loopback, called with the official openai client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "tests" / "fixtures" / "hub"
SPEC = json.dumps(
    {
        "model": "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3",
        "method": "eagle3",
        "num_speculative_tokens": 3,
    }
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def post(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def serve(*extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "specops",
        "sim",
        "serve",
        "meta-llama/Llama-3.1-8B-Instruct",
        "--tensor-parallel-size",
        "1",
        "--speculative-config",
        SPEC,
        "--max-model-len",
        "4096",
        "--served-model-name",
        "llama",
        "--port",
        str(port),
        "--host",
        "0.0.0.0",
        "--enable-prefix-caching",
        "--gpu",
        "H100",
        "--hub-mirror",
        str(HUB),
        "--seed",
        "42",
        *extra,
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def wait_healthy(proc: subprocess.Popen[bytes], base: str, timeout: float = 20.0) -> list[int]:
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            status, _ = get(base + "/health")
        except OSError:
            time.sleep(0.05)
            continue
        seen.append(status)
        if status == 200:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"simulator not healthy after {timeout}s; statuses {seen}")


@pytest.fixture(scope="module")
def replica() -> Iterator[str]:
    # 20 simulated seconds of model load at 20x: about one wall second of 503s.
    proc, base = serve("--time-scale", "20", "--load-time", "20")
    try:
        statuses = wait_healthy(proc, base)
        assert 503 in statuses, "health must answer 503 while the model loads"
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def client(replica: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=replica + "/v1", api_key="unused", max_retries=0)


def metric_values(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _, text = get(base + "/metrics")
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in values.items() if n == name)


def test_models_lists_the_served_name(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["llama"]


def test_completion_with_ignore_eos_returns_exactly_max_tokens(client: openai.OpenAI) -> None:
    prompt = " ".join(["word"] * 100)
    result = client.completions.create(
        model="llama", prompt=prompt, max_tokens=40, extra_body={"ignore_eos": True}
    )
    assert result.usage is not None
    assert result.usage.prompt_tokens == 100
    assert result.usage.completion_tokens == 40
    assert result.usage.total_tokens == 140
    assert len(result.choices[0].text.split()) == 40
    assert result.choices[0].finish_reason == "length"


def test_streaming_chat_delivers_every_token_and_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="llama",
        messages=[{"role": "user", "content": "tell me a story about a cat"}],
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"min_tokens": 30},
    )
    text, chunks, usage, reasons = "", 0, None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            chunks += 1
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert usage is not None
    assert usage.prompt_tokens == 7 + 3  # seven words plus the chat template
    assert usage.completion_tokens == 30 == len(text.split())
    assert reasons == ["length"]
    # With speculation several tokens arrive per engine step, so fewer chunks than tokens.
    assert chunks < 30


def test_without_ignore_eos_requests_stop_on_their_own(client: openai.OpenAI) -> None:
    reasons = set()
    for _ in range(6):
        result = client.completions.create(model="llama", prompt="hello", max_tokens=300)
        assert result.usage is not None
        assert 1 <= result.usage.completion_tokens <= 300
        reasons.add(result.choices[0].finish_reason)
    assert "stop" in reasons


def test_bad_requests_get_openai_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-5", prompt="hi", max_tokens=5)
    with pytest.raises(openai.BadRequestError, match="maximum context length is 4096"):
        client.completions.create(model="llama", prompt="hi " * 4000, max_tokens=200)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model="llama", prompt="hi", max_tokens=-1)


def test_metrics_count_what_the_client_received(replica: str, client: openai.OpenAI) -> None:
    before = metric_values(replica)
    received = 0
    for _ in range(3):
        result = client.completions.create(
            model="llama", prompt="a b c", max_tokens=25, extra_body={"ignore_eos": True}
        )
        assert result.usage is not None
        received += result.usage.completion_tokens
    after = metric_values(replica)

    def delta(name: str) -> float:
        return total(after, name) - total(before, name)

    assert delta("vllm:generation_tokens_total") == received
    assert delta("vllm:prompt_tokens_total") == 9
    assert delta("vllm:request_success_total") == 3
    assert delta("vllm:time_to_first_token_seconds_count") == 3
    drafts = delta("vllm:spec_decode_num_drafts_total")
    accepted = delta("vllm:spec_decode_num_accepted_tokens_total")
    assert delta("vllm:spec_decode_num_draft_tokens_total") == 3 * drafts > 0
    # Every decode step emits accepted + 1 tokens; the first token comes from prefill.
    assert received - 3 <= drafts + accepted


def test_control_endpoint_changes_acceptance_and_speed(replica: str, client: openai.OpenAI) -> None:
    def run() -> tuple[float, float, float]:
        before = metric_values(replica)
        client.completions.create(
            model="llama", prompt="x", max_tokens=60, extra_body={"ignore_eos": True}
        )
        after = metric_values(replica)
        drafts = total(after, "vllm:spec_decode_num_drafts_total") - total(
            before, "vllm:spec_decode_num_drafts_total"
        )
        accepted = total(after, "vllm:spec_decode_num_accepted_tokens_total") - total(
            before, "vllm:spec_decode_num_accepted_tokens_total"
        )
        e2e = total(after, "vllm:e2e_request_latency_seconds_sum") - total(
            before, "vllm:e2e_request_latency_seconds_sum"
        )
        return drafts, accepted, e2e

    status, state = post(replica + "/control", {"alpha": 0.0})
    assert status == 200 and state["acceptance_profile"] == "alpha=0"
    drafts, accepted, slow_e2e = run()
    assert accepted == 0 and drafts == 59  # one token per step after the prefill's first
    status, state = post(replica + "/control", {"alpha": 1.0, "slowdown": 1.0})
    assert status == 200
    _, accepted, fast_e2e = run()
    assert accepted > 0 and fast_e2e < slow_e2e
    status, _ = post(replica + "/control", {"slowdown": 3.0})
    _, _, slowed_e2e = run()
    assert slowed_e2e == pytest.approx(3 * fast_e2e, rel=0.15)
    status, body = post(replica + "/control", {"alpha": 2})
    assert status == 400 and "alpha" in str(body)
    status, body = post(replica + "/control", {"acceptance_profile": "code", "alpha": 0.5})
    assert status == 400
    post(replica + "/control", {"acceptance_profile": "chat", "slowdown": 1.0})


def test_a_request_can_name_its_tasks_acceptance_profile(
    replica: str, client: openai.OpenAI
) -> None:
    post(replica + "/control", {"alpha": 0.0})
    try:
        before = total(metric_values(replica), "vllm:spec_decode_num_accepted_tokens_total")
        client.completions.create(
            model="llama", prompt="x", max_tokens=30, extra_body={"ignore_eos": True}
        )
        middle = total(metric_values(replica), "vllm:spec_decode_num_accepted_tokens_total")
        client.completions.create(
            model="llama",
            prompt="x",
            max_tokens=30,
            extra_body={"ignore_eos": True, "acceptance_profile": "math"},
        )
        after = total(metric_values(replica), "vllm:spec_decode_num_accepted_tokens_total")
        assert middle == before and after > middle
        with pytest.raises(openai.BadRequestError, match="unknown acceptance profile"):
            client.completions.create(
                model="llama", prompt="x", max_tokens=3, extra_body={"acceptance_profile": "poem"}
            )
    finally:
        post(replica + "/control", {"acceptance_profile": "chat"})


def test_unknown_flags_are_a_one_line_error() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "specops",
            "sim",
            "serve",
            "meta-llama/Llama-3.1-8B-Instruct",
            "--hub-mirror",
            str(HUB),
            "--no-such-flag",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert result.returncode == 2
    assert "unrecognized vLLM argument --no-such-flag" in result.stderr
    assert "Traceback" not in result.stderr


def test_models_that_do_not_fit_are_refused_at_start() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "specops",
            "sim",
            "serve",
            "meta-llama/Llama-3.3-70B-Instruct",
            "--hub-mirror",
            str(HUB),
            "--gpu",
            "H100",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "raise TP" in result.stderr and "Traceback" not in result.stderr


def test_two_replicas_with_one_seed_answer_identically() -> None:
    def session() -> tuple[list[tuple[str, int]], float]:
        proc, base = serve("--time-scale", "50", "--load-time", "0")
        try:
            wait_healthy(proc, base)
            client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
            answers = []
            for prompt in ("one two three", "four five", "six"):
                result = client.completions.create(model="llama", prompt=prompt, max_tokens=200)
                assert result.usage is not None
                answers.append((result.choices[0].text, result.usage.completion_tokens))
            accepted = total(metric_values(base), "vllm:spec_decode_num_accepted_tokens_total")
            return answers, accepted
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    first, second = session(), session()
    assert first == second
    assert first[1] > 0


def test_an_engine_fault_answers_500_instead_of_hanging() -> None:
    import asyncio

    import aiohttp

    from specops.sim.args import build_replica, parse_serve_args
    from specops.sim.server import SimServer

    replica = build_replica(
        parse_serve_args(
            ["meta-llama/Llama-3.1-8B-Instruct", "--hub-mirror", str(HUB), "--load-time", "0"]
        )
    )

    async def scenario() -> tuple[int, int, str]:
        server = SimServer(replica)

        def broken(now: float) -> None:
            raise RuntimeError("injected fault")

        server.engine.step = broken  # type: ignore[method-assign,assignment]
        port = await server.start(0)
        try:
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{port}"
                body = {"prompt": "hi", "max_tokens": 5}
                async with session.post(url + "/v1/completions", json=body) as response:
                    status = response.status
                    message = (await response.json())["error"]["message"]
                async with session.get(url + "/health") as response:
                    health = response.status
            return status, health, message
        finally:
            await server.stop()

    status, health, message = asyncio.run(asyncio.wait_for(scenario(), timeout=20))
    assert status == 500 and health == 500
    assert "injected fault" in message
