"""Bring the Helm chart's operator pod to life as a real ``specops run`` process.

kwok marks the chart's operator pod Running but runs nothing. This is the
twin's kubelet for that one kind of pod: for every operator pod Running on a
kwok node it starts ``specops <the container's args>`` with the pod's own
environment (``value`` as written, ``valueFrom`` resolved the way the kubelet
does for the simple sources) and the credentials a real pod gets: a token of
the pod's ServiceAccount from the TokenRequest API, bound to the pod, in a
kubeconfig pointing at the loopback apiserver with the cluster's CA (the
``kube-root-ca.crt`` ConfigMap the kubelet mounts). So the demo's operator
runs under the chart's RBAC exactly as in a real cluster; a missing rule
shows up as a 403 in its log, not as a silently working admin client.

The process stops (SIGTERM, then SIGKILL) when its pod is deleted, stops
Running or is terminating; a process that exits is restarted with a growing
back-off, as a kubelet restarts a crashed container (``specops run`` exits
non-zero when it loses its Lease, on purpose).

Pure helpers (selection, env resolution, kubeconfig, argv) are separate from
:class:`Supervisor`, which polls the API server like the pod runner does.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("specops.demo.operator_pod")

OPERATOR_SELECTOR = "app.kubernetes.io/part-of=specops,app.kubernetes.io/component=operator"
"""Labels the chart puts on its operator pods (``specops.labels``)."""
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
TOKEN_SECONDS = 24 * 3600
"""Long enough for any demo session; a kubelet would refresh at 80 % of the lifetime."""
BASE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ")
"""The only host variables a process inherits: a container starts from its image's env."""
_PR_SET_PDEATHSIG = 1


class OperatorPodError(RuntimeError):
    """A pod cannot be run as specified (unresolvable env, no token); the message says why."""


# --- pure helpers -------------------------------------------------------------------


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def skip_reason(pod: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why this operator pod must not run now, or None when it should run."""
    meta = pod.get("metadata", {})
    if meta.get("deletionTimestamp"):
        return "terminating"
    phase = pod.get("status", {}).get("phase")
    if phase != "Running":
        return f"phase {phase or 'unknown'}"
    node_name = pod.get("spec", {}).get("nodeName")
    node = nodes.get(str(node_name)) if node_name else None
    if node is None:
        return f"node {node_name!r} not found"
    if KWOK_NODE_ANNOTATION not in (node.get("metadata", {}).get("annotations") or {}):
        return f"node {node_name} is not a kwok node"
    if operator_container(pod) is None:
        return "no container"
    return None


def operator_container(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The container named ``operator`` (the chart's), else the only container."""
    containers = list(pod.get("spec", {}).get("containers") or [])
    for container in containers:
        if container.get("name") == "operator":
            return dict(container)
    return dict(containers[0]) if len(containers) == 1 else None


def _field_value(pod: Mapping[str, Any], path: str) -> str:
    """A downward-API ``fieldRef.fieldPath`` the kubelet supports, read from the pod."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    for prefix, source in (
        ("metadata.labels", meta.get("labels")),
        ("metadata.annotations", meta.get("annotations")),
    ):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str((source or {}).get(path[len(prefix) + 2 : -2], ""))
    raise OperatorPodError(f"fieldRef {path!r} is not supported")


Lookup = Callable[[str, str, str], str | None]
"""(namespace, name, key) -> value, None when the object or key is absent."""


def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    secret: Lookup | None = None,
    config_map: Lookup | None = None,
) -> dict[str, str]:
    """The container's environment as the kubelet would build it (later entries win).

    ``value`` is used as written (``$(VAR)`` references expanded against earlier
    entries, as the kubelet does); ``valueFrom`` supports ``fieldRef``,
    ``secretKeyRef`` and ``configMapKeyRef`` (``optional`` honoured). Anything
    else (``resourceFieldRef``, ``envFrom``) raises :class:`OperatorPodError`
    instead of starting an operator with a different configuration.
    """
    namespace = str(pod.get("metadata", {}).get("namespace", ""))
    if container.get("envFrom"):
        raise OperatorPodError("envFrom is not supported by the demo's pod runner")
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        name = str(entry["name"])
        source = entry.get("valueFrom")
        if source is None:
            env[name] = _expand(str(entry.get("value") or ""), env)
            continue
        if "fieldRef" in source:
            env[name] = _field_value(pod, str(source["fieldRef"]["fieldPath"]))
            continue
        for kind, lookup in (("secretKeyRef", secret), ("configMapKeyRef", config_map)):
            ref = source.get(kind)
            if ref is None:
                continue
            value = lookup(namespace, str(ref["name"]), str(ref["key"])) if lookup else None
            if value is not None:
                env[name] = value
            elif not ref.get("optional"):
                raise OperatorPodError(
                    f"env {name}: {kind} {namespace}/{ref['name']} key {ref['key']} not found"
                )
            break
        else:
            raise OperatorPodError(f"env {name}: valueFrom {sorted(source)} is not supported")
    return env


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names replaced, ``$$`` escapes, rest kept."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and ")" in value[i:]:
            end = value.index(")", i)
            name = value[i + 2 : end]
            out.append(env[name] if name in env else value[i : end + 1])
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def command(container: Mapping[str, Any], python: str = sys.executable) -> list[str]:
    """The process to start: the image's entrypoint ``specops`` is ``python -m specops``."""
    entrypoint = [str(part) for part in container.get("command") or ["specops"]]
    args = [str(part) for part in container.get("args") or []]
    if entrypoint[0] not in ("specops", "/opt/specops/bin/specops"):
        raise OperatorPodError(f"command {entrypoint!r} is not the specops entrypoint")
    return [python, "-m", "specops", *entrypoint[1:], *args]


def token_kubeconfig(
    *, server: str, ca_pem: str, token: str, namespace: str, user: str
) -> dict[str, Any]:
    """A kubeconfig with only a bearer token: what in-cluster config amounts to."""
    import base64

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "demo",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": "pod", "context": {"cluster": "demo", "user": user, "namespace": namespace}}
        ],
        "current-context": "pod",
    }


def process_env(pod_env: Mapping[str, str], kubeconfig: Path) -> dict[str, str]:
    """Host basics + the pod's env + ``KUBECONFIG`` (where the token lives)."""
    env = {key: os.environ[key] for key in BASE_ENV_KEYS if key in os.environ}
    env.update(pod_env)
    env["KUBECONFIG"] = str(kubeconfig)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def backoff(restarts: int) -> float:
    """Seconds before restart number ``restarts`` (kubelet-like, 1 s doubling to 30 s)."""
    return float(min(30, 2 ** max(0, restarts - 1)))


# --- the supervisor -----------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Running:
    uid: str
    key: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)


@dataclass
class Supervisor:
    """Keeps one ``specops run`` per runnable operator pod; ``step()`` is one pass."""

    api: Any
    """A ``kubernetes.client.ApiClient`` with the node-agent (admin) credentials."""
    server: str
    state_dir: Path
    running: dict[str, Running] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)
    _skipped: set[tuple[str, str]] = field(default_factory=set)

    def _list(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        pods = core.list_pod_for_all_namespaces(
            label_selector=OPERATOR_SELECTOR, _preload_content=False, _request_timeout=10
        )
        nodes = core.list_node(_preload_content=False, _request_timeout=10)
        import json

        pod_items = list(json.loads(pods.data)["items"])
        node_items = {str(n["metadata"]["name"]): n for n in json.loads(nodes.data)["items"]}
        return pod_items, node_items

    def _lookup(self, kind: str) -> Lookup:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.api)

        def lookup(namespace: str, name: str, key: str) -> str | None:
            try:
                if kind == "secret":
                    obj = core.read_namespaced_secret(name, namespace, _request_timeout=10)
                    raw = (obj.data or {}).get(key)
                    if raw is None:
                        return None
                    import base64

                    return base64.b64decode(raw).decode()
                cm = core.read_namespaced_config_map(name, namespace, _request_timeout=10)
                value = (cm.data or {}).get(key)
                return None if value is None else str(value)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

        return lookup

    def credentials(self, pod: Mapping[str, Any]) -> Path:
        """TokenRequest for the pod's ServiceAccount, bound to the pod; write a kubeconfig."""
        from kubernetes import client

        meta = pod["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        account = str(pod.get("spec", {}).get("serviceAccountName") or "default")
        core = client.CoreV1Api(self.api)
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=TOKEN_SECONDS,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=name, uid=str(meta["uid"])
                ),
            )
        )
        answer = core.create_namespaced_service_account_token(
            account, namespace, request, _request_timeout=10
        )
        ca = core.read_namespaced_config_map("kube-root-ca.crt", namespace, _request_timeout=10)
        ca_pem = (ca.data or {}).get("ca.crt")
        if not ca_pem:
            raise OperatorPodError(f"ConfigMap {namespace}/kube-root-ca.crt has no ca.crt")
        config = token_kubeconfig(
            server=self.server,
            ca_pem=str(ca_pem),
            token=str(answer.status.token),
            namespace=namespace,
            user=f"system:serviceaccount:{namespace}:{account}",
        )
        path = self.state_dir / "kubeconfigs" / f"{namespace}_{name}.kubeconfig"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        tmp.chmod(0o600)
        tmp.replace(path)
        return path

    def start(self, pod: Mapping[str, Any]) -> Running:
        container = operator_container(pod)
        assert container is not None
        pod_env = resolve_env(
            pod, container, secret=self._lookup("secret"), config_map=self._lookup("configmap")
        )
        kubeconfig = self.credentials(pod)
        argv = command(container)
        meta = pod["metadata"]
        log_path = self.state_dir / "logs" / f"{meta['namespace']}_{meta['name']}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        workdir = self.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}"
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        env = process_env(pod_env, kubeconfig)
        # The chart mounts an emptyDir at /tmp for HOME and HF_HOME; give each pod its own.
        for key in ("HOME", "HF_HOME", "TMPDIR"):
            if env.get(key, "").startswith("/tmp"):
                env[key] = str(workdir / env[key].removeprefix("/"))
        env.setdefault("TMPDIR", str(workdir / "tmp"))
        with log_path.open("ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} starting {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=workdir,
                preexec_fn=_die_with_parent,
            )
        log.info("started %s as pid %d (log %s)", pod_key(pod), proc.pid, log_path)
        return Running(str(meta["uid"]), pod_key(pod), proc, log_path)

    @staticmethod
    def stop(running: Running, grace: float = 10.0) -> None:
        if running.proc.poll() is None:
            running.proc.send_signal(signal.SIGTERM)
            try:
                running.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                running.proc.kill()
                running.proc.wait(timeout=5)
        log.info("stopped %s (exit %s)", running.key, running.proc.returncode)

    def step(self) -> None:
        """One pass: start what should run, stop what should not, restart what crashed."""
        pods, nodes = self._list()
        wanted: dict[str, dict[str, Any]] = {}
        for pod in pods:
            reason = skip_reason(pod, nodes)
            uid = str(pod["metadata"].get("uid"))
            if reason is None:
                wanted[uid] = pod
            elif (uid, reason) not in self._skipped:
                self._skipped.add((uid, reason))
                log.info("not running %s: %s", pod_key(pod), reason)
        for uid in [u for u in self.running if u not in wanted]:
            self.stop(self.running.pop(uid))
        now = time.monotonic()
        for uid, pod in wanted.items():
            current = self.running.get(uid)
            if current is not None and current.proc.poll() is None:
                continue
            if current is not None:
                count = self.restarts.get(uid, 0) + 1
                self.restarts[uid] = count
                self.not_before[uid] = now + backoff(count)
                log.warning(
                    "%s exited with %s; restart %d in %.0fs",
                    current.key,
                    current.proc.returncode,
                    count,
                    backoff(count),
                )
                del self.running[uid]
            if now < self.not_before.get(uid, 0.0):
                continue
            try:
                self.running[uid] = self.start(pod)
            except OperatorPodError as exc:
                if (uid, str(exc)) not in self._skipped:
                    self._skipped.add((uid, str(exc)))
                    log.error("cannot run %s: %s", pod_key(pod), exc)

    def shutdown(self) -> None:
        for running in list(self.running.values()):
            with contextlib.suppress(Exception):
                self.stop(running)
        self.running.clear()


def run(kubeconfig: str, state_dir: Path, interval: float, stop: Callable[[], bool]) -> None:
    """Poll until ``stop()``; API hiccups are logged and retried next interval."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=kubeconfig)
    server = str(api.configuration.host)
    from specops.prom.loopback import require_loopback_url

    require_loopback_url(server)
    supervisor = Supervisor(api=api, server=server, state_dir=state_dir)
    try:
        while not stop():
            try:
                supervisor.step()
            except Exception as exc:  # keep the operator running through API trouble
                log.warning("pass failed, will retry: %s", exc)
            deadline = time.monotonic() + interval
            while time.monotonic() < deadline and not stop():
                time.sleep(0.1)
    finally:
        supervisor.shutdown()
        api.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m specops.demo.operator_pod",
        description="Run the chart's operator pods as specops run processes with their "
        "ServiceAccount's token (the demo's kubelet for operator pods).",
    )
    parser.add_argument("--kubeconfig", required=True, help="admin kubeconfig (node agent)")
    parser.add_argument("--state-dir", type=Path, required=True, help="logs and kubeconfigs")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    args = parser.parse_args(argv)
    if not Path(args.kubeconfig).is_file():
        parser.exit(2, f"operator_pod: error: --kubeconfig {args.kubeconfig} is not a file\n")
    if args.interval <= 0:
        parser.exit(2, "operator_pod: error: --interval must be positive\n")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stopping = False

    def on_signal(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run(args.kubeconfig, args.state_dir, args.interval, lambda: stopping)
    except ValueError as exc:
        parser.exit(2, f"operator_pod: error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
