"""Helpers for the operator's integration tests: the operator as a real subprocess.

``specops run`` is started exactly as a user starts it (``python -m specops
run``), watching only the test's namespace, with its own leader Lease and
metrics port, and logging to a file that is printed when a test fails.
Waiting is always polling for a condition with a deadline, never sleeping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "serving.specops.dev_speculativedeployments.yaml"
MIRROR = ROOT / "tests" / "fixtures" / "hub"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
GROUP, VERSION, PLURAL = "serving.specops.dev", "v1alpha1", "speculativedeployments"

T = TypeVar("T")


def wait_for(
    what: str,
    check: Callable[[], T | None],
    timeout: float = 60.0,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout.

    ``explain`` adds what the cluster says about it to the failure message
    (pods' conditions, Events), so a timeout in CI can be diagnosed from the log.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except ApiException as exc:
            if exc.status not in (404, 409, 429, 500, 503):
                raise
            last = None
        if last:
            return last
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{detail}", pytrace=False)
        time.sleep(0.2)


@contextlib.contextmanager
def pod_runner(
    kubeconfig: str, targets_dir: Path, log_path: Path, *, load_time_s: float = 3.0
) -> Iterator[subprocess.Popen[bytes]]:
    """The real ``python -m specops.podrunner`` (fixture Hub mirror, 0.5 s polls).

    Tests that check a clean exit send SIGTERM themselves inside the block;
    otherwise it is stopped (SIGTERM, then SIGKILL after 30 s) on the way
    out, and the tail of its log is printed for a failing test.
    """
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "specops.podrunner",
            "--kubeconfig",
            kubeconfig,
            "--targets-dir",
            str(targets_dir),
            "--hub-mirror",
            str(MIRROR),
            "--load-time",
            str(load_time_s),
            "--interval",
            "0.5",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        print("--- pod runner log ---\n" + log_path.read_text()[-3000:])


def explain_pods(core: client.CoreV1Api, namespace: str, selector: str) -> Callable[[], str]:
    """For ``wait_for(explain=...)``: the selected pods' phase and conditions, and the
    namespace's Events (FailedScheduling, FailedCreate, admission denials)."""

    def explain() -> str:
        lines = []
        for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
            conditions = [
                f"{c.type}={c.status} {c.reason or ''} {c.message or ''}".strip()
                for c in pod.status.conditions or []
            ]
            lines.append(f"pod {pod.metadata.name} {pod.status.phase}: {conditions}")
        for event in core.list_namespaced_event(namespace).items:
            lines.append(
                f"event {event.involved_object.kind}/{event.involved_object.name} "
                f"{event.reason}: {event.message}"
            )
        return "\n".join(lines) or "no pods and no events"

    return explain


def stays_quiet(what: str, probe: Callable[[], object], seconds: float) -> None:
    """Assert ``probe()`` keeps its value for an observation window (proving an absence)."""
    first = probe()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = probe()
        if now != first:
            pytest.fail(f"{what}: {first!r} changed to {now!r}", pytrace=False)
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install_crd(api: client.ApiClient) -> None:
    """Apply the generated CRD (server-side, so re-running is harmless) and wait until served."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    ext = client.ApiextensionsV1Api(api)
    api.call_api(
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
        "PATCH",
        query_params=[("fieldManager", "specops-tests"), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml"},
        body=crd,
        auth_settings=["BearerToken"],
        response_type="object",
    )

    def established() -> bool:
        got = ext.read_custom_resource_definition(crd["metadata"]["name"])
        return any(
            c.type == "Established" and c.status == "True" for c in (got.status.conditions or [])
        )

    wait_for("the CRD to be established", established, timeout=30)


class OperatorProcess:
    """``python -m specops run`` as a subprocess."""

    def __init__(
        self,
        kubeconfig: str,
        namespace: str,
        log_dir: Path,
        *,
        hub_endpoint: str,
        mirror: Path | None = MIRROR,
        lease_name: str | None = None,
        identity: str | None = None,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.port = free_port()
        self.identity = identity or f"op-{uuid.uuid4().hex[:6]}"
        self.log_path = log_dir / f"operator-{self.identity}.log"
        self.lease_name = lease_name or f"specops-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "SPECOPS_HUB_ENDPOINT": hub_endpoint,
            "SPECOPS_LEASE_NAMESPACE": namespace,
            "SPECOPS_LEASE_DURATION_SECONDS": "4",
            "SPECOPS_LEASE_RENEW_SECONDS": "1",
            "SPECOPS_LOG_LEVEL": "INFO",
            # Loopback only: the default in-cluster Prometheus name would be a DNS lookup
            # off this machine once the closed loop evaluates; a test with a real
            # Prometheus passes its URL in extra_env.
            "SPECOPS_PROMETHEUS_URL": "http://127.0.0.1:9",
            **(extra_env or {}),
        }
        self.env.pop("SPECOPS_HUB_MIRROR", None)
        if mirror is not None:
            self.env["SPECOPS_HUB_MIRROR"] = str(mirror)
        self.args = [
            sys.executable,
            "-m",
            "specops",
            "run",
            "--namespace",
            namespace,
            "--metrics-port",
            str(self.port),
            "--bind-address",
            "127.0.0.1",
            "--lease-name",
            self.lease_name,
            "--identity",
            self.identity,
            *(extra_args or []),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        log.close()
        wait_for(f"operator {self.identity} /healthz", self._healthy, timeout=30)
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"operator exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        """The /metrics samples as ``{'name{labels}': value}``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def metric(self, key: str) -> float:
        return self.metrics().get(key, 0.0)

    def leading(self) -> bool:
        return self.metric("specops_leader") == 1.0

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as when a node dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int | None:
        """SIGTERM and wait (the operator hands its Lease back)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode

    def logs(self) -> str:
        try:
            return self.log_path.read_text()[-6000:]
        except OSError:
            return ""


class Kube:
    """The few reads and writes the tests make, on one API client."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "metadata": {**body["metadata"], "namespace": self.ns}}
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, body
        )
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name
        )
        return result

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec}
        )
        return result

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        for cond in (self.get(name).get("status") or {}).get("conditions") or []:
            if cond["type"] == type_:
                return dict(cond)
        return None

    def wait_condition(
        self,
        name: str,
        type_: str,
        status: str,
        *,
        reason: str | None = None,
        generation: int | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            cond = self.condition(name, type_)
            if cond is None or cond["status"] != status:
                return None
            if reason is not None and cond.get("reason") != reason:
                return None
            if generation is not None and cond.get("observedGeneration") != generation:
                return None
            return cond

        def describe() -> str:
            try:
                return str((self.get(name).get("status") or {}).get("conditions"))
            except ApiException as exc:
                return str(exc)

        try:
            return wait_for(f"{name}: {type_}={status} ({reason})", check, timeout)
        except pytest.fail.Exception:
            pytest.fail(
                f"{name}: {type_} did not become {status}/{reason}; conditions: {describe()}",
                pytrace=False,
            )

    def deployment(self, name: str) -> Any | None:
        try:
            return self.apps.read_namespaced_deployment(name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pods(self, name: str) -> list[Any]:
        selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=server"
        return list(self.core.list_namespaced_pod(self.ns, label_selector=selector).items)

    def events(self, name: str) -> list[Any]:
        items = self.core.list_namespaced_event(self.ns).items
        return [e for e in items if e.involved_object.name == name]

    def event_reasons(self, name: str) -> list[str]:
        return sorted(e.reason for e in self.events(name))


def example(path: Path, name: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(path.read_text())
    body["metadata"].pop("namespace", None)
    if name:
        body["metadata"]["name"] = name
    return body


def resource(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpeculativeDeployment",
        "metadata": {"name": name},
        "spec": spec,
    }


def qwen_spec(**overrides: Any) -> dict[str, Any]:
    """Qwen3-8B with its EAGLE-3 drafter on one H100: the smallest example."""
    spec: dict[str, Any] = {
        "verifier": {"model": "Qwen/Qwen3-8B"},
        "speculator": {"model": "RedHatAI/Qwen3-8B-speculator.eagle3"},
        "gpu": {"type": "H100-80GB"},
        "speculation": {"mode": "Always"},
    }
    spec.update(overrides)
    return spec
