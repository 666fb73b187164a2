"""One-line descriptions of validation errors, for CLI messages and condition messages.

Pydantic's own rendering spans many lines and links to its docs; a user editing
a resource wants ``spec.gpu: gpu.type or gpu.memoryGiB must be set``.
"""

from __future__ import annotations

from pydantic import ValidationError

_MAX_ERRORS = 5


def describe(exc: ValidationError, *, limit: int = _MAX_ERRORS) -> str:
    """``path: message; path: message`` with camelCase paths, at most ``limit`` errors."""
    parts = []
    errors = exc.errors(include_url=False)
    for error in errors[:limit]:
        path = ".".join(str(p) for p in error["loc"]) or "(document)"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{path}: {message}")
    more = len(errors) - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
