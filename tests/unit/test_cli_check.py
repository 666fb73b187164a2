"""``specops check`` and ``specops plan`` over the fixture pairs and constructed mismatches.

Models come from a mirror directory (the fixtures, or a copy edited per test),
so these run without any server; the Hub path is in tests/integration/test_hub_cli.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from specops.cli import main

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
SPECOPS = Path(sys.executable).parent / "specops"


def run_json(
    capsys: pytest.CaptureFixture[str], *argv: str, mirror: Path | None = HUB
) -> tuple[int, dict[str, Any]]:
    """``specops <argv> --output json`` against ``mirror`` (None: no mirror flag)."""
    flags = ["--hub-mirror", str(mirror)] if mirror is not None else []
    code = main([*argv, *flags, "--output", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    """A writable copy of the fixtures, for constructed mismatches."""
    root = tmp_path / "mirror"
    shutil.copytree(HUB, root)
    return root


def edit(mirror: Path, repo: str, **changes: Any) -> None:
    path = mirror / repo / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    ("speculator", "gpu", "tp"),
    [
        ("RedHatAI/Qwen3-8B-speculator.eagle3", "H100-80GB", 1),
        ("RedHatAI/Qwen3-32B-speculator.eagle3", "H100-80GB", 2),
        ("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3", "H100-80GB", 1),
        ("RedHatAI/Llama-3.3-70B-Instruct-speculator.eagle3", "A100-80GB", 4),
        ("RedHatAI/gpt-oss-20b-speculator.eagle3", "H100-80GB", 1),
        ("nm-testing/EAGLE3-LLaMA3.1-Instruct-8B-converted", "H100-80GB", 1),
    ],
)
def test_released_speculators_check_out_with_their_own_verifier(
    capsys: pytest.CaptureFixture[str], speculator: str, gpu: str, tp: int
) -> None:
    code, doc = run_json(capsys, "check", "--speculator", speculator, "--gpu", gpu)
    assert code == 0
    assert doc["compatible"] is True
    assert doc["findings"] == []
    assert doc["plan"]["tensorParallelSize"] == tp
    assert doc["plan"]["gpusPerReplica"] == tp
    assert doc["verifier"]["source"] == "mirror"


def test_wrong_pair_exits_1_with_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(
        capsys,
        "check",
        "--verifier",
        "Qwen/Qwen3-8B",
        "--speculator",
        "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3",
        "--gpu",
        "H100",
    )
    assert code == 1
    assert doc["compatible"] is False
    assert {f["code"] for f in doc["findings"]} == {"VerifierMismatch", "VocabSizeMismatch"}
    assert doc["plan"] is None


def test_warnings_still_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(
        capsys,
        "check",
        "--verifier",
        "Qwen/Qwen3-8B",
        "--speculator",
        "RedHatAI/Qwen3-8B-speculator.eagle3",
        "--num-speculative-tokens",
        "6",
    )
    assert code == 0
    assert [(f["code"], f["severity"]) for f in doc["findings"]] == [
        ("SpeculativeTokensAboveTrained", "warning")
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tensor-parallel-size", "3"], "HeadsNotDivisible"),
        (["--max-model-len", "200000"], "ContextLengthExceeded"),
        (["--gpu", "L4", "--tensor-parallel-size", "1"], "InsufficientGpuMemory"),
    ],
)
def test_setting_errors(capsys: pytest.CaptureFixture[str], args: list[str], expected: str) -> None:
    code, doc = run_json(
        capsys,
        "check",
        "--verifier",
        "Qwen/Qwen3-8B",
        "--speculator",
        "RedHatAI/Qwen3-8B-speculator.eagle3",
        *args,
    )
    assert code == 1
    assert expected in {f["code"] for f in doc["findings"]}


def test_constructed_mismatches_in_a_mirror(
    capsys: pytest.CaptureFixture[str], mirror: Path
) -> None:
    edit(
        mirror, "RedHatAI/Qwen3-8B-speculator.eagle3", eagle_aux_hidden_state_layer_ids=[1, 18, 40]
    )
    code, doc = run_json(
        capsys, "check", "--speculator", "RedHatAI/Qwen3-8B-speculator.eagle3", mirror=mirror
    )
    assert code == 1
    assert [f["code"] for f in doc["findings"]] == ["AuxLayerOutOfRange"]


def test_truncated_speculator_config_is_invalid_config(
    capsys: pytest.CaptureFixture[str], mirror: Path
) -> None:
    path = mirror / "RedHatAI/Qwen3-8B-speculator.eagle3/config.json"
    path.write_text(path.read_text()[:300])
    code, doc = run_json(
        capsys,
        "check",
        "--verifier",
        "Qwen/Qwen3-8B",
        "--speculator",
        "RedHatAI/Qwen3-8B-speculator.eagle3",
        mirror=mirror,
    )
    assert code == 1
    assert [f["code"] for f in doc["findings"]] == ["InvalidConfig"]
    assert "not valid JSON" in doc["findings"][0]["message"]


def test_plain_model_as_speculator(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(
        capsys, "check", "--verifier", "Qwen/Qwen3-8B", "--speculator", "Qwen/Qwen3-8B"
    )
    assert code == 1
    assert [f["code"] for f in doc["findings"]] == ["NotSpeculatorsFormat"]


def test_local_directories_work(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(
        capsys,
        "check",
        "--verifier",
        str(HUB / "Qwen/Qwen3-8B"),
        "--speculator",
        str(HUB / "RedHatAI/Qwen3-8B-speculator.eagle3"),
        mirror=None,
    )
    # The drafter names Qwen/Qwen3-8B, the user named a directory with the same shapes.
    assert code == 0
    assert [(f["code"], f["severity"]) for f in doc["findings"]] == [
        ("VerifierMismatch", "warning")
    ]
    assert doc["verifier"]["sha"].startswith("local-")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "--verifier", "/does/not/exist"], "not a directory"),
        (["check", "--verifier", "not a model id"], "neither a Hub id"),
        (["check", "--verifier", "Qwen/Qwen3-8B", "--gpu", "H900"], "unknown GPU type"),
        (["check"], "--verifier, --speculator"),
        (["plan", "--verifier", "Qwen/Qwen3-8B"], "--gpu is required"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([*argv, "--hub-mirror", str(HUB)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--tensor-parallel-size", "0"],
        ["check", "--gpu-memory-utilization", "1.5"],
        ["check", "--max-model-len", "many"],
        ["check", "--output", "yaml"],
        ["plan", "--verifier", "Qwen/Qwen3-8B", "--gpu-memory-gib", "inf"],
        ["plan", "--verifier", "Qwen/Qwen3-8B", "--gpu-memory-gib", "nan"],
    ],
)
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_plan_reports_tp_and_arithmetic(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "plan",
            "--verifier",
            "meta-llama/Llama-3.3-70B-Instruct",
            "--speculator",
            "RedHatAI/Llama-3.3-70B-Instruct-speculator.eagle3",
            "--gpu",
            "A100-80GB",
            "--hub-mirror",
            str(HUB),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "tensorParallelSize 4" in out
    assert "TP 2 rejected" in out
    assert "KV budget:" in out


def test_plan_that_does_not_fit_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(
        capsys,
        "plan",
        "--verifier",
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
        "--gpu",
        "H100",
    )
    assert code == 1
    assert doc["fits"] is False
    assert "multi-node" in doc["error"]


def test_plan_with_custom_gpu_memory(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(
        capsys,
        "plan",
        "--verifier",
        "Qwen/Qwen3-8B",
        "--gpu-memory-gib",
        "24",
        "--max-model-len",
        "4096",
    )
    assert code == 0
    assert doc["plan"]["gpuMemoryGiB"] == 24.0
    assert doc["plan"]["tensorParallelSize"] == 1


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SPECOPS), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or dict(os.environ),
    )


def test_installed_command_verdicts_and_exit_codes(tmp_path: Path) -> None:
    env = dict(os.environ, SPECOPS_HUB_MIRROR=str(HUB), HF_HOME=str(tmp_path), HF_HUB_OFFLINE="1")
    ok = _cli(
        "check", "--speculator", "RedHatAI/gpt-oss-20b-speculator.eagle3", "--gpu", "H100", env=env
    )
    assert ok.returncode == 0, ok.stderr
    assert "verdict: compatible" in ok.stdout
    assert "tensorParallelSize 1" in ok.stdout

    bad = _cli(
        "check",
        "--verifier",
        "openai/gpt-oss-20b",
        "--speculator",
        "RedHatAI/Qwen3-8B-speculator.eagle3",
        env=env,
    )
    assert bad.returncode == 1
    assert "VerifierMismatch" in bad.stdout and "verdict: incompatible" in bad.stdout

    missing = _cli("check", "--verifier", "org/not-mirrored", env=env)
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert "HF_HUB_OFFLINE" in missing.stderr


def test_missing_mirror_directory_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["check", "--verifier", "Qwen/Qwen3-8B", "--hub-mirror", str(tmp_path / "nope")])
    assert code == 2
    assert "not a directory" in capsys.readouterr().err
