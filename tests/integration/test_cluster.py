"""The local control plane behaves like a real cluster with GPU nodes.

Everything here runs against genuine kube-apiserver, kube-controller-manager and
kube-scheduler processes (see ``specops.devcluster``); kwok only plays the kubelets.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_harness import wait_for

from specops.devcluster import Cluster, processes

pytestmark = [
    pytest.mark.integration,
    # These tests check the local launcher itself (its node pools, processes and
    # CLI); an external cluster has none of that. Stated here, never silent.
    pytest.mark.skipif(
        bool(os.environ.get("SPECOPS_TEST_KUBECONFIG")),
        reason="tests of the local launcher; SPECOPS_TEST_KUBECONFIG selects an external cluster",
    ),
]

REPO = Path(__file__).resolve().parents[2]
GPU = "nvidia.com/gpu"
GPU_TYPE = "specops.dev/gpu-type"


def gpu_deployment(name: str, gpus: int, replicas: int = 1, gpu_type: str = "H100-80GB") -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {GPU_TYPE: gpu_type},
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:v0.33.0",
                            "resources": {"limits": {GPU: str(gpus)}},
                        }
                    ],
                },
            },
        },
    }


def pods_of(core: client.CoreV1Api, namespace: str, app: str) -> list[Any]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def failed_scheduling(core: client.CoreV1Api, namespace: str, pod: str) -> list[Any]:
    events = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={pod},reason=FailedScheduling"
    ).items
    return list(events)


def is_ready(pod: Any) -> bool:
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])
    )


def pool_nodes(core: client.CoreV1Api, gpu_type: str) -> dict[str, int]:
    """GPU allocatable of every node labelled ``gpu_type``, read from the API."""
    nodes = core.list_node(label_selector=f"{GPU_TYPE}={gpu_type}").items
    return {n.metadata.name: int(n.status.allocatable[GPU]) for n in nodes}


def wait_pool_idle(core: client.CoreV1Api, nodes: dict[str, int], own_namespace: str) -> None:
    """Wait until no other namespace's pod holds GPUs on ``nodes`` (earlier tests'
    namespaces are deleted asynchronously), so capacity arithmetic is exact."""

    def idle() -> bool:
        pods = core.list_pod_for_all_namespaces().items
        return not any(
            p.spec.node_name in nodes
            and p.metadata.namespace != own_namespace
            and p.status.phase not in ("Succeeded", "Failed")
            for p in pods
        )

    wait_for("GPU nodes free of other tests' pods", idle, timeout=90)


def test_default_node_pools_are_ready_with_gpu_capacity(api: Any) -> None:
    core = client.CoreV1Api(api)
    assert pool_nodes(core, "H100-80GB") == {"h100-0": 8, "h100-1": 8}
    assert pool_nodes(core, "A100-40GB") == {"a100-0": 4, "a100-1": 4}
    nodes = {n.metadata.name: n for n in core.list_node(label_selector="type=kwok").items}
    assert {"cpu-0", "cpu-1"} <= set(nodes)
    assert GPU not in nodes["cpu-0"].status.allocatable
    h100 = nodes["h100-0"]
    assert h100.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert h100.metadata.labels["nvidia.com/gpu.memory"] == "81559"
    for node in nodes.values():
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", node.metadata.name
        # kwok reports the loopback address it was told to; nothing dials it.
        assert {a.address for a in node.status.addresses if a.type == "InternalIP"} == {"127.0.0.1"}


def test_apiserver_reports_the_stamped_kubernetes_version(api: Any) -> None:
    info = client.VersionApi(api).get_code()
    assert info.git_version.startswith("v1.34.")
    assert (info.major, info.minor) == ("1", "34")


def test_8_gpu_deployment_becomes_available_on_an_h100_node(api: Any, namespace: str) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, gpu_deployment("eight", gpus=8))

    def available() -> bool:
        status = apps.read_namespaced_deployment_status("eight", namespace).status
        return any(c.type == "Available" and c.status == "True" for c in (status.conditions or []))

    wait_for("Deployment eight Available", available)
    (pod,) = pods_of(core, namespace, "eight")
    assert is_ready(pod)
    assert pod.spec.node_name in pool_nodes(core, "H100-80GB")


def test_9_gpu_deployment_stays_pending_with_failed_scheduling(api: Any, namespace: str) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, gpu_deployment("nine", gpus=9))
    pod = wait_for("a pod of Deployment nine", lambda: pods_of(core, namespace, "nine"))[0]
    (event, *_) = wait_for(
        "FailedScheduling for the 9-GPU pod",
        lambda: failed_scheduling(core, namespace, pod.metadata.name),
    )
    assert "Insufficient nvidia.com/gpu" in event.message
    pod = core.read_namespaced_pod(pod.metadata.name, namespace)
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None
    status = apps.read_namespaced_deployment_status("nine", namespace).status
    assert not status.available_replicas


def test_scaling_beyond_the_pool_leaves_exactly_the_surplus_pending(
    api: Any, namespace: str
) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    nodes = pool_nodes(core, "H100-80GB")
    per_pod = 4
    fits = sum(gpus // per_pod for gpus in nodes.values())
    surplus = 3
    wait_pool_idle(core, nodes, namespace)
    apps.create_namespaced_deployment(namespace, gpu_deployment("scale", gpus=per_pod))
    wait_for(
        "one scale pod Ready", lambda: any(is_ready(p) for p in pods_of(core, namespace, "scale"))
    )

    apps.patch_namespaced_deployment_scale(
        "scale", namespace, {"spec": {"replicas": fits + surplus}}
    )

    def settled() -> tuple[list[Any], list[Any]] | None:
        pods = pods_of(core, namespace, "scale")
        ready = [p for p in pods if is_ready(p)]
        pending = [p for p in pods if p.status.phase == "Pending" and not p.spec.node_name]
        if len(pods) != fits + surplus or len(ready) != fits or len(pending) != surplus:
            return None
        if not all(failed_scheduling(core, namespace, p.metadata.name) for p in pending):
            return None
        return ready, pending

    ready, pending = wait_for(f"{fits} Ready and {surplus} unschedulable", settled)
    assert {p.spec.node_name for p in ready} == set(nodes)
    # Every scheduled pod fits its node: GPUs are never over-committed.
    for node, gpus in nodes.items():
        assert sum(per_pod for p in ready if p.spec.node_name == node) <= gpus
    for pod in pending:
        event = failed_scheduling(core, namespace, pod.metadata.name)[0]
        assert "Insufficient nvidia.com/gpu" in event.message


def privileged_pod(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "securityContext": {"privileged": True}}
            ]
        },
    }


def restricted_pod(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "runAsUser": 1000,
                    },
                }
            ],
        },
    }


def test_restricted_namespace_rejects_privileged_pod_and_admits_compliant_one(
    api: Any, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(namespace, privileged_pod("privileged"))
    assert rejected.value.status == 403
    assert 'violates PodSecurity "restricted' in json.loads(rejected.value.body)["message"]

    core.create_namespaced_pod(namespace, restricted_pod("compliant"))
    wait_for(
        "the compliant pod Ready",
        lambda: is_ready(core.read_namespaced_pod("compliant", namespace)),
    )


def test_deleting_an_owner_removes_what_it_owns(api: Any, namespace: str) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
    }
    for i in range(3):
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": f"owned-{i}", "ownerReferences": [ref]}}
        )
    apps.create_namespaced_deployment(namespace, gpu_deployment("cascade", gpus=1))
    wait_for(
        "the cascade pod Ready",
        lambda: any(is_ready(p) for p in pods_of(core, namespace, "cascade")),
    )
    assert apps.list_namespaced_replica_set(namespace).items

    core.delete_namespaced_config_map("owner", namespace)
    apps.delete_namespaced_deployment("cascade", namespace)

    def owned_gone() -> bool:
        secrets = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
        return not secrets & {"owned-0", "owned-1", "owned-2"}

    wait_for("the garbage collector to delete the owned Secrets", owned_gone)
    wait_for(
        "the garbage collector to delete the ReplicaSet and its pods",
        lambda: (
            not apps.list_namespaced_replica_set(namespace).items
            and not pods_of(core, namespace, "cascade")
        ),
    )


def claim(name: str, size: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def test_claims_bind_to_pool_volumes_and_an_oversized_one_stays_pending(
    api: Any, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_persistent_volume_claim(namespace, claim("model-cache", "150Gi"))
    core.create_namespaced_persistent_volume_claim(namespace, claim("too-big", "5Ti"))

    bound = wait_for(
        "model-cache Bound",
        lambda: (
            pvc
            if (
                pvc := core.read_namespaced_persistent_volume_claim("model-cache", namespace)
            ).status.phase
            == "Bound"
            else None
        ),
    )
    # The default class was filled in by admission, and the binder chose the
    # smallest volume that fits (200Gi for a 150Gi claim).
    assert bound.spec.storage_class_name == "standard"
    assert bound.status.capacity["storage"] == "200Gi"
    volume = core.read_persistent_volume(bound.spec.volume_name)
    assert volume.spec.claim_ref.name == "model-cache"

    # A pod using the claim schedules and runs, as it would on a real cluster.
    pod = restricted_pod("uses-cache")
    pod["spec"]["volumes"] = [
        {"name": "cache", "persistentVolumeClaim": {"claimName": "model-cache"}}
    ]
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "cache", "mountPath": "/cache"}]
    core.create_namespaced_pod(namespace, pod)
    wait_for(
        "the pod using the claim Ready",
        lambda: is_ready(core.read_namespaced_pod("uses-cache", namespace)),
    )

    def too_big_events() -> list[Any]:
        return list(
            core.list_namespaced_event(
                namespace, field_selector="involvedObject.name=too-big"
            ).items
        )

    events = wait_for("an event on the oversized claim", too_big_events)
    too_big = core.read_namespaced_persistent_volume_claim("too-big", namespace)
    assert too_big.status.phase == "Pending"
    assert not too_big.spec.volume_name
    # No volume fits and the class has no provisioner: the binder says so.
    assert [e.reason for e in events] == ["ProvisioningFailed"]
    assert "kubernetes.io/no-provisioner" in events[0].message

    # A pod needing the oversized claim stays unscheduled, with the scheduler's reason.
    waiting = restricted_pod("wants-too-big")
    waiting["spec"]["volumes"] = [
        {"name": "cache", "persistentVolumeClaim": {"claimName": "too-big"}}
    ]
    core.create_namespaced_pod(namespace, waiting)
    (event, *_) = wait_for(
        "FailedScheduling for the pod with the oversized claim",
        lambda: failed_scheduling(core, namespace, "wants-too-big"),
    )
    assert "unbound immediate PersistentVolumeClaims" in event.message
    assert core.read_namespaced_pod("wants-too-big", namespace).status.phase == "Pending"


def test_released_pool_volumes_return_to_the_pool(api: Any, namespace: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_persistent_volume_claim(namespace, claim("short-lived", "900Gi"))
    pvc = wait_for(
        "short-lived Bound",
        lambda: (
            p
            if (
                p := core.read_namespaced_persistent_volume_claim("short-lived", namespace)
            ).status.phase
            == "Bound"
            else None
        ),
    )
    volume_name = pvc.spec.volume_name
    assert volume_name.startswith("pv-1ti-")
    core.delete_namespaced_persistent_volume_claim("short-lived", namespace)
    wait_for(
        f"{volume_name} Available again",
        lambda: core.read_persistent_volume(volume_name).status.phase == "Available",
    )
    assert core.read_persistent_volume(volume_name).spec.claim_ref is None


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    host = hex_address.split(":")[0]
    raw = bytes.fromhex(host)
    # /proc/net/tcp{,6} print each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def test_every_program_listens_and_talks_only_on_loopback(kube_cluster: Cluster) -> None:
    state = json.loads((Path(kube_cluster.state_dir) / "state.json").read_text())
    pids = {name: int(pid) for name, pid in state["pids"].items()}
    assert set(pids) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    seen = 0
    for name, pid in pids.items():
        inodes = _socket_inodes(pid)
        for table in ("tcp", "tcp6", "udp", "udp6"):
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            for line in lines:
                fields = line.split()
                if fields[9] not in inodes:
                    continue
                seen += 1
                local, remote = _address(fields[1]), _address(fields[2])
                assert local.is_loopback, f"{name} bound {local} ({table})"
                assert remote.is_loopback or remote.is_unspecified, (
                    f"{name} connected to {remote} ({table})"
                )
    # Every program holds at least its connection to the apiserver (or etcd's listeners).
    assert seen >= len(pids)


def test_fixture_env_and_tools_reach_the_same_cluster(kube_cluster: Cluster) -> None:
    out = subprocess.run(
        ["kubectl", "get", "nodes", "-l", "specops.dev/gpu-type=H100-80GB", "-o", "name"],
        env=kube_cluster.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert out == ["node/h100-0", "node/h100-1"]
    helm = subprocess.run(
        [str(Path(kube_cluster.bin_dir) / "helm"), "version", "--short"],
        env=kube_cluster.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert helm.startswith("v3.")


def test_a_second_named_cluster_runs_alongside_and_down_leaves_no_process(
    kube_cluster: Cluster, tmp_path: Path
) -> None:
    """The command-line interface, a custom node pool and clean shutdown, end to end."""
    name = f"pytest-{os.getpid()}-second"
    pools = tmp_path / "pools.yaml"
    pools.write_text(
        "- name: h200\n  count: 1\n"
        "  gpu: {count: 8, type: H200-141GB, product: NVIDIA-H200, memoryMiB: 143771}\n"
    )
    env = {**os.environ, "SPECOPS_NODE_POOLS": str(pools)}
    cli = [str(REPO / "hack" / "cluster")]
    pids: list[int] = []
    kubeconfig = ""
    try:
        up = subprocess.run(
            [*cli, "up", "--name", name], env=env, capture_output=True, text=True, timeout=180
        )
        assert up.returncode == 0, up.stderr
        kubeconfig = up.stdout.strip().splitlines()[-1]
        assert kubeconfig != kube_cluster.kubeconfig
        state = json.loads(Path(kubeconfig).with_name("state.json").read_text())
        pids = list(state["pids"].values())
        assert len(pids) == 5 and all(processes.pid_alive(p) for p in pids)

        exports = subprocess.run(
            [*cli, "env", "--name", name], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        assert f"export KUBECONFIG={kubeconfig}" in exports

        nodes = subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "get", "nodes", "-o", "json"],
            env=kube_cluster.env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        items = json.loads(nodes.stdout)["items"]
        assert [n["metadata"]["labels"][GPU_TYPE] for n in items] == ["H200-141GB"]
        # The session's cluster is untouched by the second one.
        with kube_cluster.api_client() as api_client:
            names = {n.metadata.name for n in client.CoreV1Api(api_client).list_node().items}
        assert "h200-0" not in names
    finally:
        down = subprocess.run(
            [*cli, "down", "--name", name], capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    assert pids, "the second cluster never started"
    assert not any(processes.pid_alive(p) for p in pids)
    assert not Path(kubeconfig).parent.exists()


def test_cluster_cli_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "pools.yaml"
    bad.write_text("- {name: x, count: 1, gpu: {count: 0}}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "specops.devcluster",
            "up",
            "--name",
            "never",
            "--node-pools",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "devcluster: error:" in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "specops.devcluster", "env", "--name", "never"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "is not running" in missing.stderr
