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
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from specops.hub.errors import ConfigNotFound, InvalidModelConfig, RevisionNotFound
from specops.modelarch import SafetensorsInfo

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


def parse_config(data: bytes, where: str, ref: str) -> dict[str, Any]:
    """Decode config.json bytes into a dict, or raise :class:`InvalidModelConfig`."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidModelConfig(f"{where} is not valid JSON: {exc}", ref=ref) from None
    if not isinstance(value, dict):
        raise InvalidModelConfig(
            f"{where} must hold a JSON object, found {type(value).__name__}", ref=ref
        )
    return value


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
    directory: Path, *, ref: str, prefix: str, revision: str
) -> tuple[str, dict[str, Any], SafetensorsInfo | None]:
    """Return (sha, config, safetensors) for a directory holding ``config.json``."""
    config_path = directory / "config.json"
    try:
        data = config_path.read_bytes()
    except FileNotFoundError:
        raise ConfigNotFound(f"{directory} holds no config.json", ref=ref) from None
    except OSError as exc:
        raise ConfigNotFound(f"cannot read {config_path}: {exc.strerror}", ref=ref) from None
    config = parse_config(data, str(config_path), ref)
    sha = f"{prefix}-{hashlib.sha256(data).hexdigest()}"
    pinned = _read_text(directory / ".sha")
    if pinned is not None and COMMIT_SHA.match(pinned):
        sha = pinned
    if COMMIT_SHA.match(revision) and revision != sha:
        raise RevisionNotFound(
            f"{ref}: {directory} holds commit {sha}, not the requested revision {revision}",
            ref=ref,
        )
    safetensors = None
    raw = _read_text(directory / "safetensors.json")
    if raw is not None:
        try:
            safetensors = parse_safetensors(json.loads(raw))
        except json.JSONDecodeError:
            safetensors = None
    return sha, config, safetensors


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def looks_like_path(ref: str) -> bool:
    """A reference written as a path (``/x``, ``./x``, ``../x``, ``~/x``) is never a Hub id."""
    return ref.startswith(("/", "./", "../", "~")) or ref in {".", ".."}


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def is_hub_id(ref: str) -> bool:
    """``org/name`` with the characters the Hub allows (no ``..``, no leading ``-``/``.``)."""
    return bool(HUB_ID.match(ref)) and ".." not in ref and len(ref) <= 96
