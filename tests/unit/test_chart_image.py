"""The operator image recipe: hash-pinned dependencies that satisfy pyproject, non-root user.

The image itself is not built here (no container runtime on the test machines); these
checks catch the mistakes that would make a build fail or drift: a dependency added to
pyproject but not pinned, a pin outside the declared range, a pin without a hash, a
``pip install`` that bypasses the hashes, or a root or non-numeric user.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from a pip-compile --generate-hashes file."""
    text = path.read_text().replace("\\\n", " ")
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)(.*)$", line)
        assert match, f"{path.name}: not a pinned requirement: {line[:80]}"
        out[canonicalize_name(match.group(1))] = (
            match.group(2),
            re.findall(r"--hash=sha256:([0-9a-f]{64})", match.group(3)),
        )
    return out


@pytest.mark.parametrize("name", ["image.txt", "build.txt"])
def test_every_pin_has_a_hash(name: str) -> None:
    pinned = pins(ROOT / "requirements" / name)
    assert pinned
    for package, (_, hashes) in pinned.items():
        assert hashes, f"{package} in {name} has no --hash"


def test_image_pins_satisfy_every_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins(ROOT / "requirements" / "image.txt")
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not pinned in requirements/image.txt"
        assert req.specifier.contains(pinned[name][0], prereleases=True), (
            f"{req.name}=={pinned[name][0]} is outside {req.specifier}; re-run pip-compile"
        )


def test_build_pins_satisfy_the_build_backend() -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pinned = pins(ROOT / "requirements" / "build.txt")
    for spec in requires:
        req = Requirement(spec)
        assert req.specifier.contains(pinned[canonicalize_name(req.name)][0])


def test_containerfile_installs_only_pinned_wheels_and_runs_non_root() -> None:
    text = (ROOT / "Containerfile").read_text()
    steps = re.split(r"&&|\n(?=RUN|FROM|COPY|USER)", text.replace("\\\n", " "))
    installs = [s for s in steps if re.search(r"pip install", s) and not s.lstrip().startswith("#")]
    assert installs
    for step in installs:
        assert "--require-hashes" in step or "--no-deps" in step, step.strip()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users[-1].isdigit() and users[-1] != "0", "the final user must be numeric, not root"
    assert re.search(r"^FROM registry\.access\.redhat\.com/ubi9/python-311", text, flags=re.M)
    assert 'ENTRYPOINT ["specops"]' in text
