"""Every Grafana panel's PromQL returns data from a real Prometheus scraping the twin.

The twin here is the real thing at small scale: ``specops sim serve`` (a simulated vLLM
replica exporting vLLM's metrics) under load from the official ``openai`` client, and
``specops run`` reconciling the Qwen3-8B example on the local control plane (its
``/metrics`` carry the per-resource series). A real Prometheus scrapes both. Each
query of ``charts/specops/dashboards/specops.json`` is run with Grafana's variables
filled in, and must return at least one series with sane values.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not a package
from operator_harness import Kube, OperatorProcess, example, install_crd, wait_for

from hubserver import HubServer
from specops.devcluster import Cluster
from specops.prom import PrometheusServer
from specops.prom.filesd import TargetGroup, write_targets

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "specops" / "dashboards" / "specops.json"
HUB = ROOT / "tests" / "fixtures" / "hub"
QWEN_EXAMPLE = ROOT / "manifests" / "examples" / "qwen3-8b.yaml"
SERVED = "qwen3-8b"
K = 3

#: Ranges each panel's values must fall in (None: any finite number).
SANE: dict[str, tuple[float, float] | None] = {
    "Acceptance rate": (0.0, 1.0),
    "Mean acceptance length": (1.0, K + 1.0),
    "Per-position acceptance": (0.0, 1.0),
    "Speculation on/off and k": (0.0, 16.0),
    "KV cache usage": (0.0, 1.0),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def queries() -> list[tuple[str, str, str]]:
    """(panel title, legend, PromQL with Grafana's variables filled in) for every target."""
    board = json.loads(DASHBOARD.read_text())
    out = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            out.append((panel["title"], target["legendFormat"], target["expr"]))
    return out


def fill(expr: str, namespace: str) -> str:
    return (
        expr.replace("$__rate_interval", "30s")
        .replace("$model", ".*")
        .replace("$namespace", namespace)
    )


@pytest.fixture
def simulator() -> Iterator[str]:
    """One simulated Qwen3-8B replica with its EAGLE-3 drafter, k=3, 20x time."""
    port = free_port()
    spec = {
        "model": "RedHatAI/Qwen3-8B-speculator.eagle3",
        "method": "eagle3",
        "num_speculative_tokens": K,
    }
    argv = [
        sys.executable,
        "-m",
        "specops",
        "sim",
        "serve",
        "Qwen/Qwen3-8B",
        "--tensor-parallel-size",
        "1",
        "--speculative-config",
        json.dumps(spec),
        "--max-model-len",
        "8192",
        "--served-model-name",
        SERVED,
        "--port",
        str(port),
        "--gpu",
        "H100-80GB",
        "--hub-mirror",
        str(HUB),
        "--seed",
        "7",
        "--time-scale",
        "20",
        "--load-time",
        "0",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                import urllib.request

                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_for("the simulator to be healthy", healthy, timeout=30)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Load:
    """A few concurrent chat completions in a loop until stopped (OpenAI client)."""

    def __init__(self, base: str, workers: int = 4) -> None:
        self.client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        self.stop_event = threading.Event()
        self.done = 0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]

    def _work(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.client.chat.completions.create(
                    model=SERVED,
                    messages=[{"role": "user", "content": "Explain speculative decoding. " * 8}],
                    max_tokens=64,
                )
                self.done += 1
            except openai.OpenAIError as exc:
                self.errors.append(str(exc))
                time.sleep(0.2)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=30)


def test_every_dashboard_query_returns_data(
    kube_cluster: Cluster,
    namespace: str,
    prometheus_server: PrometheusServer,
    simulator: str,
    tmp_path: Path,
) -> None:
    # The operator reconciles the example, so its per-resource series exist.
    with kube_cluster.api_client() as api:
        install_crd(api)
        hub = HubServer()
        hub.add_fixtures()
        with hub:
            operator = OperatorProcess(
                kube_cluster.kubeconfig, namespace, tmp_path, hub_endpoint=hub.endpoint, mirror=None
            )
            operator.start()
            try:
                kube = Kube(api, namespace)
                body = example(QWEN_EXAMPLE)
                kube.create(body)
                kube.wait_condition(body["metadata"]["name"], "Ready", "True", timeout=120)
                prometheus_server.add_operator_target(f"127.0.0.1:{operator.port}")
                # The simulated replica, labelled as a PodMonitor would label it.
                sim_target = simulator.removeprefix("http://")
                write_targets(
                    prometheus_server.targets_dir / "sim.json",
                    [TargetGroup((sim_target,), {"namespace": namespace, "pod": "qwen3-8b-0"})],
                )
                with Load(simulator) as load:
                    results = wait_for_all(prometheus_server, namespace, timeout=90)
                assert load.done > 0, load.errors[:3]
            finally:
                operator.stop()
                print(f"--- operator log ---\n{operator.logs()}")

    for (title, legend, expr), samples in results.items():
        print(f"{title} / {legend}: " + ", ".join(f"{s.value:.3g}" for s in samples[:4]))
        bounds = SANE.get(title)
        for sample in samples:
            assert math.isfinite(sample.value), f"{title} / {legend}: {sample.value} from {expr}"
            if bounds is not None:
                low, high = bounds
                assert low <= sample.value <= high, f"{title} / {legend}: {sample.value}"
    # The two series the operator panel is about, for the example resource.
    on = results[next(k for k in results if k[1].startswith("on "))]
    assert {s.labels["name"] for s in on} == {body["metadata"]["name"]}


def wait_for_all(
    prom: PrometheusServer, namespace: str, timeout: float
) -> dict[tuple[str, str, str], list[Any]]:
    """Poll until every query returns data; fail naming the panels that never did."""
    client = prom.client()
    pending = queries()
    results: dict[tuple[str, str, str], list[Any]] = {}
    deadline = time.monotonic() + timeout
    while pending:
        still = []
        for key in pending:
            samples = client.query(fill(key[2], namespace))
            if samples:
                results[key] = samples
            else:
                still.append(key)
        pending = still
        if not pending:
            break
        if time.monotonic() > deadline:
            missing = "\n".join(
                f"  {t} / {legend}: {fill(e, namespace)}" for t, legend, e in pending
            )
            pytest.fail(f"panels without data after {timeout:.0f}s:\n{missing}", pytrace=False)
        time.sleep(1.0)
    return results
