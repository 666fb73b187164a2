"""Start and stop the demo's stack: cluster, Prometheus, pod runner, operator pods, chart.

Every step waits for a concrete sign that it worked (a ready endpoint, a
held Lease, a ready replica behind the front door) within a bounded time,
and a failure names the log to read. ``up`` begins with ``down``, so a
second ``make demo`` after a crash or Ctrl-C starts from a clean slate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from specops.demo import daemons
from specops.demo.values import (
    DEMO_NAMESPACE,
    RELEASE,
    RELEASE_NAMESPACE,
    DemoTiming,
    helm_values,
    overlay,
)
from specops.devcluster import cluster as devcluster
from specops.devcluster import tools
from specops.prom.loopback import require_loopback_url
from specops.prom.server import PrometheusServer, free_loopback_port

DEFAULT_NAME = "demo"
EXAMPLE = "manifests/examples/qwen3-8b.yaml"
LEASE = "specops-operator"

Say = Callable[[str], None]


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and where to look."""


def repo_root() -> Path:
    root = tools.repo_root()
    if root is None:
        raise DemoError("the demo runs from a source checkout (charts/, manifests/, tests/)")
    return root


def demo_dir(name: str) -> Path:
    """Runtime state of demo ``name`` (next to the cluster's, outside the repository)."""
    devcluster.validate_name(name)
    return devcluster.state_root() / f"specops-demo-{name}"


@dataclass(frozen=True)
class Stack:
    name: str
    directory: Path
    kubeconfig: str
    bin_dir: str
    server: str
    prometheus_url: str
    targets_dir: Path
    operator_logs: Path
    metrics_port: int
    namespace: str
    resource: str
    model: str
    target_itl_ms: float | None = None


def down(name: str = DEFAULT_NAME) -> list[str]:
    """Stop everything demo ``name`` started and remove its runtime state."""
    directory = demo_dir(name)
    stopped = daemons.stop_all(directory)
    stopped += devcluster.down(name)
    shutil.rmtree(directory, ignore_errors=True)
    return stopped


def _wait(what: str, check: Callable[[], bool], timeout: float, hint: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except DemoError:  # a program died: waiting longer cannot help
            raise
        except Exception:  # "not yet"
            pass
        time.sleep(0.5)
    raise DemoError(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f"; {hint}" if hint else "")
    )


def _http_ok(url: str) -> bool:
    require_loopback_url(url)
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _alive_or_fail(directory: Path, name: str) -> Callable[[], None]:
    def check() -> None:
        for d in daemons.daemons(daemons.read_state(directory)):
            if d.name == name and not daemons.is_ours(d):
                tail = "\n".join(Path(d.log).read_text(errors="replace").splitlines()[-15:])
                raise DemoError(f"{name} exited; log {d.log}:\n{tail}")

    return check


def start_prometheus(directory: Path, metrics_port: int) -> str:
    server = PrometheusServer(
        directory / "targets",
        scrape_interval_s=2.0,
        operator_targets=(f"127.0.0.1:{metrics_port}",),
        workdir=directory / "prom",
        port=free_loopback_port(),
    )
    server.write_config()
    binary = shutil.which("prometheus")
    if binary is None:
        raise DemoError("prometheus not found on PATH; run `bash hack/install-system-deps`")
    daemons.launch(
        directory,
        "prometheus",
        [
            binary,
            f"--config.file={server.config_path}",
            f"--storage.tsdb.path={server.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{server.port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ],
    )
    _wait(
        "Prometheus /-/ready",
        lambda: _http_ok(f"{server.url}/-/ready"),
        60,
        "see logs/prometheus.log",
    )
    return server.url


def helm(stack_env: dict[str, str], args: list[str], timeout: float = 120) -> str:
    result = subprocess.run(
        ["helm", *args], env=stack_env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise DemoError(f"helm {' '.join(args[:2])} failed: {result.stderr.strip()[-800:]}")
    return result.stdout


def _lease_holder(api: Any) -> str | None:
    from kubernetes import client

    lease = client.CoordinationV1Api(api).read_namespaced_lease(LEASE, RELEASE_NAMESPACE)
    return str(lease.spec.holder_identity) if lease.spec.holder_identity else None


def frontdoor(targets_dir: Path, key: str) -> tuple[str | None, int]:
    """The front door URL of Service ``key`` (ns/name) and its number of ready replicas."""
    try:
        state = json.loads((targets_dir / "frontdoors.json").read_text())
    except (OSError, ValueError):
        return None, 0
    door = state.get("frontdoors", {}).get(key)
    if not door:
        return None, 0
    ready = sum(1 for b in door.get("backends", []) if b.get("ready"))
    return require_loopback_url(str(door["url"])), ready


def up(
    name: str = DEFAULT_NAME,
    *,
    say: Say = print,
    timing: DemoTiming | None = None,
    max_replicas: int = 4,
    target_itl_ms: float | None = None,
    load_time_s: float = 10.0,
    time_scale: float | None = None,
) -> Stack:
    """Everything up to a ready replica of the example behind its front door."""
    timing = timing or DemoTiming()
    root = repo_root()
    stopped = down(name)
    if stopped:
        say(f"cleaned up a previous demo: stopped {', '.join(stopped)}")
    directory = demo_dir(name)
    directory.mkdir(parents=True)
    directory.chmod(0o700)
    daemons.write_state(directory, {"name": name, "started": time.time()})

    t0 = time.monotonic()
    say("building or reusing the control-plane tools (hack/build-tools) ...")
    bin_dir = tools.find()
    say(f"starting the local control plane {name!r} (etcd, kube-apiserver, controllers, kwok) ...")
    # Simulated readiness: a vLLM pod is Ready only once its simulator has
    # loaded, so rollouts (a change of k) cost capacity as they do on GPUs.
    kube = devcluster.up(name, bin_dir=bin_dir, die_with_parent=False, simulated_readiness=True)
    say(f"  cluster ready in {time.monotonic() - t0:.0f}s at {kube.server}")

    metrics_port = free_loopback_port()
    prom_url = start_prometheus(directory, metrics_port)
    say(f"Prometheus on {prom_url} (scrapes the pod runner's replicas and the operator)")

    targets = directory / "targets"
    mirror = root / "tests" / "fixtures" / "hub"
    runner_argv = [
        sys.executable, "-m", "specops.podrunner",
        "--kubeconfig", kube.kubeconfig,
        "--targets-dir", str(targets),
        "--hub-mirror", str(mirror),
        "--load-time", str(load_time_s),
    ]  # fmt: skip
    if time_scale is not None:
        runner_argv += ["--time-scale", str(time_scale)]
    daemons.launch(directory, "podrunner", runner_argv)
    operator_dir = directory / "operator"
    daemons.launch(
        directory,
        "operator-pods",
        [
            sys.executable, "-m", "specops.demo.operator_pod",
            "--kubeconfig", kube.kubeconfig,
            "--state-dir", str(operator_dir),
        ],
    )  # fmt: skip
    say("pod runner and operator-pod runner started (the twin's kubelets)")

    values = helm_values(
        prometheus_url=prom_url, hub_mirror=mirror, metrics_port=metrics_port, timing=timing
    )
    values_file = directory / "values-demo.yaml"
    values_file.write_text(yaml.safe_dump(values, sort_keys=False))
    env = kube.env()
    say(
        f"helm install {RELEASE} charts/specops -n {RELEASE_NAMESPACE} --create-namespace "
        f"-f {values_file}"
    )
    helm(
        env,
        ["upgrade", "--install", RELEASE, str(root / "charts" / "specops"),
         "-n", RELEASE_NAMESPACE, "--create-namespace", "-f", str(values_file)],
    )  # fmt: skip

    api = kube.api_client()
    operator_alive = _alive_or_fail(directory, "operator-pods")

    def leading() -> bool:
        operator_alive()
        return _lease_holder(api) is not None

    _wait(
        "the operator pod to take the leader Lease",
        leading,
        120,
        f"see {operator_dir / 'logs'}",
    )
    say(
        "operator pod running as `specops run` under its ServiceAccount token; "
        f"Lease held by {_lease_holder(api)}"
    )

    example = yaml.safe_load((root / EXAMPLE).read_text())
    resource = overlay(
        example, max_replicas=max_replicas, target_itl_ms=target_itl_ms, timing=timing
    )
    _apply(api, resource)
    rname = str(resource["metadata"]["name"])
    model = str(resource["spec"].get("servedModelName") or resource["spec"]["verifier"]["model"])
    say(
        f"applied {EXAMPLE} as {DEMO_NAMESPACE}/{rname} (maxReplicas {max_replicas}, "
        f"speculation Auto, window {timing.window_s}s)"
    )

    runner_alive = _alive_or_fail(directory, "podrunner")

    def serving() -> bool:
        runner_alive()
        operator_alive()
        return frontdoor(targets, f"{DEMO_NAMESPACE}/{rname}")[1] > 0

    _wait(
        "a ready replica behind the front door",
        serving,
        240,
        f"see {directory / 'logs'} and {operator_dir / 'logs'}",
    )
    api.close()
    say(f"  first replica serving after {time.monotonic() - t0:.0f}s")
    return Stack(
        name=name,
        directory=directory,
        kubeconfig=kube.kubeconfig,
        bin_dir=str(bin_dir),
        server=kube.server,
        prometheus_url=prom_url,
        targets_dir=targets,
        operator_logs=operator_dir / "logs",
        metrics_port=metrics_port,
        namespace=DEMO_NAMESPACE,
        resource=rname,
        model=model,
        target_itl_ms=resource["spec"].get("autoscaling", {}).get("targetITLMilliseconds"),
    )


def _apply(api: Any, resource: dict[str, Any]) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": DEMO_NAMESPACE}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    group, version = str(resource["apiVersion"]).split("/")
    crds = client.ApiextensionsV1Api(api)

    def established() -> bool:
        crd = crds.read_custom_resource_definition(f"speculativedeployments.{group}")
        return any(
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    _wait("the SpeculativeDeployment CRD", established, 60)
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, DEMO_NAMESPACE, "speculativedeployments", resource
    )
