"""The closed loop end to end: control plane, Prometheus, simulated replicas, ``specops run``.

Everything is real and on loopback: the local kube-apiserver with kwok GPU
nodes, the pod runner giving every Running pod a simulator with the pod's own
vLLM arguments (speculation on/off and k are what the operator rendered),
Prometheus scraping them every second, and the operator as a subprocess
reading that Prometheus. The test only drives load through the Service's
front door, sets the workload's acceptance through the simulators' control
endpoint, and reads status, Events and Deployments. Time constants are the
operator's settings, shortened (2 s evaluations, 6 s dwell, 20 s between
switches); every wait is a poll with a deadline.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from operator_harness import (
    Kube,
    OperatorProcess,
    install_crd,
    pod_runner,
    resource,
    stays_quiet,
    wait_for,
)

from specops.prom import PrometheusServer

pytestmark = pytest.mark.integration

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
NAME = "qwen"

#: The loop's clock for these tests (production defaults are 30 s / 60 s / 5 min).
FAST = {
    "SPECOPS_EVALUATION_SECONDS": "2",
    "SPECOPS_RESYNC_SECONDS": "120",
    "SPECOPS_POLICY_OBSERVATION_WINDOW_SECONDS": "6",
    "SPECOPS_POLICY_STABLE_WINDOW_SECONDS": "8",
    "SPECOPS_POLICY_PANIC_WINDOW_SECONDS": "3",
    "SPECOPS_POLICY_DWELL_SECONDS": "6",
    "SPECOPS_POLICY_MIN_SWITCH_INTERVAL_SECONDS": "20",
    "SPECOPS_POLICY_PRIOR_HALF_LIFE_SECONDS": "15",
}


def qwen(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "verifier": {"model": "Qwen/Qwen3-8B"},
        "speculator": {"model": "RedHatAI/Qwen3-8B-speculator.eagle3"},
        "gpu": {"type": "H100-80GB"},
        "speculation": {"mode": "Auto", "windowSeconds": 60},
    }
    spec.update(overrides)
    return resource(NAME, spec)


# --------------------------------------------------------------------------- the twin


class Twin:
    """The pod runner's view (front doors, simulators) and the resource's status."""

    def __init__(self, kube: Kube, prom: PrometheusServer, state: Path) -> None:
        self.kube = kube
        self.prom = prom
        self.state_path = state

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_path.read_text()))
        except (OSError, ValueError):
            return {"frontdoors": {}, "simulators": {}}

    def door(self) -> str | None:
        entry = self.state()["frontdoors"].get(f"{self.kube.ns}/{NAME}")
        return str(entry["url"]) if entry else None

    def simulators(self) -> dict[str, dict[str, Any]]:
        prefix = f"{self.kube.ns}/"
        return {k: v for k, v in self.state()["simulators"].items() if k.startswith(prefix)}

    def ready_simulators(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.simulators().items() if v.get("ready")}

    def status(self) -> dict[str, Any]:
        return dict(self.kube.get(NAME).get("status") or {})

    def speculation(self) -> dict[str, Any]:
        return dict(self.status().get("speculation") or {})

    def autoscaling(self) -> dict[str, Any]:
        return dict(self.status().get("autoscaling") or {})

    def condition(self, type_: str) -> dict[str, Any]:
        return self.kube.condition(NAME, type_) or {}

    def rolling_update(self) -> dict[str, Any]:
        dep = self.kube.deployment(NAME)
        assert dep is not None
        rolling = dep.spec.strategy.rolling_update
        return {"maxSurge": rolling.max_surge, "maxUnavailable": rolling.max_unavailable}

    def deployment_replicas(self) -> int | None:
        dep = self.kube.deployment(NAME)
        return None if dep is None else int(dep.spec.replicas)

    def speculating_pods(self) -> set[bool]:
        """Whether each Running pod drafts (its vLLM args carry a speculative config)."""
        out = set()
        for pod in self.kube.pods(NAME):
            if pod.metadata.deletion_timestamp or pod.status.phase != "Running":
                continue
            args = " ".join(pod.spec.containers[0].args or [])
            out.add("--speculative-config" in args)
        return out


def post(url: str, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return dict(json.loads(resp.read() or b"{}"))


class Load:
    """Closed-loop clients through the front door; the concurrency can change at any time."""

    def __init__(self, door: str, model: str, max_workers: int = 96, tokens: int = 128) -> None:
        self.door = door
        self.model = model
        self.tokens = tokens
        self.target = 0
        self.done = 0
        self.failed = 0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(max_workers)
        ]

    def _work(self, index: int) -> None:
        body = {
            "model": self.model,
            "prompt": "Explain speculative decoding. " * 8,
            "max_tokens": self.tokens,
            "ignore_eos": True,
        }
        while not self.stop_event.is_set():
            if index >= self.target:
                self.stop_event.wait(0.2)
                continue
            try:
                post(self.door + "/v1/completions", body)
                with self.lock:
                    self.done += 1
            except (OSError, ValueError):
                with self.lock:
                    self.failed += 1
                self.stop_event.wait(0.2)  # a replica restarting answers 503: try again

    def concurrency(self, n: int) -> None:
        self.target = n

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.target = 0
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=70)


class Acceptance:
    """Keeps every simulator of the namespace at the workload's acceptance (``POST /control``).

    A replica restarted by a speculation switch comes up with the simulator's
    default profile; the workload has not changed, so it is set again.
    """

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.alpha: float | None = None
        self.applied: dict[str, tuple[int, float]] = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def set(self, alpha: float) -> None:
        self.alpha = alpha

    def _run(self) -> None:
        while not self.stop_event.wait(0.3):
            alpha = self.alpha
            if alpha is None:
                continue
            for key, sim in self.twin.simulators().items():
                if self.applied.get(key) == (sim["pid"], alpha):
                    continue
                try:
                    post(sim["url"] + "/control", {"alpha": alpha}, timeout=5)
                    self.applied[key] = (sim["pid"], alpha)
                except (OSError, ValueError):
                    pass  # not listening yet: next round

    def __enter__(self) -> Acceptance:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)


@pytest.fixture
def twin(
    kube_cluster: Any, namespace: str, prometheus_server: PrometheusServer, tmp_path: Path
) -> Iterator[Twin]:
    """CRD installed, the pod runner running (3 s simulated model load), Prometheus scraping."""
    with (
        pod_runner(
            kube_cluster.kubeconfig, prometheus_server.targets_dir, tmp_path / "podrunner.log"
        ),
        kube_cluster.api_client() as api,
    ):
        install_crd(api)
        yield Twin(
            Kube(api, namespace),
            prometheus_server,
            prometheus_server.targets_dir / "frontdoors.json",
        )


@pytest.fixture
def start_operator(
    kube_cluster: Any, namespace: str, prometheus_server: PrometheusServer, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """``specops run`` on this namespace reading the test's Prometheus with the fast clock."""
    started: list[OperatorProcess] = []

    def start(**env: str) -> OperatorProcess:
        proc = OperatorProcess(
            kube_cluster.kubeconfig,
            namespace,
            tmp_path,
            hub_endpoint="http://127.0.0.1:9",
            extra_env={"SPECOPS_PROMETHEUS_URL": prometheus_server.url, **FAST, **env},
        )
        started.append(proc.start())
        prometheus_server.add_operator_target(f"127.0.0.1:{proc.port}")
        return proc

    yield start
    for proc in started:
        proc.stop()
        print(f"--- operator log ({proc.identity}) ---\n{proc.logs()}")


def serving(twin: Twin, replicas: int, timeout: float = 90.0) -> str:
    """Wait until ``replicas`` simulators are ready behind the front door; its URL."""
    wait_for(
        f"{replicas} ready simulator(s)",
        lambda: len(twin.ready_simulators()) == replicas,
        timeout=timeout,
    )
    door = wait_for("the front door", twin.door, timeout=30)
    return str(door)


def served_model(door: str) -> str:
    with urllib.request.urlopen(door + "/v1/models", timeout=10) as resp:
        return str(json.loads(resp.read())["data"][0]["id"])


def stamp(text: str | None) -> float:
    assert text, "no timestamp"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------- speculation


def test_speculation_turns_off_under_saturation_stays_off_and_comes_back_after_dwell(
    twin: Twin, start_operator: Callable[..., OperatorProcess]
) -> None:
    """A low-acceptance workload (alpha 0.4): worth drafting at 2 requests, not at 64.

    The cost model predicts +2..7% for drafting at 2 running requests (kept:
    switching k would not clear the 20% band) and -21% at 64 (off clears it);
    while off, the belief decays toward the task prior (summarization, 0.63),
    which still says "off" at 64 but "on" once the load is gone.
    """
    prior = {"SPECOPS_POLICY_ACCEPTANCE_PRIOR": "summarization"}
    operator = start_operator(**prior)
    twin.kube.create(qwen())
    door = serving(twin, 1)
    with Acceptance(twin) as acceptance, Load(door, served_model(door)) as load:
        acceptance.set(0.4)

        # ---- low load: stays on, acceptance and k measured from the replica's counters
        load.concurrency(2)
        measured = wait_for(
            "a measured acceptance length",
            lambda: twin.speculation().get("meanAcceptanceLength"),
            timeout=60,
        )
        assert twin.condition("MetricsAvailable").get("status") == "True"
        stays_quiet("speculation at low load", lambda: twin.speculation().get("active"), 12)
        spec = twin.speculation()
        assert spec["active"] is True and spec["numSpeculativeTokens"] == 3
        # alpha 0.4 at k=3 emits 1 + 0.4 + 0.16 + 0.064 = 1.62 tokens per step
        assert 1.45 < float(spec["meanAcceptanceLength"]) < 1.8, measured
        assert twin.speculating_pods() == {True}
        low = twin.condition("SpeculationActive")
        print(f"FIGURES low load: {low['reason']}: {low['message']}")

        # ---- saturation: off within a bounded number of evaluations, with the cost reason
        load.concurrency(64)
        ramp = time.monotonic()
        wait_for("speculation off", lambda: twin.speculation().get("active") is False, 90)
        took = time.monotonic() - ramp
        spec = twin.speculation()
        assert spec["reason"] == "SpeculationCostsThroughput", spec
        # stable window (8 s) + dwell (6 s) + evaluations at 2 s, with room for 2 slow cores
        assert took < 60, f"took {took:.0f} s"
        switched_off = stamp(spec["lastTransitionTime"])
        # GPUs were free: the new pod started before the old one stopped
        assert twin.rolling_update() == {"maxSurge": 1, "maxUnavailable": 0}
        wait_for(
            "every pod restarted without drafting", lambda: twin.speculating_pods() == {False}, 90
        )

        # ---- no flapping while the load stays high, across an operator restart too:
        # the new process reads the switch time and the measured acceptance from status
        operator.stop()
        operator = start_operator(**prior)
        stays_quiet(
            "speculation under sustained load",
            lambda: twin.speculation().get("active"),
            30,
        )
        assert "SpeculationEnabled" not in twin.kube.event_reasons(NAME)
        assert twin.speculating_pods() == {False}

        # ---- load falls: back on after the dwell, never before the minimum interval
        load.concurrency(1)
        fell = time.time()
        wait_for("speculation back on", lambda: twin.speculation().get("active") is True, 120)
        spec = twin.speculation()
        assert spec["reason"] == "SpeculationPays", spec
        back_on = stamp(spec["lastTransitionTime"])
        assert back_on - fell >= 6 - 1, "switched before the dwell time"
        assert back_on - switched_off >= 20 - 1, "switched within the minimum interval"
        print(
            f"FIGURES saturation: off {took:.1f} s after the ramp to 64; "
            f"on {back_on - fell:.1f} s after the load fell "
            f"({back_on - switched_off:.0f} s after switching off)"
        )
        reasons = twin.kube.event_reasons(NAME)
        assert (
            reasons.count("SpeculationDisabled") == 1 and reasons.count("SpeculationEnabled") == 1
        )
        assert load.done > 0
    samples = operator.metrics()
    assert samples[f'specops_speculation_active{{name="{NAME}",namespace="{twin.kube.ns}"}}'] == 1.0


def test_acceptance_collapse_turns_speculation_off_naming_acceptance(
    twin: Twin, start_operator: Callable[..., OperatorProcess]
) -> None:
    start_operator()
    body = qwen(speculation={"mode": "Auto", "windowSeconds": 60, "minAcceptanceRate": 0.3})
    twin.kube.create(body)
    door = serving(twin, 1)
    with Acceptance(twin) as acceptance, Load(door, served_model(door)) as load:
        load.concurrency(4)
        wait_for(
            "a healthy measured acceptance rate",
            lambda: (twin.speculation().get("acceptanceRate") or 0) > 0.4,
            timeout=60,
        )
        assert twin.speculation()["active"] is True
        acceptance.set(0.08)  # the drafter stops matching the workload
        collapsed = time.monotonic()
        wait_for("speculation off", lambda: twin.speculation().get("active") is False, 60)
        took = time.monotonic() - collapsed
        spec = twin.speculation()
        assert spec["reason"] == "AcceptanceBelowFloor", spec
        cond = twin.condition("SpeculationActive")
        assert cond["reason"] == "AcceptanceBelowFloor" and "cceptance" in cond["message"]
        assert float(spec["acceptanceRate"]) < 0.3
        assert took >= 6 - 1, "turned off before the dwell time"
        print(f"FIGURES collapse: off {took:.1f} s after acceptance fell to 0.08")
        assert "SpeculationDisabled" in twin.kube.event_reasons(NAME)


# --------------------------------------------------------------------------- metrics gone


def test_prometheus_stopped_holds_state_and_restarted_resumes_control(
    twin: Twin, start_operator: Callable[..., OperatorProcess]
) -> None:
    start_operator()
    twin.kube.create(
        qwen(autoscaling={"minReplicas": 1, "maxReplicas": 3, "targetConcurrencyPerReplica": 4})
    )
    door = serving(twin, 1)
    with Load(door, served_model(door)) as load:
        load.concurrency(2)
        wait_for(
            "metrics available",
            lambda: twin.condition("MetricsAvailable").get("status") == "True",
            timeout=60,
        )
        held = (twin.speculation().get("active"), twin.autoscaling().get("desiredReplicas"))
        assert held == (True, 1)

        twin.prom.stop()
        stopped = time.monotonic()
        cond = wait_for(
            "MetricsAvailable=False",
            lambda: (c := twin.condition("MetricsAvailable")).get("status") == "False" and c,
            timeout=30,
        )
        assert cond["reason"] == "MetricsMissing" and "unreachable" in cond["message"]
        blind_after = time.monotonic() - stopped
        stays_quiet(
            "speculation, k and replicas without metrics",
            lambda: (
                twin.speculation().get("active"),
                twin.speculation().get("numSpeculativeTokens"),
                twin.autoscaling().get("desiredReplicas"),
                twin.deployment_replicas(),
            ),
            12,
        )
        assert "MetricsUnavailable" in twin.kube.event_reasons(NAME)

        twin.prom.start()
        restarted = time.monotonic()
        # control resumes: fresh metrics, and the autoscaler acts on them again
        wait_for(
            "MetricsAvailable=True again",
            lambda: twin.condition("MetricsAvailable").get("status") == "True",
            timeout=60,
        )
        seeing_after = time.monotonic() - restarted
        load.concurrency(12)
        wait_for(
            "a scale-up decided on the restored metrics",
            lambda: (twin.autoscaling().get("desiredReplicas") or 0) > 1,
            timeout=60,
        )
        print(
            f"FIGURES prometheus: MetricsAvailable=False {blind_after:.1f} s after the stop, "
            f"True {seeing_after:.1f} s after the restart"
        )


# --------------------------------------------------------------------------- replicas


def test_replicas_follow_sustained_load_and_shrink_only_after_stabilisation(
    twin: Twin, start_operator: Callable[..., OperatorProcess]
) -> None:
    operator = start_operator()
    twin.kube.create(
        qwen(
            speculation={"mode": "Never"},
            autoscaling={
                "minReplicas": 1,
                "maxReplicas": 3,
                "targetConcurrencyPerReplica": 4,
                "scaleDownStabilizationSeconds": 20,
            },
        )
    )
    door = serving(twin, 1)
    with Load(door, served_model(door)) as load:
        load.concurrency(12)  # 12 in the system at 4 per replica: 3 replicas
        loaded = time.monotonic()
        wait_for("3 desired replicas", lambda: twin.autoscaling().get("desiredReplicas") == 3, 60)
        assert twin.autoscaling()["reason"] in ("ScaleUp", "ScaleUpPanic")
        up_after = time.monotonic() - loaded
        assert twin.deployment_replicas() == 3
        desired = f'specops_desired_replicas{{name="{NAME}",namespace="{twin.kube.ns}"}}'
        assert operator.metrics()[desired] == 3.0
        serving(twin, 3)
        sims = twin.ready_simulators()
        nodes = {p.spec.node_name for p in twin.kube.pods(NAME) if p.status.phase == "Running"}
        assert nodes and all(n.startswith("h100-") for n in nodes), nodes

        def per_replica() -> dict[str, float]:
            out = {}
            for key, sim in sims.items():
                with urllib.request.urlopen(sim["url"] + "/metrics", timeout=5) as resp:
                    text = resp.read().decode()
                out[key] = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("vllm:request_success_total")
                )
            return out

        before = per_replica()
        wait_for(
            "the front door to spread load over every replica",
            lambda: all(v > before[k] + 2 for k, v in per_replica().items()),
            timeout=60,
        )
        load.concurrency(0)
        idle = time.time()
        wait_for("scale-down", lambda: twin.autoscaling().get("desiredReplicas") == 1, 90)
        scaled = twin.autoscaling()
        assert scaled["reason"] == "ScaleDown"
        waited = stamp(scaled["lastScaleTime"]) - idle
        assert waited >= 20 - 1, f"scaled down {waited:.0f} s after the load stopped"
        print(
            f"FIGURES replicas: 3 desired {up_after:.1f} s after load 12; "
            f"scaled down {waited:.1f} s after the load stopped (stabilisation 20 s)"
        )
        reasons = twin.kube.event_reasons(NAME)
        assert reasons.count("Scaled") >= 2


def test_gpus_exhausted_leaves_pods_pending_and_stops_asking(
    twin: Twin, start_operator: Callable[..., OperatorProcess]
) -> None:
    """Two A100-40GB nodes of 4 GPUs: two replicas of 4 GPUs fit, a third never will."""
    start_operator()
    twin.kube.create(
        qwen(
            gpu={"type": "A100-40GB"},
            tensorParallelSize=4,
            speculation={"mode": "Never"},
            autoscaling={"minReplicas": 1, "maxReplicas": 6, "targetConcurrencyPerReplica": 2},
        )
    )
    door = serving(twin, 1)
    with Load(door, served_model(door)) as load:
        load.concurrency(8)  # wants 4 replicas
        wait_for(
            "ReplicasSchedulable=False",
            lambda: twin.condition("ReplicasSchedulable").get("status") == "False",
            timeout=90,
        )
        cond = twin.condition("ReplicasSchedulable")
        assert cond["reason"] == "InsufficientGPUs" and "nvidia.com/gpu" in cond["message"]
        pending = [p for p in twin.kube.pods(NAME) if p.status.phase == "Pending"]
        assert pending
        asked = twin.autoscaling()["desiredReplicas"]
        assert 2 < asked <= 4
        load.concurrency(12)  # wants 6: not asked for while pods cannot be placed
        wait_for(
            "the autoscaler to say GPUs are exhausted",
            lambda: twin.autoscaling().get("reason") == "GPUCapacityExhausted",
            timeout=60,
        )
        stays_quiet("desired replicas", lambda: twin.autoscaling().get("desiredReplicas"), 12)
        assert twin.autoscaling()["desiredReplicas"] == asked
        assert twin.deployment_replicas() == asked
        assert len(twin.ready_simulators()) == 2
        # no surge pod while pods wait for GPUs: a roll would go one pod at a time
        assert twin.rolling_update() == {"maxSurge": 0, "maxUnavailable": 1}


def test_dynamic_speculation_table_is_rendered_and_served(
    twin: Twin, start_operator: Callable[..., OperatorProcess]
) -> None:
    """vLLM 0.33 takes num_speculative_tokens_per_batch_size: the loop renders the policy's."""
    start_operator()
    twin.kube.create(
        qwen(speculation={"mode": "Auto", "windowSeconds": 60, "perBatchSizeTable": True})
    )
    door = serving(twin, 1)
    with Load(door, served_model(door)) as load:
        load.concurrency(2)

        def table_args() -> list[list[int]] | None:
            for pod in twin.kube.pods(NAME):
                args = pod.spec.containers[0].args or []
                if pod.metadata.deletion_timestamp or "--speculative-config" not in args:
                    continue
                config = json.loads(args[args.index("--speculative-config") + 1])
                table = config.get("num_speculative_tokens_per_batch_size")
                if table:
                    return list(table)
            return None

        table = wait_for("a rendered speculation table", table_args, timeout=90)
        # bands cover 1..max batch in order, K between 0 and the speculative config's k
        assert table[0][0] == 1
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(table))
        spec = twin.speculation()
        assert spec["active"] is True
        assert all(0 <= k <= spec["numSpeculativeTokens"] for _, _, k in table)
        serving(twin, 1)  # the replica restarted with the table serves again
        print(f"FIGURES table: {table}")
