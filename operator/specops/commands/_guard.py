"""Hostile input ends in a one-line ``UsageError`` (exit 2), never a traceback.

A resource file or a model's ``config.json`` can be written to hurt the
parser or the arithmetic behind it: YAML nested ten thousand levels deep
(``RecursionError`` in the composer), a 5,000-digit integer (``ValueError``
from Python's integer size limit), ``1e400`` or a zero where a count belongs
(``OverflowError``, ``ZeroDivisionError``), a list where an object belongs
(``TypeError``, ``AttributeError``). The validation in front of the
arithmetic catches what it knows; :func:`input_errors` is the net behind it
for the commands that read user files (``check``, ``plan``, ``render``), so a
user learns which input could not be used instead of reading a stack trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from specops.cli import UsageError

#: What malformed input raises from deep inside parsing and arithmetic.
HOSTILE_INPUT_ERRORS: tuple[type[Exception], ...] = (
    RecursionError,
    ValueError,
    TypeError,
    ArithmeticError,
    LookupError,
    AttributeError,
)

_MAX_DETAIL = 200


def _detail(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(exc, RecursionError):
        text = "nested too deeply"
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def input_errors(what: str) -> Iterator[None]:
    """Turn :data:`HOSTILE_INPUT_ERRORS` raised inside the block into a ``UsageError``."""
    try:
        yield
    except HOSTILE_INPUT_ERRORS as exc:
        raise UsageError(f"{what}: cannot use this input ({_detail(exc)})") from None
