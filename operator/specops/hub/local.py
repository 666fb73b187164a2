"""Models that come from disk: a local directory or a mirror laid out like the Hub.

Air-gapped clusters and tests keep ``<org>/<repo>/config.json`` trees; the
mirror is consulted before the Hub so a mirrored model never needs network.

Such models have no git commit, yet every resolved model carries a SHA: the
controller records it to notice when a model changed and to keep rendered
manifests stable. The SHA is therefore the SHA-256 of the config bytes,
prefixed ``local-`` or ``mirror-`` so nobody mistakes it for a Hub commit; it
changes exactly when the config does. A mirror may pin the real Hub commit in
``<org>/<repo>/.sha`` (one line, 40 hex digits), which is then used instead.
A mirror may also hold ``safetensors.json`` (the Hub's ``safetensors`` model
metadata: ``{"parameters": {"BF16": n}, "total": n}``) for exact counts.

Every file is read through :func:`specops.boundedio.read_capped` (regular
files only, at most ``max_bytes``) and parsed within depth and integer limits,
so a FIFO, a device or an oversized or hostile file is a clean
:class:`~specops.hub.errors.HubError`, never a hang or a memory spike.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from specops.boundedio import (
    InvalidJson,
    NotARegularFile,
    TooLarge,
    parse_json_bounded,
    read_capped,
)
from specops.hub.errors import (
    ConfigNotFound,
    InvalidModelConfig,
    ModelFileTooLarge,
    RevisionNotFound,
)
from specops.modelarch import SafetensorsInfo

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
#: Default cap on any model file read (config.json, .sha, safetensors.json): real
#: configs are 1-100 KiB; the operator's memory limit is 512 MiB.
DEFAULT_MAX_FILE_BYTES = 4 * 1024 * 1024
CAP_SETTING = "settings.maxModelFileBytes"


def parse_config(data: bytes, where: str, ref: str) -> dict[str, Any]:
    """Decode config.json bytes into a dict, or raise :class:`InvalidModelConfig`."""
    try:
        value = parse_json_bounded(data)
    except InvalidJson as exc:
        raise InvalidModelConfig(f"{where} {exc}", ref=ref) from None
    if not isinstance(value, dict):
        raise InvalidModelConfig(
            f"{where} must hold a JSON object, found {type(value).__name__}", ref=ref
        )
    return value


def read_model_file(path: Path, *, ref: str, max_bytes: int, where: str) -> bytes | None:
    """The bytes of one model file, None if it does not exist; refusals are HubErrors.

    ``where`` names the file in messages (the user's view of it, not a cache path).
    """
    try:
        return read_capped(path, max_bytes)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except TooLarge as exc:
        size = f"is {exc.size} bytes" if exc.size is not None else "grew while read"
        raise ModelFileTooLarge(
            f"{where} {size}, more than the {max_bytes} bytes allowed ({CAP_SETTING})", ref=ref
        ) from None
    except NotARegularFile as exc:
        raise InvalidModelConfig(f"{where} is a {exc.kind}, not a regular file", ref=ref) from None
    except OSError as exc:
        raise ConfigNotFound(f"cannot read {where}: {exc.strerror}", ref=ref) from None


def parse_safetensors(value: object) -> SafetensorsInfo | None:
    """Read the Hub's ``safetensors`` metadata shape; ignore anything malformed."""
    if not isinstance(value, dict):
        return None
    params = value.get("parameters")
    if not isinstance(params, dict) or not params:
        return None
    counts: dict[str, int] = {}
    for dtype, count in params.items():
        if not isinstance(dtype, str) or isinstance(count, bool) or not isinstance(count, int):
            return None
        if count < 0:
            return None
        counts[dtype] = count
    return SafetensorsInfo(counts)


def read_dir(
    directory: Path,
    *,
    ref: str,
    prefix: str,
    revision: str,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    confine: Callable[[Path], Path] | None = None,
) -> tuple[str, dict[str, Any], SafetensorsInfo | None]:
    """Return (sha, config, safetensors) for a directory holding ``config.json``.

    ``confine`` maps each file to the path to open, refusing one that leads
    outside the allowed directories (see :class:`specops.hub.paths.LocalPaths`).
    """

    def read(name: str) -> bytes | None:
        path = directory / name
        target = confine(path) if confine is not None else path
        return read_model_file(target, ref=ref, max_bytes=max_bytes, where=str(path))

    config_path = directory / "config.json"
    data = read("config.json")
    if data is None:
        raise ConfigNotFound(f"{directory} holds no config.json", ref=ref)
    config = parse_config(data, str(config_path), ref)
    sha = f"{prefix}-{hashlib.sha256(data).hexdigest()}"
    pinned = _text(read(".sha"))
    if pinned is not None and COMMIT_SHA.match(pinned):
        sha = pinned
    if COMMIT_SHA.match(revision) and revision != sha:
        raise RevisionNotFound(
            f"{ref}: {directory} holds commit {sha}, not the requested revision {revision}",
            ref=ref,
        )
    safetensors = None
    raw = read("safetensors.json")
    if raw is not None:
        try:
            safetensors = parse_safetensors(parse_json_bounded(raw))
        except InvalidJson:
            safetensors = None  # optional metadata: a malformed copy only loses exact counts
    return sha, config, safetensors


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None


def looks_like_path(ref: str) -> bool:
    """A reference written as a path (``/x``, ``./x``, ``../x``, ``~/x``) is never a Hub id."""
    return ref.startswith(("/", "./", "../", "~")) or ref in {".", ".."}


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def is_hub_id(ref: str) -> bool:
    """``org/name`` with the characters the Hub allows (no ``..``, no leading ``-``/``.``)."""
    return bool(HUB_ID.match(ref)) and ".." not in ref and len(ref) <= 96
