"""Errors of model resolution, classified once at the boundary.

The controller decides from the class alone whether to record a permanent
failure (the spec must change: repo missing, gated without a token, revision
gone) or to retry later (the Hub is slow, down or rate-limiting us).
"""

from __future__ import annotations


class HubError(Exception):
    """Resolving a model failed; ``permanent`` says whether retrying can help."""

    permanent: bool = True
    reason: str = "HubError"

    def __init__(self, message: str, *, ref: str | None = None) -> None:
        super().__init__(message)
        self.ref = ref


class ModelNotFound(HubError):
    """No such repo, local directory or mirror entry (or it is private and we have no access)."""

    reason = "ModelNotFound"


class ConfigNotFound(ModelNotFound):
    """The repo or directory exists but holds no ``config.json``."""

    reason = "ConfigNotFound"


class InvalidModelConfig(HubError):
    """``config.json`` is not a JSON object (truncated, not JSON, a list ...)."""

    reason = "InvalidConfig"


class ModelFileTooLarge(InvalidModelConfig):
    """A model file is over the size cap (``settings.maxModelFileBytes``); it was not read whole."""

    reason = "ModelFileTooLarge"


class LocalPathNotAllowed(HubError):
    """A model reference is a local path outside the directories the admin allowed.

    One message whatever the path, so a refusal never says whether it exists.
    """

    reason = "LocalPathNotAllowed"


class RevisionNotFound(HubError):
    """The repo exists but the branch, tag or commit does not."""

    reason = "RevisionNotFound"


class GatedModel(HubError):
    """The repo is gated and the token is missing or has not been granted access."""

    reason = "GatedModel"


class NotCached(HubError):
    """Offline mode (``HF_HUB_OFFLINE``) and the model is not in the local cache."""

    reason = "NotCached"


class HubUnavailable(HubError):
    """A temporary failure: timeout, connection error, 5xx or 429; retry later."""

    permanent = False
    reason = "HubUnavailable"

    def __init__(
        self, message: str, *, ref: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, ref=ref)
        self.retry_after = retry_after
