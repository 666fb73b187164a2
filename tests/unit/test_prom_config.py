"""The generated Prometheus config and file SD documents: loopback only, as data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops.prom import PromSettings, build_config
from specops.prom.filesd import TargetGroup, write_targets
from specops.prom.loopback import is_loopback_host, require_loopback_url


def test_config_scrapes_file_sd_dir_and_operator_every_interval(tmp_path: Path) -> None:
    settings = PromSettings(
        targets_dir=tmp_path, scrape_interval_s=1.5, operator_targets=("127.0.0.1:8080",)
    )
    config = build_config(settings)
    assert config["global"]["scrape_interval"] == "1500ms"
    sim, operator = config["scrape_configs"]
    assert sim["file_sd_configs"][0]["files"] == [f"{tmp_path}/*.json"]
    assert operator["static_configs"] == [{"targets": ["127.0.0.1:8080"]}]
    for job in (sim, operator):
        assert job["relabel_configs"][0]["action"] == "keep"


def test_config_without_operator_has_only_the_simulator_job(tmp_path: Path) -> None:
    assert [j["job_name"] for j in build_config(PromSettings(tmp_path))["scrape_configs"]] == [
        "specops-vllm"
    ]


@pytest.mark.parametrize("target", ["10.0.0.5:8000", "example.com:80", "127.0.0.1", "pod:x"])
def test_operator_targets_off_loopback_are_refused(tmp_path: Path, target: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        PromSettings(tmp_path, operator_targets=(target,))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.8.7", True),
        ("localhost", True),
        ("::1", True),
        ("10.244.0.3", False),
        ("0.0.0.0", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_remote_urls_are_refused_with_a_hint() -> None:
    assert require_loopback_url("http://127.0.0.1:9/x") == "http://127.0.0.1:9/x"
    with pytest.raises(ValueError, match="port-forward"):
        require_loopback_url("http://10.1.2.3:8000")
    with pytest.raises(ValueError, match="http"):
        require_loopback_url("ftp://127.0.0.1/")


def test_file_sd_written_atomically_with_sorted_labels(tmp_path: Path) -> None:
    path = tmp_path / "sd" / "pods.json"
    write_targets(path, [TargetGroup(("127.0.0.1:4000",), {"pod": "p", "namespace": "n"})])
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:4000"], "labels": {"namespace": "n", "pod": "p"}}
    ]
    assert [p.name for p in path.parent.iterdir()] == ["pods.json"]


def test_file_sd_refuses_pod_ips() -> None:
    with pytest.raises(ValueError, match="loopback"):
        TargetGroup(("10.244.1.7:8000",))
