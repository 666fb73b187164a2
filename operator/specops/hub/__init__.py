"""Model resolution: a reference and revision in, a commit SHA and config.json out.

A reference is, in this order of precedence:

1. a path (``/models/x``, ``./x``, ``~/x``): a local directory holding
   ``config.json``;
2. ``org/repo`` found in the mirror directory (``mirror_dir``, or
   ``SPECOPS_HUB_MIRROR``) laid out ``<org>/<repo>/config.json``;
3. an existing local directory named like ``org/repo``;
4. a Hugging Face Hub id, resolved through :mod:`specops.hub.remote`.

Results are cached in-process by (endpoint, repo, SHA), which is immutable,
and revision -> SHA for a short TTL (branches move; a minute of staleness
is harmless and saves a request per reconcile).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from specops.hub import remote
from specops.hub.errors import (
    ConfigNotFound,
    GatedModel,
    HubError,
    HubUnavailable,
    InvalidModelConfig,
    ModelNotFound,
    NotCached,
    RevisionNotFound,
)
from specops.hub.local import COMMIT_SHA, is_hub_id, looks_like_path, read_dir
from specops.modelarch import SafetensorsInfo

__all__ = [
    "ConfigNotFound",
    "GatedModel",
    "HubError",
    "HubUnavailable",
    "InvalidModelConfig",
    "ModelNotFound",
    "NotCached",
    "ResolvedModel",
    "Resolver",
    "RevisionNotFound",
    "SafetensorsInfo",
    "resolve",
]

MIRROR_ENV = "SPECOPS_HUB_MIRROR"
REVISION_TTL_SECONDS = 60.0
DEFAULT_TIMEOUT_SECONDS = 10.0


def _expand(path: str | Path) -> Path:
    """``~`` and ``~user`` expanded; an unknown user is a missing model, not a crash."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise ModelNotFound(f"{path}: cannot expand the home directory", ref=str(path)) from None


@dataclass(frozen=True)
class ResolvedModel:
    """A model pinned to one commit: what sizing, compat and rendering work from."""

    ref: str
    revision: str
    sha: str
    config: dict[str, Any]
    safetensors: SafetensorsInfo | None
    source: Literal["hub", "mirror", "local"]


class Resolver:
    """Resolves references with in-process caches; one per process is enough."""

    def __init__(
        self,
        *,
        revision_ttl: float = REVISION_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = revision_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._revisions: dict[tuple[str, str, str], tuple[float, str, SafetensorsInfo | None]] = {}
        self._commits: dict[tuple[str, str, str], ResolvedModel] = {}

    def clear(self) -> None:
        with self._lock:
            self._revisions.clear()
            self._commits.clear()

    def resolve(
        self,
        ref: str,
        revision: str = "main",
        *,
        mirror_dir: str | Path | None = None,
        token: str | None = None,
        endpoint: str | None = None,
        cache_dir: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> ResolvedModel:
        """Resolve ``ref`` at ``revision``; raise a :class:`HubError` subclass on failure."""
        if not isinstance(ref, str) or not ref.strip():
            raise ModelNotFound("model reference must be a non-empty string", ref=str(ref))
        if "\x00" in ref or "\x00" in str(revision):
            # A NUL byte is no repo id and no path: the OS would refuse it with ValueError.
            raise ModelNotFound("model reference contains a NUL byte", ref=repr(ref))
        ref = ref.strip()
        revision = (revision or "main").strip() or "main"

        if looks_like_path(ref):
            return self._from_dir(_expand(ref), ref, revision, "local")
        mirror = mirror_dir if mirror_dir is not None else os.environ.get(MIRROR_ENV) or None
        if mirror is not None and not _expand(mirror).is_dir():
            raise HubError(
                f"the Hub mirror {mirror} is not a directory (--hub-mirror / {MIRROR_ENV})",
                ref=ref,
            )
        if mirror is not None and is_hub_id(ref):
            entry = _expand(mirror) / ref
            if (entry / "config.json").is_file():
                return self._from_dir(entry, ref, revision, "mirror")
        if Path(ref).is_dir() and (Path(ref) / "config.json").is_file():
            return self._from_dir(Path(ref), ref, revision, "local")
        if not is_hub_id(ref):
            hint = f" or in the mirror {mirror}" if mirror is not None else ""
            raise ModelNotFound(
                f"{ref!r} is neither a Hub id (org/name), a directory with config.json{hint}",
                ref=ref,
            )
        return self._from_hub(
            ref,
            revision,
            token=token,
            endpoint=endpoint,
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
            timeout=timeout,
        )

    def _from_dir(
        self, directory: Path, ref: str, revision: str, source: Literal["mirror", "local"]
    ) -> ResolvedModel:
        if not directory.is_dir():
            raise ModelNotFound(f"{directory} is not a directory", ref=ref)
        sha, config, safetensors = read_dir(directory, ref=ref, prefix=source, revision=revision)
        return ResolvedModel(ref, revision, sha, config, safetensors, source)

    def _from_hub(
        self,
        ref: str,
        revision: str,
        *,
        token: str | None,
        endpoint: str | None,
        cache_dir: Path | None,
        timeout: float,
    ) -> ResolvedModel:
        where = endpoint or ""
        if remote.offline():
            sha, config = remote.fetch_config(
                ref,
                revision,
                token=token,
                endpoint=endpoint,
                timeout=timeout,
                cache_dir=cache_dir,
                local_only=True,
            )
            return ResolvedModel(ref, revision, sha, config, None, "hub")

        now = self._clock()
        with self._lock:
            pinned = self._revisions.get((where, ref, revision))
        if pinned is not None and (COMMIT_SHA.match(revision) or now - pinned[0] < self._ttl):
            _, sha, safetensors = pinned
        else:
            sha, safetensors = remote.resolve_sha(
                ref, revision, token=token, endpoint=endpoint, timeout=timeout
            )
            with self._lock:
                self._revisions[(where, ref, revision)] = (now, sha, safetensors)

        with self._lock:
            cached = self._commits.get((where, ref, sha))
        if cached is not None:
            return ResolvedModel(ref, revision, sha, cached.config, cached.safetensors, "hub")

        # Fetch by the revision name so the HF cache records revision -> SHA
        # (HF_HUB_OFFLINE later finds it); if the branch moved since model_info,
        # fetch again at the SHA so config and SHA always agree.
        fetched_sha, config = remote.fetch_config(
            ref,
            revision,
            token=token,
            endpoint=endpoint,
            timeout=timeout,
            cache_dir=cache_dir,
            local_only=False,
        )
        if fetched_sha != sha:
            _, config = remote.fetch_config(
                ref,
                sha,
                token=token,
                endpoint=endpoint,
                timeout=timeout,
                cache_dir=cache_dir,
                local_only=False,
            )
        model = ResolvedModel(ref, revision, sha, config, safetensors, "hub")
        with self._lock:
            self._commits[(where, ref, sha)] = model
        return model


_DEFAULT = Resolver()


def resolve(
    ref: str,
    revision: str = "main",
    *,
    mirror_dir: str | Path | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> ResolvedModel:
    """Resolve a model reference with the process-wide cache (see :class:`Resolver`)."""
    return _DEFAULT.resolve(
        ref,
        revision,
        mirror_dir=mirror_dir,
        token=token,
        endpoint=endpoint,
        cache_dir=cache_dir,
        timeout=timeout,
    )
