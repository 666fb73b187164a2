"""Start, find and stop a named local control plane: etcd, the Kubernetes
control-plane programs and kwok, all on free loopback ports.

Why a launcher of our own rather than kind or kwokctl: there is no container engine
here and release binaries cannot be downloaded, but the genuine programs can be
built from Go modules (``hack/build-tools``); this module wires them together the way
kubeadm would, minus kubelets (kwok plays them for simulated GPU nodes).

Every listener binds 127.0.0.1. Pod IPs, ClusterIPs and node addresses exist only
as API data: no component is configured to dial them (the apiserver only would for
logs/exec/proxy, which nothing here uses).

State lives in ``<state root>/specops-cluster-<name>`` (``state.json``, PKI, logs,
etcd data), outside the repository, so ``down`` works from any shell and a later
``up`` can clean what a killed session left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import shutil
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from specops.devcluster import kubeconfig, kwokconfig, nodepools, pki, processes, storage
from specops.devcluster.nodepools import NodePool

STATE_ROOT_ENV = "SPECOPS_CLUSTER_STATE_ROOT"
DEFAULT_NAME = "dev"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
SERVICE_CIDR = "10.96.0.0/16"
_STOP_ORDER = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")


class ClusterError(RuntimeError):
    """The cluster could not be started or found; the message says why and where to look."""


@dataclass(frozen=True)
class Cluster:
    """A running cluster, as tests and commands see it."""

    name: str
    kubeconfig: str
    bin_dir: str
    server: str
    state_dir: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    simulated_readiness: bool = False
    """SpecOps-managed pods start NotReady until the pod runner marks them (kwokconfig)."""

    def api_client(self) -> Any:
        """A fresh ``kubernetes.client.ApiClient`` for this cluster's admin user."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment with ``KUBECONFIG`` set and the tools first on ``PATH``."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = self.kubeconfig
        if self.bin_dir:
            env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env


def validate_name(name: str) -> str:
    """Cluster names become directory and kubeconfig context names: keep them simple."""
    if not _NAME.match(name):
        raise ClusterError(
            f"invalid cluster name {name!r}: use 1-40 lowercase letters, digits or '-'"
        )
    return name


def state_root() -> Path:
    """Where state directories live: ``$SPECOPS_CLUSTER_STATE_ROOT`` or the temp dir."""
    return Path(os.environ.get(STATE_ROOT_ENV) or tempfile.gettempdir())


def state_dir(name: str) -> Path:
    """The state directory of cluster ``name``."""
    return state_root() / f"specops-cluster-{validate_name(name)}"


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise up/down of one cluster name across processes."""
    root = state_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"specops-cluster-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- state -----------------------------------------------------------------------


def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_state(directory: Path, data: dict[str, Any]) -> None:
    tmp = directory / "state.json.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(directory / "state.json")


def _ours(pid: int, bin_dir: str) -> bool:
    """True if ``pid`` is alive and runs a program from ``bin_dir`` (pids get reused)."""
    exe = processes.executable(pid)
    return (
        processes.pid_alive(pid)
        and exe is not None
        and os.path.dirname(exe.removesuffix(" (deleted)")) == bin_dir
    )


def _stop_recorded(data: dict[str, Any]) -> list[str]:
    """Stop every recorded program that is still ours; return the names stopped."""
    bin_dir = str(data.get("bin_dir", ""))
    pids: dict[str, int] = {str(k): int(v) for k, v in dict(data.get("pids", {})).items()}
    names = sorted(pids, key=lambda n: _STOP_ORDER.index(n) if n in _STOP_ORDER else -1)
    stopped = []
    for name in names:
        if _ours(pids[name], bin_dir):
            processes.stop(pids[name])
            stopped.append(name)
    return stopped


def _cluster_from_state(data: dict[str, Any], directory: Path) -> Cluster:
    return Cluster(
        name=str(data["name"]),
        kubeconfig=str(data["kubeconfig"]),
        bin_dir=str(data["bin_dir"]),
        server=str(data["server"]),
        state_dir=str(directory),
        timings={str(k): float(v) for k, v in dict(data.get("timings", {})).items()},
        simulated_readiness=bool(data.get("simulated_readiness", False)),
    )


def find(name: str = DEFAULT_NAME) -> Cluster | None:
    """The running cluster called ``name``, or None if it is not (fully) running."""
    directory = state_dir(name)
    data = _read_state(directory)
    if data is None or data.get("phase") != "running":
        return None
    bin_dir = str(data.get("bin_dir", ""))
    if not all(_ours(int(pid), bin_dir) for pid in dict(data.get("pids", {})).values()):
        return None
    return _cluster_from_state(data, directory)


def down(name: str = DEFAULT_NAME) -> list[str]:
    """Stop every program of cluster ``name`` and remove its state; return what was stopped."""
    validate_name(name)
    with _locked(name):
        return _down_unlocked(name)


def _down_unlocked(name: str) -> list[str]:
    directory = state_dir(name)
    data = _read_state(directory)
    stopped = _stop_recorded(data) if data is not None else []
    shutil.rmtree(directory, ignore_errors=True)
    return stopped


def clean_stale(prefix: str = "") -> list[str]:
    """Remove state of clusters whose owning process died (e.g. a killed pytest run).

    Only clusters started with ``die_with_parent`` record an owner; their programs
    were killed by the kernel with the owner, so what is left is files (and, in case
    a program ignored the signal, anything still recorded is stopped too).
    """
    removed = []
    for directory in sorted(state_root().glob(f"specops-cluster-{prefix}*")):
        if not directory.is_dir():
            continue
        data = _read_state(directory)
        owner = int(data.get("owner_pid", 0)) if data else 0
        if data is None or owner == 0 or processes.pid_alive(owner):
            continue
        name = directory.name.removeprefix("specops-cluster-")
        with _locked(name):
            _stop_recorded(data)
            shutil.rmtree(directory, ignore_errors=True)
        removed.append(name)
    _remove_idle_locks(prefix)
    return removed


def _remove_idle_locks(prefix: str) -> None:
    """Delete lock files of clusters that have no state and that nobody holds.

    Test sessions use a fresh name each time, so without this every session would
    leave an empty lock file behind in the temp directory.
    """
    root = state_root()
    for lock_path in root.glob(f"specops-cluster-{prefix}*.lock"):
        if (root / lock_path.name.removesuffix(".lock")).exists():
            continue
        try:
            with open(lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                lock_path.unlink(missing_ok=True)
        except OSError:
            continue  # held by a running up/down: leave it


# --- readiness -------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    watch: list[processes.Program],
    interval: float = 0.2,
) -> None:
    """Poll ``check`` until true; fail fast (with the log) if a watched program exits."""
    deadline = time.monotonic() + timeout
    while True:
        for program in watch:
            if not program.alive():
                raise ClusterError(
                    f"{program.name} exited while waiting for {what}; log {program.log}:\n"
                    f"{program.log_tail()}"
                )
        try:
            if check():
                return
        except Exception:  # any failure just means "not yet"
            pass
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name} ({p.log}):\n{p.log_tail(8)}" for p in watch)
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")
        time.sleep(interval)


def _http_ok(url: str, context: ssl.SSLContext | None, expect: bytes) -> bool:
    # Only loopback URLs are ever built by this module.
    assert url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")), url
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return resp.status == 200 and expect in resp.read()
    except (urllib.error.URLError, OSError):
        return False


# --- start -----------------------------------------------------------------------


@dataclass
class _Plan:
    """Everything decided before any program starts: paths, ports, argv."""

    name: str
    directory: Path
    bin_dir: Path
    ports: dict[str, int]
    files: dict[str, Path] = field(default_factory=dict)
    simulated_readiness: bool = False

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"


def _argv(plan: _Plan) -> dict[str, list[str]]:
    """Command lines of every program, in start order."""
    b, f, p, d = plan.bin_dir, plan.files, plan.ports, plan.directory
    etcd_client = f"http://127.0.0.1:{p['etcd']}"
    etcd_peer = f"http://127.0.0.1:{p['etcd-peer']}"
    admin = str(f["admin.kubeconfig"])
    component_serving = [
        "--bind-address=127.0.0.1",
        f"--tls-cert-file={f['serving.crt']}",
        f"--tls-private-key-file={f['serving.key']}",
        f"--authentication-kubeconfig={admin}",
        f"--authorization-kubeconfig={admin}",
        f"--client-ca-file={f['ca.crt']}",
        # No front proxy here: do not look up its request-header CA in kube-system.
        "--authentication-skip-lookup=true",
    ]
    return {
        "etcd": [
            str(b / "etcd"),
            f"--name={plan.name}",
            f"--data-dir={d / 'etcd'}",
            f"--listen-client-urls={etcd_client}",
            f"--advertise-client-urls={etcd_client}",
            f"--listen-peer-urls={etcd_peer}",
            f"--initial-advertise-peer-urls={etcd_peer}",
            f"--initial-cluster={plan.name}={etcd_peer}",
            "--initial-cluster-state=new",
            # Throwaway data: durability only costs time on a shared 2-core machine.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
        "kube-apiserver": [
            str(b / "kube-apiserver"),
            f"--etcd-servers={etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={p['apiserver']}",
            f"--tls-cert-file={f['serving.crt']}",
            f"--tls-private-key-file={f['serving.key']}",
            f"--client-ca-file={f['ca.crt']}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,"
            "DefaultStorageClass,DefaultTolerationSeconds,ResourceQuota,PodSecurity,"
            "Priority,StorageObjectInUseProtection,PersistentVolumeClaimResize,"
            "RuntimeClass,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,"
            "ValidatingAdmissionPolicy",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={f['sa.pub']}",
            f"--service-account-signing-key-file={f['sa.key']}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            f"--cert-dir={d / 'apiserver-certs'}",
        ],
        "kube-controller-manager": [
            str(b / "kube-controller-manager"),
            f"--kubeconfig={admin}",
            "--leader-elect=false",
            f"--secure-port={p['controller-manager']}",
            *component_serving,
            "--controllers=*",
            f"--service-account-private-key-file={f['sa.key']}",
            f"--root-ca-file={f['ca.crt']}",
            f"--cluster-signing-cert-file={f['ca.crt']}",
            f"--cluster-signing-key-file={f['ca.key']}",
            "--use-service-account-credentials=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
        ],
        "kube-scheduler": [
            str(b / "kube-scheduler"),
            f"--kubeconfig={admin}",
            "--leader-elect=false",
            f"--secure-port={p['scheduler']}",
            *component_serving,
            "--profiling=false",
        ],
        "kwok": [
            str(b / "kwok"),
            f"--kubeconfig={admin}",
            f"--config={f['kwok.yaml']}",
        ],
    }


def _write_files(plan: _Plan) -> None:
    cluster_pki = pki.generate(plan.name)
    plan.files.update(cluster_pki.write(plan.directory / "pki"))
    admin = kubeconfig.build(
        cluster_name=plan.name,
        server=plan.server,
        ca_pem=cluster_pki.ca.cert_pem,
        client_cert_pem=cluster_pki.admin.cert_pem,
        client_key_pem=cluster_pki.admin.key_pem,
    )
    path = plan.directory / "kubeconfig"
    path.write_text(yaml.safe_dump(admin, sort_keys=False))
    path.chmod(0o600)
    plan.files["admin.kubeconfig"] = path
    kwok_yaml = plan.directory / "kwok.yaml"
    documents = kwokconfig.documents(simulated_readiness=plan.simulated_readiness)
    kwok_yaml.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    plan.files["kwok.yaml"] = kwok_yaml


def _tls_context(plan: _Plan) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(plan.files["ca.crt"]))
    context.load_cert_chain(str(plan.files["admin.crt"]), str(plan.files["admin.key"]))
    return context


def _populate(
    api: Any, pools: tuple[NodePool, ...], volumes: tuple[tuple[str, int], ...]
) -> list[str]:
    """Create the StorageClass, the volume pool and the nodes; return the node names."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    client.StorageV1Api(api).create_storage_class(storage.storage_class())
    for pv in storage.volume_manifests(volumes):
        core.create_persistent_volume(pv)
    names = []
    for node in nodepools.node_manifests(pools):
        core.create_node(node)
        names.append(node["metadata"]["name"])
    return names


def _nodes_ready(api: Any, names: list[str]) -> bool:
    from kubernetes import client

    nodes = client.CoreV1Api(api).list_node(label_selector="type=kwok").items
    ready = {
        n.metadata.name
        for n in nodes
        if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
    }
    return set(names) <= ready


def _default_service_account(api: Any) -> bool:
    from kubernetes import client

    client.CoreV1Api(api).read_namespaced_service_account("default", "default")
    return True


def up(
    name: str = DEFAULT_NAME,
    *,
    bin_dir: Path,
    pools: tuple[NodePool, ...] | None = None,
    volumes: tuple[tuple[str, int], ...] = storage.DEFAULT_VOLUMES,
    die_with_parent: bool = False,
    timeout: float = 120.0,
    simulated_readiness: bool = False,
) -> Cluster:
    """Start cluster ``name`` (or return it if it already runs) and wait until it is ready.

    Ready means: etcd healthy, apiserver ``/readyz`` and the controller-manager and
    scheduler ``/healthz`` all OK, every node Ready (kwok took them over) and the
    ``default`` ServiceAccount exists (the serviceaccount controller works).

    ``die_with_parent`` ties the programs' lives to the calling process (pytest);
    without it they run on after the caller exits (``hack/cluster up``).
    ``simulated_readiness`` starts SpecOps-managed pods NotReady for the pod
    runner to mark Ready once their simulator has loaded
    (:mod:`specops.devcluster.kwokconfig`); a running cluster is returned as it is.
    """
    validate_name(name)
    pools = nodepools.from_env() if pools is None else pools
    with _locked(name):
        running = find(name)
        if running is not None:
            return running
        _down_unlocked(name)  # whatever is left of an earlier run
        for attempt in range(3):
            try:
                return _start(
                    name, bin_dir, pools, volumes, die_with_parent, timeout, simulated_readiness
                )
            except ClusterError as exc:
                # Another process may grab a port between choosing and binding it.
                if attempt < 2 and "address already in use" in str(exc):
                    continue
                raise
    raise AssertionError("unreachable")


def _start(
    name: str,
    bin_dir: Path,
    pools: tuple[NodePool, ...],
    volumes: tuple[tuple[str, int], ...],
    die_with_parent: bool,
    timeout: float,
    simulated_readiness: bool = False,
) -> Cluster:
    directory = state_dir(name)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    directory.chmod(0o700)
    ports = dict(
        zip(
            ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler"),
            _free_ports(5),
            strict=True,
        )
    )
    plan = _Plan(
        name=name,
        directory=directory,
        bin_dir=bin_dir,
        ports=ports,
        simulated_readiness=simulated_readiness,
    )
    _write_files(plan)
    argv = _argv(plan)
    state: dict[str, Any] = {
        "name": name,
        "phase": "starting",
        "server": plan.server,
        "kubeconfig": str(plan.files["admin.kubeconfig"]),
        "bin_dir": str(bin_dir),
        "ports": ports,
        "pids": {},
        "owner_pid": os.getpid() if die_with_parent else 0,
        "timings": {},
        "simulated_readiness": simulated_readiness,
    }
    started: dict[str, processes.Program] = {}
    t0 = time.monotonic()

    def launch(program: str) -> processes.Program:
        started[program] = processes.start(
            program,
            argv[program],
            directory / "logs" / f"{program}.log",
            die_with_parent=die_with_parent,
            cwd=directory,
        )
        state["pids"][program] = started[program].pid
        _write_state(directory, state)  # record pids at once, so down() finds them
        return started[program]

    def mark(step: str) -> None:
        state["timings"][step] = round(time.monotonic() - t0, 2)

    try:
        etcd = launch("etcd")
        _wait(
            "etcd /health",
            lambda: _http_ok(f"http://127.0.0.1:{ports['etcd']}/health", None, b'"true"'),
            timeout,
            [etcd],
        )
        mark("etcd")
        apiserver = launch("kube-apiserver")
        tls = _tls_context(plan)
        _wait(
            "kube-apiserver /readyz",
            lambda: _http_ok(f"{plan.server}/readyz", tls, b"ok"),
            timeout,
            [etcd, apiserver],
        )
        mark("kube-apiserver")
        launch("kube-controller-manager")
        launch("kube-scheduler")
        launch("kwok")
        from kubernetes import config

        api = config.new_client_from_config(config_file=str(plan.files["admin.kubeconfig"]))
        with api:
            node_names = _populate(api, pools, volumes)
            everything = list(started.values())
            for program, key in (
                ("kube-controller-manager", "controller-manager"),
                ("kube-scheduler", "scheduler"),
            ):
                url = f"https://127.0.0.1:{ports[key]}/healthz"
                _wait(
                    f"{program} /healthz",
                    functools.partial(_http_ok, url, tls, b"ok"),
                    timeout,
                    everything,
                )
            mark("controllers")
            _wait("nodes Ready", lambda: _nodes_ready(api, node_names), timeout, everything)
            mark("nodes")
            _wait(
                "the default ServiceAccount",
                lambda: _default_service_account(api),
                timeout,
                everything,
            )
            mark("ready")
    except BaseException:
        for started_program in reversed(list(started.values())):
            processes.stop(started_program.pid, popen=started_program.popen)
        state["phase"] = "failed"
        _write_state(directory, state)
        raise
    state["phase"] = "running"
    _write_state(directory, state)
    return _cluster_from_state(state, directory)


def describe(cluster: Cluster) -> dict[str, Any]:
    """A JSON-friendly summary for the command line."""
    return asdict(cluster)
