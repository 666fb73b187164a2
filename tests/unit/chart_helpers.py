"""Rendering the chart with the real ``helm`` binary, shared by the chart tests.

Helm is a program, not a server: ``helm template`` and ``helm lint`` run offline, so
these tests stay unit tests. The binary comes from ``hack/build-tools`` (cached).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "specops"


class HelmFailed(Exception):
    """helm exited non-zero; ``stderr`` holds its message."""

    def __init__(self, stderr: str) -> None:
        super().__init__(stderr)
        self.stderr = stderr


def helm_run(helm: Path, *args: str) -> str:
    """Run helm; stdout on success, :class:`HelmFailed` otherwise."""
    result = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise HelmFailed(result.stderr)
    return result.stdout


def render(
    helm: Path,
    tmp_path: Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = "specops",
    namespace: str = "specops-system",
) -> list[dict[str, Any]]:
    """``helm template`` with ``values`` (a values file, so nested and null values work)."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    if values is not None:
        path = tmp_path / f"values-{len(list(tmp_path.glob('values-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["--values", str(path)]
    return [doc for doc in yaml.safe_load_all(helm_run(helm, *args)) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Objects of one kind."""
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of a kind."""
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def operator_env(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The operator container's env, by name."""
    deployment = one(objects, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container.get("env", [])}
