"""``specops render``: every example renders from the fixture mirror; bad input exits 2.

HF_HUB_OFFLINE is set for every test, so a model missing from the mirror can
never reach out to huggingface.co (tests stay on loopback).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from specops import gpus, hub, sizing
from specops.api.v1alpha1 import SpeculativeDeployment
from specops.cli import main

ROOT = Path(__file__).resolve().parents[2]
MIRROR = ROOT / "tests" / "fixtures" / "hub"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("SPECOPS_HUB_MIRROR", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["render", *argv])
    out, err = capsys.readouterr()
    objects = [d for d in yaml.safe_load_all(out) if d] if code == 0 else []
    return code, objects, err


def planned_tp(example: Path) -> int:
    """The plan computed independently of the command, from the same fixtures."""
    spec = SpeculativeDeployment.model_validate(yaml.safe_load(example.read_text())).spec
    verifier = hub.resolve(spec.verifier.model, mirror_dir=MIRROR)
    drafter = hub.resolve(spec.speculator.model, mirror_dir=MIRROR) if spec.speculator else None
    plan = sizing.plan(
        verifier.config,
        drafter.config if drafter else None,
        gpus.lookup(str(spec.gpu.type)),
        tensor_parallel_size=spec.tensor_parallel_size,
        max_model_len=spec.max_model_len,
        gpu_memory_utilization=spec.gpu_memory_utilization,
        verifier_safetensors=verifier.safetensors,
        drafter_safetensors=drafter.safetensors if drafter else None,
    )
    return plan.tensor_parallel_size


def test_there_are_five_examples() -> None:
    assert [e.stem for e in EXAMPLES] == [
        "gpt-oss-20b",
        "llama-3.1-8b-instruct",
        "llama-3.3-70b-instruct",
        "qwen3-32b",
        "qwen3-8b",
    ]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_each_example_renders_with_the_planned_gpu_count(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, objects, err = run(capsys, "-f", str(example), "--hub-mirror", str(MIRROR))
    assert code == 0, err
    tp = planned_tp(example)
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == str(tp)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(tp)
    args = container["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == str(tp)
    config = json.loads(args[args.index("--speculative-config") + 1])
    assert config["model"].startswith("RedHatAI/") and config["method"] == "eagle3"
    assert config["num_speculative_tokens"] == 3, "the drafter's own speculative_tokens"
    assert "plan: holds" in err, "the plan's arithmetic is shown on stderr"
    for obj in objects:
        if not obj["apiVersion"].startswith("monitoring.coreos.com/"):
            kubernetes_validate.validate(obj, "1.34", strict=True)


def test_llama_70b_uses_four_a100s_as_released(capsys: pytest.CaptureFixture[str]) -> None:
    example = ROOT / "manifests" / "examples" / "llama-3.3-70b-instruct.yaml"
    code, objects, _ = run(capsys, "-f", str(example), "--hub-mirror", str(MIRROR))
    assert code == 0
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert objects[0]["kind"] == "PersistentVolumeClaim"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "resource.yaml"
    path.write_text(text)
    return str(path)


GOOD = """
apiVersion: serving.specops.dev/v1alpha1
kind: SpeculativeDeployment
metadata: {name: q}
spec:
  verifier: {model: Qwen/Qwen3-8B}
  speculator: {model: RedHatAI/Qwen3-8B-speculator.eagle3, numSpeculativeTokens: 2}
  gpu: {type: H100-80GB}
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("spec: [unclosed", "not valid YAML (line 1", id="broken YAML"),
        pytest.param("", "no documents", id="an empty file"),
        pytest.param("kind: Deployment\n", "is not SpeculativeDeployment", id="another kind"),
        pytest.param(
            GOOD.replace("H100-80GB", "H100"), "spec.gpu.type", id="a GPU not in the enum"
        ),
        pytest.param(
            GOOD.replace("numSpeculativeTokens: 2", "numSpeculativeTokens: 0"),
            "spec.speculator.numSpeculativeTokens",
            id="zero speculative tokens",
        ),
        pytest.param(
            GOOD.replace("Qwen/Qwen3-8B}", "nobody/missing-model}"),
            "nobody/missing-model",
            id="a model neither in the mirror nor cached",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "-f", write(tmp_path, text), "--hub-mirror", str(MIRROR))
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert err.startswith("specops: error: ")


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "-f", str(tmp_path / "nope.yaml"))
    assert code == 2 and "no such file" in err


def test_incompatible_drafter_exits_1_with_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace(
        "RedHatAI/Qwen3-8B-speculator.eagle3", "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"
    )
    code, _, err = run(capsys, "-f", write(tmp_path, text), "--hub-mirror", str(MIRROR))
    assert code == 1
    assert "error VerifierMismatch" in err and "incompatible" in err


def test_mode_never_renders_plain_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD + "  speculation: {mode: Never}\n"
    code, objects, _ = run(capsys, "-f", write(tmp_path, text), "--hub-mirror", str(MIRROR))
    assert code == 0
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert "--speculative-config" not in pod["containers"][0]["args"]
    assert [c["name"] for c in pod["initContainers"]] == ["download-verifier"]


def test_explicit_k_and_gpu_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, objects, _ = run(
        capsys,
        "-f",
        write(tmp_path, GOOD),
        "--hub-mirror",
        str(MIRROR),
        "--gpu-override",
        "L4-24GB",
    )
    assert code == 0
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert json.loads(args[args.index("--speculative-config") + 1])["num_speculative_tokens"] == 2
    assert pod["nodeSelector"] == {"specops.dev/gpu-type": "L4-24GB"}


def test_several_documents_render_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD + "---\n" + GOOD.replace("name: q", "name: r")
    code, objects, _ = run(capsys, "-f", write(tmp_path, text), "--hub-mirror", str(MIRROR))
    assert code == 0
    names = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"]
    assert names == ["q", "r"]
