"""The only module that talks to the Hub, through ``huggingface_hub`` unpatched.

Two calls per model: ``model_info`` turns the revision into a commit SHA (and
returns the safetensors parameter counts), then ``hf_hub_download`` fetches
``config.json`` *at that SHA*, so config and SHA always agree and the HF
cache (``HF_HOME``/``HF_HUB_CACHE``) serves repeats without a request.
``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` work as with any HF
tool; ``endpoint=``/``token=`` override the first two. Where an implicit
token must not be used (the operator, for tenants), callers pass
``token=False``: huggingface_hub then sends none.

``config.json`` is size-checked twice: a HEAD before the download (so an
oversized file is never fetched) and the file on disk after it (the server
may lie, or the HF cache may hold anything), and it is read only through
:func:`specops.hub.local.read_model_file`. The HEAD also goes to the Hub on
every resolution that is not served from the resolver's in-process cache,
so a gated file already in the shared HF disk cache is only returned to a
caller whose token the Hub accepts.

Every failure is translated into :mod:`specops.hub.errors` here, so the
rest of SpecOps never sees an ``httpx`` or ``huggingface_hub`` exception.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import httpx2
from huggingface_hub import (
    HfApi,
    constants,
    get_hf_file_metadata,
    get_token,
    hf_hub_download,
    hf_hub_url,
)
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from specops.hub.errors import (
    ConfigNotFound,
    GatedModel,
    HubError,
    HubUnavailable,
    ModelFileTooLarge,
    ModelNotFound,
    NotCached,
    RevisionNotFound,
)
from specops.hub.local import (
    CAP_SETTING,
    COMMIT_SHA,
    parse_config,
    parse_safetensors,
    read_model_file,
)
from specops.modelarch import SafetensorsInfo

TEMPORARY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def offline() -> bool:
    """``HF_HUB_OFFLINE``, read now (huggingface_hub reads it only at import)."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is None:
        return bool(constants.HF_HUB_OFFLINE)
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


#: What huggingface_hub takes as a token: a string, or False for "send none, not even HF_TOKEN".
Token = str | bool | None


def implicit_token() -> str | None:
    """The token huggingface_hub would use on its own (HF_TOKEN, then the login file)."""
    try:
        return get_token()
    except Exception:  # an unreadable token file is no token, not a crash
        return None


def resolve_sha(
    ref: str, revision: str, *, token: Token, endpoint: str | None, timeout: float
) -> tuple[str, SafetensorsInfo | None]:
    """Ask the Hub which commit ``revision`` names, plus the safetensors counts there."""
    api = HfApi(endpoint=endpoint, token=token)
    try:
        info = api.model_info(
            ref, revision=revision, timeout=timeout, expand=["sha", "safetensors"]
        )
    except Exception as exc:
        raise classify(exc, ref, revision, endpoint) from None
    sha = info.sha
    if not isinstance(sha, str) or not COMMIT_SHA.match(sha):
        raise HubUnavailable(
            f"{_where(endpoint)} answered model info for {ref}@{revision} without a commit SHA;"
            " is HF_ENDPOINT a Hub-compatible server?",
            ref=ref,
        )
    raw: Any = info.safetensors
    safetensors = parse_safetensors(dict(raw)) if raw is not None else None
    return sha, safetensors


class Fetched(NamedTuple):
    """A config.json at a commit; ``size`` (its bytes) weighs it in the resolver's cache."""

    sha: str
    config: dict[str, Any]
    size: int


def check_remote_size(
    ref: str, revision: str, *, token: Token, endpoint: str | None, timeout: float, max_bytes: int
) -> None:
    """HEAD ``config.json`` with the caller's token: refuse it if the Hub says it is too big.

    Also the access check for this caller: it always reaches the Hub, even when
    the file is already in the HF disk cache.
    """
    try:
        url = hf_hub_url(ref, "config.json", revision=revision, endpoint=endpoint)
        meta = get_hf_file_metadata(
            url, token=token, timeout=timeout, endpoint=endpoint, retry_on_errors=True
        )
    except Exception as exc:
        raise classify(exc, ref, revision, endpoint) from None
    if meta.size is not None and meta.size > max_bytes:
        raise ModelFileTooLarge(
            f"{ref}@{revision}/config.json is {meta.size} bytes on {_where(endpoint)}, more than"
            f" the {max_bytes} bytes allowed ({CAP_SETTING}); it was not downloaded",
            ref=ref,
        )


def fetch_config(
    ref: str,
    revision: str,
    *,
    token: Token,
    endpoint: str | None,
    timeout: float,
    cache_dir: Path | None,
    local_only: bool,
    max_bytes: int,
) -> Fetched:
    """Download (or read from the HF cache) ``config.json``: its commit SHA, content and size."""
    if not local_only:
        check_remote_size(
            ref, revision, token=token, endpoint=endpoint, timeout=timeout, max_bytes=max_bytes
        )
    try:
        path = hf_hub_download(
            ref,
            "config.json",
            revision=revision,
            endpoint=endpoint,
            token=token,
            cache_dir=cache_dir,
            etag_timeout=timeout,
            local_files_only=local_only,
        )
    except Exception as exc:
        raise classify(exc, ref, revision, endpoint, local_only=local_only) from None
    file = Path(path)
    # The cache layout is .../snapshots/<commit sha>/config.json.
    sha = file.parent.name if COMMIT_SHA.match(file.parent.name) else revision
    where = f"{ref}@{revision}/config.json"
    data = read_model_file(file, ref=ref, max_bytes=max_bytes, where=f"{where} (HF cache)")
    if data is None:
        raise NotCached(f"{where} vanished from the HF cache while read", ref=ref)
    return Fetched(sha, parse_config(data, where, ref), len(data))


def _where(endpoint: str | None) -> str:
    return endpoint or constants.ENDPOINT


def _retry_after(response: Any) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify(
    exc: BaseException,
    ref: str,
    revision: str,
    endpoint: str | None,
    *,
    local_only: bool = False,
) -> HubError:
    """Map a huggingface_hub/httpx exception to a permanent or temporary :class:`HubError`."""
    where = _where(endpoint)
    if isinstance(exc, HubError):
        return exc
    if isinstance(exc, GatedRepoError):  # subclass of RepositoryNotFoundError: test first
        return GatedModel(
            f"{ref} is gated: accept its licence on the Hub and provide a token with access"
            " (HF_TOKEN, or spec.hfTokenSecretRef in the cluster)",
            ref=ref,
        )
    if isinstance(exc, RevisionNotFoundError):
        return RevisionNotFound(f"{ref} has no revision {revision!r} on {where}", ref=ref)
    if isinstance(exc, RemoteEntryNotFoundError):
        return ConfigNotFound(f"{ref}@{revision} has no config.json", ref=ref)
    if isinstance(exc, RepositoryNotFoundError):
        return ModelNotFound(
            f"model {ref} not found on {where} (check the id; private repos need a token)",
            ref=ref,
        )
    if isinstance(exc, OfflineModeIsEnabled) or (
        isinstance(exc, LocalEntryNotFoundError) and local_only
    ):
        return NotCached(
            f"{ref}@{revision} is not in the Hugging Face cache and HF_HUB_OFFLINE is set;"
            " unset it or pre-fetch the model",
            ref=ref,
        )
    if isinstance(exc, LocalEntryNotFoundError):
        cause = exc.__cause__ or exc.__context__
        if cause is not None and cause is not exc:
            return classify(cause, ref, revision, endpoint)
        return HubUnavailable(f"cannot reach {where} for {ref} and it is not cached", ref=ref)
    if isinstance(exc, HfHubHTTPError):
        response = exc.response
        status = response.status_code if response is not None else None
        if status in TEMPORARY_STATUS:
            retry_after = _retry_after(response)
            hint = f"; retry after {retry_after:g}s" if retry_after is not None else ""
            return HubUnavailable(
                f"{where} answered HTTP {status} for {ref}{hint}", ref=ref, retry_after=retry_after
            )
        if status in (401, 403):
            return GatedModel(
                f"{where} refused access to {ref} (HTTP {status}); check the token", ref=ref
            )
        return HubError(f"{where} answered HTTP {status} for {ref}", ref=ref)
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        # huggingface_hub compares the bytes received with the size the HEAD announced.
        return HubUnavailable(
            f"{where} sent a file of {ref}@{revision} whose size is not the one it announced",
            ref=ref,
        )
    if isinstance(exc, httpx2.TimeoutException):
        return HubUnavailable(f"timed out talking to {where} for {ref}", ref=ref)
    if isinstance(exc, httpx2.HTTPError):
        return HubUnavailable(f"cannot reach {where} for {ref}: {exc}", ref=ref)
    if isinstance(exc, OSError):
        return HubUnavailable(f"cannot reach {where} for {ref}: {exc}", ref=ref)
    if isinstance(exc, ValueError):
        # huggingface_hub validates repo ids and revisions with ValueError subclasses.
        return ModelNotFound(f"{ref!r} is not a valid model reference: {exc}", ref=ref)
    return HubError(f"resolving {ref} failed: {type(exc).__name__}: {exc}", ref=ref)
