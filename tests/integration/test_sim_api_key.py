"""The simulator honours an API key the way vLLM does (``VLLM_API_KEY`` or ``--api-key``).

vLLM 0.33.0 adds its authentication middleware when ``--api-key`` or
``VLLM_API_KEY`` is set: every ``/v1/*`` request (OPTIONS excepted) must carry
``Authorization: Bearer <key>``, else 401 ``{"error": "Unauthorized"}``;
``/health`` and ``/metrics`` stay open, so probes and Prometheus need no key.
The twin runs the rendered pod's command line, so it must behave the same.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from specops.sim.args import build_replica, parse_serve_args
from specops.sim.server import SimServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "tests" / "fixtures" / "hub"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
KEY = "sk-test-0f9e8d7c6b5a"


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_key_from_the_environment_guards_v1_and_leaves_health_and_metrics_open(
    tmp_path: Path,
) -> None:
    """The real ``specops sim serve`` process, given the key as the pod gives it to vLLM."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "VLLM_API_KEY": KEY}
    argv = [sys.executable, "-m", "specops", "sim", "serve", MODEL, "--port", str(port)]
    argv += ["--served-model-name", "llama", "--hub-mirror", str(HUB), "--load-time", "0"]
    log = (tmp_path / "sim.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "sim.log").read_text()
            try:
                if status_of(base + "/health") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "simulator not healthy after 30 s"
            time.sleep(0.1)

        assert status_of(base + "/metrics") == 200, "Prometheus scrapes without a key"
        assert status_of(base + "/v1/models") == 401
        assert status_of(base + "/v1/models", {"Authorization": "Bearer wrong"}) == 401
        assert status_of(base + "/v1/models", {"Authorization": KEY}) == 401, "Bearer is required"
        assert status_of(base + "/v1/models", {"Authorization": f"Bearer {KEY}"}) == 200

        without = openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            without.completions.create(model="llama", prompt="hi", max_tokens=3)
        with_key = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)
        done = with_key.completions.create(model="llama", prompt="hi", max_tokens=3)
        assert done.usage is not None and done.usage.completion_tokens >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    assert KEY not in (tmp_path / "sim.log").read_text(), "the key is never logged"


def test_the_flag_wins_over_the_environment_and_no_key_means_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aiohttp

    monkeypatch.setenv("VLLM_API_KEY", "from-env")
    flagged = parse_serve_args([MODEL, "--hub-mirror", str(HUB), "--api-key", "from-flag"])
    assert flagged.api_key == "from-flag"
    assert "from-flag" not in repr(flagged)
    monkeypatch.delenv("VLLM_API_KEY")
    open_args = parse_serve_args([MODEL, "--hub-mirror", str(HUB), "--load-time", "0"])
    assert open_args.api_key is None

    async def statuses() -> tuple[int, int, int]:
        guarded = SimServer(build_replica(flagged))
        unguarded = SimServer(build_replica(open_args))
        ports = [await guarded.start(0), await unguarded.start(0)]
        try:
            async with aiohttp.ClientSession() as session:
                results = []
                for port, headers in (
                    (ports[0], {"Authorization": "Bearer from-env"}),
                    (ports[0], {"Authorization": "Bearer from-flag"}),
                    (ports[1], {}),
                ):
                    url = f"http://127.0.0.1:{port}/v1/models"
                    async with session.get(url, headers=headers) as response:
                        results.append(response.status)
                return results[0], results[1], results[2]
        finally:
            await guarded.stop()
            await unguarded.stop()

    assert asyncio.run(asyncio.wait_for(statuses(), timeout=20)) == (401, 200, 200)
