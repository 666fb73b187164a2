"""Model resolution: a reference and revision in, a commit SHA and config.json out.

A reference is, in this order of precedence:

1. a path (``/models/x``, ``./x``, ``~/x``): a local directory holding
   ``config.json``; in the operator only inside ``allowed_dirs``
   (``settings.allowedModelDirs``), refused otherwise with one message that
   does not reveal whether the path exists (:mod:`specops.hub.paths`);
2. ``org/repo`` found in the mirror directory (``mirror_dir``, or
   ``SPECOPS_HUB_MIRROR``) laid out ``<org>/<repo>/config.json``;
3. an existing local directory named like ``org/repo`` (relative to the
   working directory; in the operator only inside ``allowed_dirs``);
4. a Hugging Face Hub id, resolved through :mod:`specops.hub.remote`.

Hub results are cached in-process by (endpoint, credential, repo, SHA), which
is immutable, and revision -> SHA for a short TTL (branches move; a minute of
staleness is harmless and saves a request per reconcile). The credential is
the SHA-256 of the token, so what one token resolved is never served to
another token or to none. Both caches are LRU-bounded by entries and the
config cache also by bytes; :meth:`Resolver.forget_unused` returns the memory
of models nobody names any more. Every file is size-capped
(``max_file_bytes``) and its JSON depth- and integer-limited
(:mod:`specops.boundedio`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from specops.hub import remote
from specops.hub.cache import CacheKey, LruCache, credential_key
from specops.hub.errors import (
    ConfigNotFound,
    GatedModel,
    HubError,
    HubUnavailable,
    InvalidModelConfig,
    LocalPathNotAllowed,
    ModelFileTooLarge,
    ModelNotFound,
    NotCached,
    RevisionNotFound,
)
from specops.hub.local import (
    COMMIT_SHA,
    DEFAULT_MAX_FILE_BYTES,
    is_hub_id,
    looks_like_path,
    read_dir,
)
from specops.hub.paths import LocalPaths, expand
from specops.modelarch import SafetensorsInfo

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "ConfigNotFound",
    "GatedModel",
    "HubError",
    "HubUnavailable",
    "InvalidModelConfig",
    "LocalPathNotAllowed",
    "ModelFileTooLarge",
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
#: Distinct (endpoint, credential, repo, revision) entries kept per cache.
DEFAULT_MAX_ENTRIES = 512
#: Bytes of config.json kept in the commit cache (real configs weigh 1-100 KiB).
DEFAULT_MAX_CACHED_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ResolvedModel:
    """A model pinned to one commit: what sizing, compat and rendering work from."""

    ref: str
    revision: str
    sha: str
    config: dict[str, Any]
    safetensors: SafetensorsInfo | None
    source: Literal["hub", "mirror", "local"]


class CacheStats(NamedTuple):
    """How much the resolver holds: revision entries, commit entries, config bytes."""

    revisions: int
    commits: int
    config_bytes: int


class Resolver:
    """Resolves references with in-process caches; one per process is enough.

    ``allowed_dirs=None`` (the CLI) accepts any local path; a sequence (the
    operator, possibly empty) accepts only paths inside those directories.
    ``implicit_token=False`` (the operator) never falls back to ``HF_TOKEN`` or
    a login file when the caller passes no token.
    """

    def __init__(
        self,
        *,
        revision_ttl: float = REVISION_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_cached_bytes: int = DEFAULT_MAX_CACHED_BYTES,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        allowed_dirs: Sequence[str | Path] | None = None,
        implicit_token: bool = True,
    ) -> None:
        self._ttl = revision_ttl
        self._clock = clock
        self.max_file_bytes = max_file_bytes
        self._paths = LocalPaths(allowed_dirs)
        self._implicit_token = implicit_token
        self._revisions: LruCache[tuple[float, str, SafetensorsInfo | None]] = LruCache(max_entries)
        self._commits: LruCache[ResolvedModel] = LruCache(max_entries, max_cached_bytes)

    def clear(self) -> None:
        self._revisions.clear()
        self._commits.clear()

    def cache_stats(self) -> CacheStats:
        return CacheStats(len(self._revisions), len(self._commits), self._commits.weight)

    def forget_unused(self, in_use: Collection[str]) -> int:
        """Drop every cached resolution of a repo not in ``in_use``; return how many went.

        The controller calls it with the models its resources name, so a
        deleted resource's configs do not stay in memory until evicted.
        """
        keep = frozenset(in_use)

        def unused(key: CacheKey) -> bool:
            return key.repo not in keep

        return self._revisions.discard_where(unused) + self._commits.discard_where(unused)

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
            return self._from_dir(self._paths.directory(ref), ref, revision, "local")
        mirror = mirror_dir if mirror_dir is not None else os.environ.get(MIRROR_ENV) or None
        if mirror is not None and not expand(mirror).is_dir():
            raise HubError(
                f"the Hub mirror {mirror} is not a directory (--hub-mirror / {MIRROR_ENV})",
                ref=ref,
            )
        if mirror is not None and is_hub_id(ref):
            entry = expand(mirror) / ref
            if (entry / "config.json").is_file():
                return self._from_dir(entry, ref, revision, "mirror")
        here = self._paths.relative_dir(ref)
        if here is not None and here.is_dir() and (here / "config.json").is_file():
            return self._from_dir(here, ref, revision, "local")
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
        confine = None
        if source == "local" and self._paths.restricted:

            def confine(path: Path) -> Path:
                return self._paths.file(path, ref)

        sha, config, safetensors = read_dir(
            directory,
            ref=ref,
            prefix=source,
            revision=revision,
            max_bytes=self.max_file_bytes,
            confine=confine,
        )
        return ResolvedModel(ref, revision, sha, config, safetensors, source)

    def _credential(self, token: str | None) -> tuple[str, remote.Token]:
        """(cache key of the credential, what to hand huggingface_hub)."""
        if not token and self._implicit_token:
            token = remote.implicit_token()
        if not token:
            return "", False
        return credential_key(token), token

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
        credential, hf_token = self._credential(token)
        where = endpoint or ""

        def fetch(at: str, *, local_only: bool = False) -> remote.Fetched:
            return remote.fetch_config(
                ref,
                at,
                token=hf_token,
                endpoint=endpoint,
                timeout=timeout,
                cache_dir=cache_dir,
                local_only=local_only,
                max_bytes=self.max_file_bytes,
            )

        if remote.offline():
            offline = fetch(revision, local_only=True)
            return ResolvedModel(ref, revision, offline.sha, offline.config, None, "hub")

        now = self._clock()
        revision_key = CacheKey(where, credential, ref, revision)
        pinned = self._revisions.get(revision_key)
        if pinned is not None and (COMMIT_SHA.match(revision) or now - pinned[0] < self._ttl):
            _, sha, safetensors = pinned
        else:
            sha, safetensors = remote.resolve_sha(
                ref, revision, token=hf_token, endpoint=endpoint, timeout=timeout
            )
            self._revisions.put(revision_key, (now, sha, safetensors))

        commit_key = CacheKey(where, credential, ref, sha)
        cached = self._commits.get(commit_key)
        if cached is not None:
            return ResolvedModel(ref, revision, sha, cached.config, cached.safetensors, "hub")

        # Fetch by the revision name so the HF cache records revision -> SHA
        # (HF_HUB_OFFLINE later finds it); if the branch moved since model_info,
        # fetch again at the SHA so config and SHA always agree.
        fetched = fetch(revision)
        if fetched.sha != sha:
            fetched = fetch(sha)
        model = ResolvedModel(ref, revision, sha, fetched.config, safetensors, "hub")
        self._commits.put(commit_key, model, weight=fetched.size)
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
