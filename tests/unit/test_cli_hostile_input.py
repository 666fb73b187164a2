"""Hostile files end in a one-line error and exit 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops.cli import UsageError, main
from specops.commands._guard import input_errors

MIRROR = str(Path(__file__).parents[1] / "fixtures" / "hub")
HEAD = "apiVersion: serving.specops.dev/v1alpha1\nkind: SpeculativeDeployment\n"

HOSTILE = {
    "deep YAML": "a: " + "[" * 20000 + "]" * 20000,
    "deep JSON": '{"a": ' * 20000 + "1" + "}" * 20000,
    "5,000-digit integer": HEAD + "metadata: {name: x}\nspec:\n  replicas: " + "9" * 5000,
    "huge float": HEAD + "metadata: {name: x}\nspec:\n  gpuMemoryUtilization: 1e999",
    "not a mapping": "- 1\n- 2\n",
    "binary": "\x00\x01\x02\ufffe",
    "crafted Secret name": HEAD
    + "metadata: {name: x}\nspec:\n  verifier: {model: Qwen/Qwen3-8B}\n  gpu: {type: H100-80GB}\n"
    + "  hfTokenSecretRef: {name: ../../kube-system/secrets/x}",
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_render_refuses_hostile_files_in_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "resource.yaml"
    path.write_text(HOSTILE[case], encoding="utf-8")
    code = main(["render", "-f", str(path), "--hub-mirror", MIRROR])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith("specops: error: "), err
    assert len(lines[0]) < 1200


def test_the_guard_names_the_input_and_the_kind_of_failure() -> None:
    deep = "[" * 100000 + "]" * 100000
    with (
        pytest.raises(UsageError, match=r"^x.json: cannot use this input \(RecursionError"),
        input_errors("x.json"),
    ):
        json.loads(deep)
    with pytest.raises(UsageError, match="OverflowError"), input_errors("x"):
        float(10**400)
    # Anything else is not the guard's business.
    with pytest.raises(KeyboardInterrupt), input_errors("x"):
        raise KeyboardInterrupt
