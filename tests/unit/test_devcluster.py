"""Unit tests of the local cluster launcher's pure parts (no control plane needed)."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from specops.devcluster import cluster, kubeconfig, kwokconfig, nodepools, pki, processes, storage
from specops.devcluster.nodepools import NodePoolError


def _by_name(nodes: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {n["metadata"]["name"]: n for n in nodes}  # type: ignore[index]


def test_default_pools_are_two_h100x8_two_a100x4_and_two_cpu_nodes() -> None:
    nodes = _by_name(nodepools.node_manifests(nodepools.DEFAULT_POOLS))
    assert sorted(nodes) == ["a100-0", "a100-1", "cpu-0", "cpu-1", "h100-0", "h100-1"]
    h100 = nodes["h100-0"]
    labels = h100["metadata"]["labels"]  # type: ignore[index]
    assert labels["specops.dev/gpu-type"] == "H100-80GB"
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/gpu.memory"] == "81559"
    assert h100["status"]["allocatable"]["nvidia.com/gpu"] == "8"  # type: ignore[index]
    a100 = nodes["a100-1"]
    assert a100["metadata"]["labels"]["specops.dev/gpu-type"] == "A100-40GB"  # type: ignore[index]
    assert a100["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB"  # type: ignore[index]
    assert a100["status"]["capacity"]["nvidia.com/gpu"] == "4"  # type: ignore[index]
    cpu = nodes["cpu-0"]
    assert "nvidia.com/gpu" not in cpu["status"]["capacity"]  # type: ignore[index]
    assert "specops.dev/gpu-type" not in cpu["metadata"]["labels"]  # type: ignore[index]


def test_every_node_is_handed_to_kwok_by_annotation() -> None:
    for node in nodepools.node_manifests(nodepools.DEFAULT_POOLS):
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        # No taint: GPU pods must schedule without kwok-specific tolerations.
        assert "taints" not in node["spec"]


def test_pools_from_a_yaml_file_named_by_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(
        "pools:\n"
        "- name: h200\n  count: 3\n"
        "  gpu: {count: 8, type: H200-141GB, product: NVIDIA-H200, memoryMiB: 143771}\n"
        "  labels: {zone: a}\n"
    )
    pools = nodepools.from_env({nodepools.ENV_VAR: str(path)})
    nodes = _by_name(nodepools.node_manifests(pools))
    assert sorted(nodes) == ["h200-0", "h200-1", "h200-2"]
    assert nodes["h200-2"]["metadata"]["labels"]["zone"] == "a"  # type: ignore[index]
    assert nodes["h200-2"]["metadata"]["labels"]["nvidia.com/gpu.memory"] == "143771"  # type: ignore[index]


def test_defaults_when_the_environment_names_no_file() -> None:
    assert nodepools.from_env({}) == nodepools.DEFAULT_POOLS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pools: 3", "expected a list"),
        ("- {name: Bad_Name, count: 1}", "name"),
        ("- {name: a, count: -1}", "count"),
        ("- {name: a, count: 1, gpu: {count: 0, type: x, product: y, memoryMiB: 1}}", "gpu.count"),
        ("- {name: a, count: 1, colour: red}", "colour"),
        ("- {name: a, count: 1}\n- {name: a, count: 2}", "duplicate pool names: a"),
        ("- [unclosed", "not valid YAML"),
    ],
    ids=[
        "a scalar is not a list of pools",
        "pool names must be DNS labels",
        "counts cannot be negative",
        "a GPU pool needs at least one GPU",
        "unknown keys are rejected",
        "pool names must be unique",
        "broken YAML is reported as such",
    ],
)
def test_bad_pool_files_give_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(text)
    with pytest.raises(NodePoolError, match=message):
        nodepools.load(path)


def test_a_missing_pool_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NodePoolError, match="cannot read node pools"):
        nodepools.load(tmp_path / "absent.yaml")


def test_storage_has_one_default_class_that_binds_immediately() -> None:
    sc = storage.storage_class()
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["volumeBindingMode"] == "Immediate"


def test_volume_pool_sizes_and_class() -> None:
    pvs = storage.volume_manifests((("100Gi", 2), ("1Ti", 1)))
    assert [p["metadata"]["name"] for p in pvs] == ["pv-100gi-0", "pv-100gi-1", "pv-1ti-0"]
    assert {p["spec"]["storageClassName"] for p in pvs} == {storage.STORAGE_CLASS}
    assert {p["spec"]["persistentVolumeReclaimPolicy"] for p in pvs} == {"Retain"}
    assert pvs[2]["spec"]["capacity"] == {"storage": "1Ti"}


def test_kwok_config_pins_loopback_node_ip_and_recycles_pool_volumes() -> None:
    config, stage = kwokconfig.documents()
    assert config["options"]["nodeIP"] == "127.0.0.1"
    assert config["options"]["manageNodesWithAnnotationSelector"] == "kwok.x-k8s.io/node=fake"
    assert stage["spec"]["resourceRef"] == {"apiGroup": "v1", "kind": "PersistentVolume"}
    keys = [e["key"] for e in stage["spec"]["selector"]["matchExpressions"]]
    assert keys == [".status.phase", '.metadata.labels["specops.dev/volume-pool"]']


def test_simulated_readiness_starts_only_specops_pods_not_ready() -> None:
    docs = kwokconfig.documents(simulated_readiness=True)
    pods = {d["metadata"]["name"]: d for d in docs[2:]}
    assert set(pods) == {"pod-ready", "specops-pod-loading", "pod-complete", "pod-delete"}
    label = '.metadata.labels["app.kubernetes.io/managed-by"]'

    def managed(stage: dict[str, Any]) -> tuple[str, list[str]]:
        [e] = [e for e in stage["spec"]["selector"]["matchExpressions"] if e["key"] == label]
        return e["operator"], e["values"]

    assert managed(pods["pod-ready"]) == ("NotIn", ["specops"])
    assert managed(pods["specops-pod-loading"]) == ("In", ["specops"])
    loading = pods["specops-pod-loading"]["spec"]["next"]["statusTemplate"]
    ready = pods["pod-ready"]["spec"]["next"]["statusTemplate"]
    assert "reason: SimulatorLoading" in loading and "ready: false" in loading
    assert "Simulator" not in ready and "ready: true" in ready
    assert 'status: "False"\n  type: Ready' in loading
    assert "podIP:" in loading and "phase: Running" in loading  # kwok must not re-match it
    yaml.safe_dump_all(docs)  # what the cluster writes to kwok.yaml
    assert len(kwokconfig.documents()) == 2  # default: kwok's own pod-fast stages


def test_pki_issues_a_loopback_serving_cert_and_a_system_masters_client() -> None:
    bundle = pki.generate("unit")
    ca = x509.load_pem_x509_certificate(bundle.ca.cert_pem)
    serving = x509.load_pem_x509_certificate(bundle.serving.cert_pem)
    admin = x509.load_pem_x509_certificate(bundle.admin.cert_pem)
    assert serving.issuer == ca.subject == admin.issuer
    serving.verify_directly_issued_by(ca)
    admin.verify_directly_issued_by(ca)
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.IPv4Address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    orgs = admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [o.value for o in orgs] == ["system:masters"]
    usage = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_pki_files_keep_private_keys_private(tmp_path: Path) -> None:
    paths = pki.generate("unit").write(tmp_path)
    assert paths["sa.key"].stat().st_mode & 0o777 == 0o600
    assert paths["ca.crt"].read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_two_clusters_never_share_a_ca() -> None:
    assert pki.generate("a").ca.cert_pem != pki.generate("a").ca.cert_pem


def test_kubeconfig_carries_inline_credentials() -> None:
    doc = kubeconfig.build(
        cluster_name="dev",
        server="https://127.0.0.1:6443",
        ca_pem=b"CA",
        client_cert_pem=b"CERT",
        client_key_pem=b"KEY",
    )
    assert doc["current-context"] == "specops-dev"
    cluster_entry = doc["clusters"][0]["cluster"]
    assert cluster_entry["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster_entry["certificate-authority-data"]) == b"CA"
    assert base64.b64decode(doc["users"][0]["user"]["client-key-data"]) == b"KEY"


@pytest.mark.parametrize("name", ["dev", "pytest-123", "a"])
def test_valid_cluster_names(name: str) -> None:
    assert cluster.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Dev", "-x", "x-", "a/b", "a" * 41])
def test_invalid_cluster_names_are_rejected(name: str) -> None:
    with pytest.raises(cluster.ClusterError, match="invalid cluster name"):
        cluster.validate_name(name)


def test_stopping_a_program_kills_its_whole_process_group(tmp_path: Path) -> None:
    # The child forks a grandchild; stopping must take both down.
    script = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    program = processes.start(
        "sleeper", [sys.executable, "-c", script], tmp_path / "sleeper.log", die_with_parent=True
    )
    time.sleep(0.5)
    group = subprocess.run(
        ["pgrep", "-g", str(program.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert len(group) == 2
    processes.stop(program.pid, popen=program.popen, timeout=5)
    assert not program.alive()
    assert all(not processes.pid_alive(int(pid)) for pid in group)


def test_stale_state_of_a_dead_owner_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cluster.STATE_ROOT_ENV, str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "specops-cluster-pytest-1"
    alive = tmp_path / "specops-cluster-pytest-2"
    for directory, owner in ((stale, dead.pid), (alive, os.getpid())):
        directory.mkdir()
        (directory / "state.json").write_text(
            json.dumps({"name": directory.name, "owner_pid": owner, "pids": {}, "bin_dir": "/x"})
        )
    orphan_lock = tmp_path / "specops-cluster-pytest-3.lock"
    orphan_lock.touch()
    live_lock = tmp_path / "specops-cluster-pytest-2.lock"
    live_lock.touch()
    assert cluster.clean_stale("pytest-") == ["pytest-1"]
    assert not stale.exists()
    assert alive.exists()
    # Lock files of clusters without state go; a live cluster's lock stays.
    assert not orphan_lock.exists()
    assert not (tmp_path / "specops-cluster-pytest-1.lock").exists()
    assert live_lock.exists()


def test_find_reports_nothing_for_a_cluster_that_never_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cluster.STATE_ROOT_ENV, str(tmp_path))
    assert cluster.find("nothing-here") is None
    assert cluster.down("nothing-here") == []
