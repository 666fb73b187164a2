"""``python -m specops.demo up|down`` end to end, shortened: the real entry point.

It must start the whole twin, run the chart's operator pod as ``specops run``
under that pod's ServiceAccount token (so the chart's RBAC is what it gets),
record what the operator decided while the load ran, write the report, and
``down`` must leave no process behind. A second ``up`` over a running demo
must clean it first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from specops.prom import PromClient

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NAME = "demo-it"


def demo(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "specops.demo", *args, "--name", NAME],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def processes_under(path: Path) -> list[str]:
    """Live processes whose command line or working directory lies under ``path``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{entry}/cwd")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(path) in cmdline or cwd.startswith(str(path))):
            found.append(f"{entry}: {cmdline[:120]}")
    return found


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = dict(os.environ)
    env["SPECOPS_CLUSTER_STATE_ROOT"] = str(tmp_path / "state")
    yield env
    demo(["down"], env, timeout=120)


def test_demo_runs_the_operator_under_its_service_account_and_reports(
    tmp_path: Path, demo_env: dict[str, str]
) -> None:
    out = tmp_path / "report"
    args = ["up", "--output", str(out), "--duration", "30", "--cooldown", "6",
            "--peak-rate", "12", "--output-tokens", "32", "--sample-seconds", "2"]  # fmt: skip
    first = demo(args, demo_env, timeout=420)
    assert first.returncode == 0, first.stderr[-3000:] + first.stdout[-3000:]
    assert "make demo-down" in first.stdout

    # The report and its plots exist, and say what ran.
    text = (out / "report.md").read_text()
    assert "| step |" in text and "What the operator decided" in text
    for name in ("load", "itl", "throughput", "replicas", "speculation_k"):
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    data = json.loads((out / "timeline.json").read_text())
    samples = data["samples"]
    assert len(samples) >= 10
    # The operator acted: status recorded speculation and replicas for the load.
    assert all(s["speculation_active"] is not None for s in samples)
    assert all(s["desired_replicas"] is not None and s["desired_replicas"] >= 1 for s in samples)
    assert any(s["ready_replicas"] for s in samples)
    assert any(s["tokens_per_s"] for s in samples), "Prometheus never saw the replica"
    assert data["meta"]["requests_ok"] > 0 and not data["meta"]["load_error"]
    assert any(e["reason"] == "ModelsResolved" for e in data["events"])
    # Prometheus scrapes the operator pod's /metrics on its loopback port, as in a cluster.
    prom = PromClient(data["meta"]["prometheus_url"])
    operator_targets = prom.targets(job="specops-operator")
    assert [t.health for t in operator_targets] == ["up"], operator_targets
    # ... and it did so under the chart's RBAC, without a single 403.
    assert data["operator"]["pods"], "no operator pod was run"
    assert data["operator"]["forbidden"] == 0

    state = tmp_path / "state"
    kubeconfigs = list((state / f"specops-demo-{NAME}" / "operator" / "kubeconfigs").glob("*"))
    assert len(kubeconfigs) == 1
    user = yaml.safe_load(kubeconfigs[0].read_text())["users"][0]["user"]
    assert set(user) == {"token"}, "the operator must hold nothing but its token"
    api = config.new_client_from_config(config_file=str(kubeconfigs[0]))
    with api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        assert review.status.user_info.username == "system:serviceaccount:specops-system:specops"
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(api).list_secret_for_all_namespaces()
        assert denied.value.status == 403

    # A second `up` over a running demo cleans it first and works again.
    second = demo(
        ["up", "--output", str(tmp_path / "again"), "--duration", "8", "--cooldown", "0",
         "--peak-rate", "4", "--output-tokens", "16", "--sample-seconds", "2"],
        demo_env, timeout=420,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:] + second.stdout[-3000:]
    assert "cleaned up a previous demo" in second.stdout
    assert (tmp_path / "again" / "report.md").is_file()

    down = demo(["down"], demo_env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert "prometheus" in down.stdout and "kube-apiserver" in down.stdout
    assert processes_under(state) == []
    assert not (state / f"specops-demo-{NAME}").exists()


def test_demo_rejects_bad_flags_in_one_line(demo_env: dict[str, str]) -> None:
    bad = demo(["up", "--window-seconds", "5"], demo_env, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.startswith("demo: error: --window-seconds must be at least 30")
    assert "Traceback" not in bad.stderr
