"""Reading files and parsing JSON that someone else wrote, with limits that always hold.

Model references come from tenants and model repos from anyone who can push to
the Hub, so every byte SpecOps reads from them is hostile until proven
otherwise: a FIFO named ``config.json`` would block a reader forever, a device
never ends, a 50 MB file held by several resolutions at once exhausts the
operator's memory, and deeply nested JSON or a 5,000-digit integer makes
:func:`json.loads` raise ``RecursionError`` or ``ValueError`` that nobody
expects. Each of these must end in one clean, catchable error that names the
input and never quotes its content.

One module for every adapter (the Hub resolver now, Prometheus answers
later), so the caps are written, tested and tuned once. It has no dependencies
beyond the standard library.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterable
from typing import Any

#: Nesting beyond this is refused. Model configs nest three or four levels deep.
DEFAULT_MAX_DEPTH = 64
#: Integers with more digits are refused. 64-bit counts need 20 digits.
DEFAULT_MAX_INT_DIGITS = 100
#: Upper bound on the JSON values (containers and scalars) in one document: each
#: costs 30-60 bytes once parsed against 2-3 bytes of text, so this caps the
#: parsed size (about 10 MB) independently of the byte cap. Configs hold hundreds.
DEFAULT_MAX_VALUES = 200_000

_READ_CHUNK = 1 << 16


class BoundedInputError(ValueError):
    """Input refused by a limit or as malformed; the message names it, never quotes it."""


class NotARegularFile(BoundedInputError):
    """A FIFO, device, socket, directory (or a symlink where none may be): never read."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class TooLarge(BoundedInputError):
    """More bytes than the cap; ``size`` is what was seen (None when only 'more than')."""

    def __init__(self, message: str, *, limit: int, size: int | None) -> None:
        super().__init__(message)
        self.limit = limit
        self.size = size


class InvalidJson(BoundedInputError):
    """Not JSON, not UTF-8, or beyond the depth, integer or value-count limits."""


def file_kind(mode: int) -> str:
    """A person's name for what an ``st_mode`` describes."""
    for test, name in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISLNK, "symbolic link"),
    ):
        if test(mode):
            return name
    return "special file"


def _check(st: os.stat_result, path: str | os.PathLike[str], max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = file_kind(st.st_mode)
        raise NotARegularFile(f"{os.fspath(path)} is a {kind}, not a regular file", kind=kind)
    if st.st_size > max_bytes:
        raise TooLarge(
            f"{os.fspath(path)} is {st.st_size} bytes, more than the {max_bytes} allowed",
            limit=max_bytes,
            size=st.st_size,
        )


def read_capped(
    path: str | os.PathLike[str], max_bytes: int, *, follow_symlinks: bool = True
) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, or an error without reading it.

    The file is stat()ed before it is opened, so a FIFO or a device is refused
    without open() (which blocks on a FIFO and has side effects on some
    devices), then opened non-blocking and fstat()ed again, so a swap between
    the two is caught too. A file that grows while being read is refused after
    ``max_bytes + 1`` bytes, never read whole. ``follow_symlinks=False`` refuses
    a symlink as the last component (``O_NOFOLLOW``).

    Raises :class:`NotARegularFile`, :class:`TooLarge`, or :class:`OSError`
    (missing, permission denied ...) for the caller to classify.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")
    _check(os.stat(path, follow_symlinks=follow_symlinks), path, max_bytes)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow_symlinks and exc.errno == errno.ELOOP:  # the last component is a link
            raise NotARegularFile(
                f"{os.fspath(path)} is a symbolic link, not a regular file", kind="symbolic link"
            ) from None
        raise
    try:
        _check(os.fstat(fd), path, max_bytes)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(_READ_CHUNK, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise TooLarge(
                    f"{os.fspath(path)} grew past the {max_bytes} bytes allowed while read",
                    limit=max_bytes,
                    size=None,
                )
        return b"".join(chunks)
    finally:
        os.close(fd)


def join_capped(chunks: Iterable[bytes], max_bytes: int, *, what: str = "the answer") -> bytes:
    """Bytes of a stream (an HTTP body's chunks), refused once past ``max_bytes``.

    Stops pulling at the first chunk over the cap, so a huge or endless body
    costs at most ``max_bytes`` plus one chunk.
    """
    parts: list[bytes] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(
                f"{what} is more than the {max_bytes} bytes allowed", limit=max_bytes, size=None
            )
        parts.append(chunk)
    return b"".join(parts)


def _bounded_int(max_digits: int) -> Any:
    def parse(text: str) -> int:
        if len(text.lstrip("-")) > max_digits:
            raise InvalidJson(f"an integer has more than {max_digits} digits")
        return int(text)

    return parse


def _deeper_than(value: Any, max_depth: int) -> bool:
    """Whether containers nest more than ``max_depth`` levels (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_json_bounded(
    data: bytes | str,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_int_digits: int = DEFAULT_MAX_INT_DIGITS,
    max_values: int = DEFAULT_MAX_VALUES,
) -> Any:
    """Parse JSON text (bytes must be UTF-8) within the limits, or raise :class:`InvalidJson`.

    The value count is bounded before parsing (commas and brackets, counted in
    C), integers as they are parsed (before Python's own 4,300-digit limit
    raises ValueError), and depth by catching RecursionError during parsing
    and walking the result after it. Messages say which limit, never quote the
    input.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJson(f"is not UTF-8 text (byte {exc.start})") from None
    else:
        text = data
    separators = text.count(",") + text.count("[") + text.count("{")
    if separators >= max_values:
        raise InvalidJson(f"holds more than {max_values} JSON values")
    try:
        value = json.loads(text, parse_int=_bounded_int(max_int_digits))
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson(f"nests deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:  # anything else the decoder refuses
        raise InvalidJson(f"is not valid JSON ({type(exc).__name__})") from None
    if isinstance(value, dict | list) and _deeper_than(value, max_depth):
        raise InvalidJson(f"nests deeper than {max_depth} levels")
    return value
