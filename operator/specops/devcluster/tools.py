"""Finding the Go-built control-plane programs (and building them when missing).

``hack/build-tools`` owns building and caching; this module only asks it for the
directory, so the pytest fixture and ``hack/cluster up`` work straight after a clone
(the first run builds, later runs hit the cache in well under a second).
``SPECOPS_TOOLS_BIN`` points at a ready directory instead, e.g. in an installed
package with no repository around it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENV_VAR = "SPECOPS_TOOLS_BIN"
REQUIRED = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)


class ToolsError(RuntimeError):
    """The control-plane programs are not available; the message says how to get them."""


def repo_root() -> Path | None:
    """The source checkout this package was imported from, if it is one."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "hack" / "build-tools").is_file() else None


def missing(bin_dir: Path) -> list[str]:
    """Names of required programs absent (or not executable) in ``bin_dir``."""
    return [n for n in REQUIRED if not os.access(bin_dir / n, os.X_OK)]


def find(*, build: bool = True) -> Path:
    """Directory holding every required program, building them first if allowed."""
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured:
        bin_dir = Path(configured)
        absent = missing(bin_dir)
        if absent:
            raise ToolsError(f"{ENV_VAR}={configured} lacks: {', '.join(absent)}")
        return bin_dir
    root = repo_root()
    if root is None:
        raise ToolsError(f"no hack/build-tools next to this package; set {ENV_VAR}")
    if not build:
        raise ToolsError("tools not located; run hack/build-tools or set " + ENV_VAR)
    # Progress (stderr) goes straight to the user; stdout's last line is the directory.
    result = subprocess.run(
        ["bash", str(root / "hack" / "build-tools")],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise ToolsError(f"hack/build-tools failed (exit {result.returncode}); see its output")
    bin_dir = Path(lines[-1])
    absent = missing(bin_dir)
    if absent:
        raise ToolsError(f"hack/build-tools reported {bin_dir} but it lacks: {', '.join(absent)}")
    return bin_dir
