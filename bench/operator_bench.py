"""Operator benchmark against the local control plane (prints figures; not a timed test).

Measures, with ``specops run`` as a subprocess exactly as users start it:

1. latency from SpeculativeDeployment creation to its child Deployment
   existing, one resource at a time (p50, p99 over ``--latency-count``);
2. time for ``--burst-count`` resources created at once to all reach their
   first reconciled status (``status.observedGeneration`` set);
3. the operator's peak RSS (``VmHWM`` from /proc).

Resources pin ``replicas: 0`` so the figures are the operator's and the API
server's, not kwok's pod simulation. Models come from the fixture mirror.

Usage::

    .venv/bin/python bench/operator_bench.py                 # starts its own cluster
    .venv/bin/python bench/operator_bench.py --kubeconfig K  # an existing cluster
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "serving.specops.dev_speculativedeployments.yaml"
MIRROR = ROOT / "tests" / "fixtures" / "hub"
GROUP, VERSION, PLURAL = "serving.specops.dev", "v1alpha1", "speculativedeployments"
GOALS = {"p50_ms": 100.0, "p99_ms": 500.0, "burst_s": 60.0, "rss_mb": 250.0}


def body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpeculativeDeployment",
        "metadata": {"name": name},
        "spec": {
            "verifier": {"model": "Qwen/Qwen3-8B"},
            "speculator": {"model": "RedHatAI/Qwen3-8B-speculator.eagle3"},
            "gpu": {"type": "H100-80GB"},
            "replicas": 0,
            "speculation": {"mode": "Always"},
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install_crd(api: client.ApiClient) -> None:
    crd = yaml.safe_load(CRD.read_text())
    api.call_api(
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
        "PATCH",
        query_params=[("fieldManager", "specops-bench"), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml"},
        body=crd,
        auth_settings=["BearerToken"],
        response_type="object",
    )
    ext = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = ext.read_custom_resource_definition(crd["metadata"]["name"])
        if any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []):
            return
        time.sleep(0.1)
    raise SystemExit("the CRD did not become established")


class Watcher(threading.Thread):
    """Records when each object of a kind first appears."""

    def __init__(self, list_fn: Any, namespace: str, *, needs_status: bool = False) -> None:
        super().__init__(daemon=True)
        self.list_fn = list_fn
        self.namespace = namespace
        self.needs_status = needs_status
        self.seen: dict[str, float] = {}
        self.changed: queue.Queue[str] = queue.Queue()
        self.stop_flag = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            w = watch.Watch()
            try:
                self.ready.set()
                for event in w.stream(self.list_fn, self.namespace, timeout_seconds=30):
                    obj = event["object"]
                    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
                    name = meta["name"] if isinstance(meta, dict) else meta.name
                    if name in self.seen:
                        continue
                    if self.needs_status:
                        status = obj.get("status") or {}
                        if status.get("observedGeneration") is None:
                            continue
                    self.seen[name] = time.monotonic()
                    self.changed.put(name)
                    if self.stop_flag.is_set():
                        break
            except Exception:
                time.sleep(0.1)


def operator_samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", help="use this cluster instead of starting one")
    parser.add_argument("--latency-count", type=int, default=200)
    parser.add_argument("--burst-count", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    started_cluster = None
    kubeconfig = args.kubeconfig
    if kubeconfig is None:
        from specops.devcluster import cluster, tools

        name = f"bench-op-{os.getpid()}"
        started_cluster = name
        kubeconfig = cluster.up(name, bin_dir=tools.find(), die_with_parent=True).kubeconfig
    api = client.ApiClient(
        (lambda c: (config.load_kube_config(config_file=kubeconfig, client_configuration=c), c)[1])(
            client.Configuration()
        )
    )
    core, custom, apps = client.CoreV1Api(api), client.CustomObjectsApi(api), client.AppsV1Api(api)
    install_crd(api)
    run_id = uuid.uuid4().hex[:6]
    ns_latency, ns_burst = f"bench-latency-{run_id}", f"bench-burst-{run_id}"
    for ns in (ns_latency, ns_burst):
        core.create_namespace({"metadata": {"name": ns}})

    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "SPECOPS_HUB_MIRROR": str(MIRROR),
        "SPECOPS_HUB_ENDPOINT": "http://127.0.0.1:9",
        "SPECOPS_PROMETHEUS_URL": "http://127.0.0.1:9",
        "SPECOPS_LEASE_NAMESPACE": ns_latency,
        "SPECOPS_LOG_LEVEL": "WARNING",
    }
    log_path = Path(f"/tmp/specops-operator-bench-{run_id}.log")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "specops", "run", "--metrics-port", str(port),
             "--bind-address", "127.0.0.1", "--lease-name", f"bench-{run_id}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    figures: dict[str, Any] = {}
    failure = ""
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    if b"specops_leader 1.0" in r.read():
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"operator did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)

        # 1. latency, one at a time
        deployments = Watcher(apps.list_namespaced_deployment, ns_latency)
        deployments.start()
        deployments.ready.wait()
        time.sleep(0.5)  # let the watch connect before the first create
        latencies = []
        for i in range(args.latency_count):
            name = f"lat-{i}"
            t0 = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, ns_latency, PLURAL, body(name))
            while name not in deployments.seen:
                try:
                    deployments.changed.get(timeout=10)
                except queue.Empty:
                    raise SystemExit(f"no Deployment for {name} after 10 s") from None
            latencies.append((deployments.seen[name] - t0) * 1000)
        deployments.stop_flag.set()
        figures["latency_count"] = len(latencies)
        figures["p50_ms"] = round(statistics.median(latencies), 1)
        figures["p99_ms"] = round(percentile(latencies, 99), 1)
        figures["max_ms"] = round(max(latencies), 1)

        # 2. burst: all at once, until every one has a reconciled status. The time a
        # resource was first reconciled is read from its status (the conditions'
        # lastTransitionTime, one-second resolution, same clock), so a slow client
        # here cannot make the operator look slower than it is.
        wall0 = datetime.now(UTC)
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: custom.create_namespaced_custom_object(
                        GROUP, VERSION, ns_burst, PLURAL, body(f"burst-{i}")
                    ),
                    range(args.burst_count),
                )
            )
        created = time.monotonic() - t0
        first_status: dict[str, datetime] = {}
        reported = 0
        while len(first_status) < args.burst_count:
            if time.monotonic() - t0 > 900:
                raise SystemExit(f"only {len(first_status)}/{args.burst_count} after 900 s")
            raw = custom.list_namespaced_custom_object(
                GROUP, VERSION, ns_burst, PLURAL, _preload_content=False
            )
            for item in json.loads(raw.data)["items"]:
                status = item.get("status") or {}
                if (
                    status.get("observedGeneration") is None
                    or item["metadata"]["name"] in first_status
                ):
                    continue
                stamps = [c["lastTransitionTime"] for c in status.get("conditions") or []]
                first_status[item["metadata"]["name"]] = min(
                    datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps
                )
            if len(first_status) >= reported + 100:
                reported = len(first_status) // 100 * 100
                print(
                    f"  {reported} reconciled after {time.monotonic() - t0:.0f} s", file=sys.stderr
                )
            time.sleep(1.0)
        figures["burst_count"] = args.burst_count
        figures["burst_create_s"] = round(created, 1)
        last = max(first_status.values())
        # +1: the stamps are whole seconds, rounded down
        figures["burst_s"] = round((last - wall0).total_seconds() + 1, 1)
        figures["rss_mb"] = round(peak_rss_mb(proc.pid), 1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            samples = operator_samples(r.read().decode())
        cycles = samples.get('specops_reconcile_duration_seconds_count{outcome="applied"}', 0.0)
        total = samples.get('specops_reconcile_duration_seconds_sum{outcome="applied"}', 0.0)
        figures["reconciles"] = int(cycles)
        figures["mean_reconcile_ms"] = round(1000 * total / cycles, 1) if cycles else None
    except SystemExit as exc:
        failure = str(exc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        for ns in (ns_latency, ns_burst):
            with contextlib.suppress(client.exceptions.ApiException):
                core.delete_namespace(ns)
        if started_cluster is not None:
            from specops.devcluster import cluster

            cluster.down(started_cluster)

    if failure:
        print(f"operator benchmark failed: {failure} (operator log: {log_path})", file=sys.stderr)
        print(f"partial figures: {json.dumps(figures)}", file=sys.stderr)
        return 1
    print(f"operator benchmark ({os.cpu_count()} CPUs, kube-apiserver 1.34 on loopback)")
    print(
        f"  create -> Deployment, n={figures['latency_count']}: p50 {figures['p50_ms']} ms"
        f" (goal < {GOALS['p50_ms']:.0f}), p99 {figures['p99_ms']} ms"
        f" (goal < {GOALS['p99_ms']:.0f}), max {figures['max_ms']} ms"
    )
    print(
        f"  {figures['burst_count']} resources to first reconciled status: {figures['burst_s']} s"
        f" (goal < {GOALS['burst_s']:.0f}; creating them took {figures['burst_create_s']} s)"
    )
    print(f"  operator peak RSS: {figures['rss_mb']} MB (goal < {GOALS['rss_mb']:.0f})")
    print(
        f"  {figures['reconciles']} applied reconcile cycles,"
        f" mean {figures['mean_reconcile_ms']} ms each (inside the operator)"
    )
    print(f"  load average during the run: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
