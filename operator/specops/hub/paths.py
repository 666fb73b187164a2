"""Which local paths a model reference may name: any (the CLI) or only admin-allowed ones.

On a user's machine a model directory is theirs to name. In the operator the
reference is written by a tenant and read by the operator's process, so a
path would let them read, or at least probe, the operator pod's filesystem.
There a path must lie inside a directory the admin listed in
``settings.allowedModelDirs``: as written (absolute, no ``..``) and again once
symlinks are resolved. Every refusal has one message, decided before the
path is touched (the written form) or independently of what exists (the
resolved form), so it never tells whether the path exists.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from specops.hub.errors import LocalPathNotAllowed, ModelNotFound

NOT_ALLOWED = (
    "local model paths are not allowed by this operator; use a Hub repo id (org/name) "
    "or ask the admin to allow a directory (settings.allowedModelDirs)"
)


def expand(path: str | Path) -> Path:
    """``~`` and ``~user`` expanded; an unknown user is a missing model, not a crash."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise ModelNotFound(f"{path}: cannot expand the home directory", ref=str(path)) from None


def _inside(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


class LocalPaths:
    """The local-path rule of one resolver: ``allowed=None`` allows every path."""

    def __init__(self, allowed: Sequence[str | Path] | None = None) -> None:
        self.restricted = allowed is not None
        dirs = [os.path.abspath(os.fspath(d)) for d in allowed or ()]
        #: Allowed directories as written (normalised) and with symlinks resolved.
        self._written = tuple(os.path.normpath(d) for d in dirs)
        self._real = tuple(os.path.realpath(d) for d in dirs)

    def directory(self, ref: str) -> Path:
        """The directory a path reference names, or :class:`LocalPathNotAllowed`."""
        if not self.restricted:
            return expand(ref)
        return Path(self._confine(ref, ref))

    def file(self, path: Path, ref: str) -> Path:
        """The path to open for a file in a directory :meth:`directory` returned.

        Its target if it is a symlink, which must stay inside the allowed
        directories too (the directory itself was checked as written).
        """
        if not self.restricted:
            return path
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            raise LocalPathNotAllowed(NOT_ALLOWED, ref=ref) from None
        if not _inside(real, self._real):
            raise LocalPathNotAllowed(NOT_ALLOWED, ref=ref)
        return Path(real)

    def relative_dir(self, ref: str) -> Path | None:
        """``org/repo`` as a directory under the working directory, when it may be used."""
        if not self.restricted:
            return Path(ref)
        try:
            return Path(self._confine(os.path.join(os.getcwd(), ref), ref))
        except (LocalPathNotAllowed, OSError):
            return None

    def _confine(self, written: str, ref: str) -> str:
        refused = LocalPathNotAllowed(NOT_ALLOWED, ref=ref)
        if not written.startswith("/") or ".." in written.split("/"):
            raise refused
        normal = os.path.normpath(written)
        if not _inside(normal, self._written):
            raise refused
        try:
            real = os.path.realpath(normal)
        except (OSError, ValueError):
            raise refused from None
        if not _inside(real, self._real):
            raise refused
        return real
