"""``specops check``/``plan`` against the loopback Hub, configured only through HF_* variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubserver import HubServer

pytestmark = pytest.mark.integration

SPECOPS = Path(sys.executable).parent / "specops"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
DRAFTER = "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        server.add_fixtures()
        yield server


def specops(
    hub: HubServer, tmp_path: Path, *argv: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in {"HF_TOKEN", "HF_HUB_OFFLINE", "SPECOPS_HUB_MIRROR"}
    }
    environment.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"), **env)
    return subprocess.run(
        [str(SPECOPS), *argv], capture_output=True, text=True, timeout=120, env=environment
    )


def test_check_resolves_both_models_on_the_hub(hub: HubServer, tmp_path: Path) -> None:
    hub.repos[LLAMA].safetensors = {"parameters": {"BF16": 8030261248}, "total": 8030261248}
    out = specops(hub, tmp_path, "check", "--speculator", DRAFTER, "--gpu", "H100", "-o", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["compatible"] is True
    assert doc["verifier"] == {
        "ref": LLAMA,
        "revision": "main",
        "sha": hub.repos[LLAMA].refs["main"],
        "source": "hub",
    }
    assert doc["speculator"]["sha"] == hub.repos[DRAFTER].refs["main"]
    assert doc["plan"]["tensorParallelSize"] == 1
    assert any("safetensors metadata" in line for line in doc["plan"]["explanation"])


def test_gated_verifier_needs_a_token(hub: HubServer, tmp_path: Path) -> None:
    hub.repos[LLAMA].gated = True
    hub.repos[LLAMA].allowed_tokens = {"hf_ok"}
    denied = specops(hub, tmp_path, "check", "--speculator", DRAFTER)
    assert denied.returncode == 2
    assert "GatedModel" in denied.stderr and "HF_TOKEN" in denied.stderr
    assert "Traceback" not in denied.stderr
    allowed = specops(hub, tmp_path, "check", "--speculator", DRAFTER, HF_TOKEN="hf_ok")
    assert allowed.returncode == 0, allowed.stderr


def test_hub_outage_exits_2_as_temporary(hub: HubServer, tmp_path: Path) -> None:
    hub.fail_next(5, 503, match="/api/models/")
    out = specops(hub, tmp_path, "check", "--verifier", LLAMA)
    assert out.returncode == 2
    assert "temporary" in out.stderr and "503" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_revision_exits_2(hub: HubServer, tmp_path: Path) -> None:
    out = specops(
        hub, tmp_path, "plan", "--verifier", LLAMA, "--verifier-revision", "v9", "--gpu", "H100"
    )
    assert out.returncode == 2
    assert "RevisionNotFound" in out.stderr


def test_broken_config_on_the_hub_is_an_invalid_config_finding(
    hub: HubServer, tmp_path: Path
) -> None:
    hub.add_repo("org/broken-drafter", {"config.json": b'{"speculators_model_type": "eagle3",'})
    out = specops(
        hub,
        tmp_path,
        "check",
        "--verifier",
        LLAMA,
        "--speculator",
        "org/broken-drafter",
        "-o",
        "json",
    )
    assert out.returncode == 1
    assert [f["code"] for f in json.loads(out.stdout)["findings"]] == ["InvalidConfig"]
