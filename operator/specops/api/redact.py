"""The one sanitiser between error text and anything a tenant or a log can read.

Why a process-wide registry instead of scrubbing by pattern: a Hub token, a
password or a PEM key has no reliable shape, but the operator knows every
secret value it holds, because it reads them itself (the tokens of
``spec.hfTokenSecretRef``, its own ``hub_token``). Each one is registered the
moment it is read; :func:`redact` then removes it, in the spellings it can
take inside an exception or a response body (as is, base64 as in a Secret's
``data``, URL-quoted as in a query string), from every condition message,
Event message and log line. The reconcile never puts a token into a message
on purpose; this is the net under that rule, for the text a library builds.

Values shorter than :data:`MIN_SECRET_LENGTH` are not registered: replacing a
two-letter string everywhere would garble every message, and the token reader
refuses such values anyway. The registry keeps the :data:`MAX_SECRETS` most
recently registered values, so a tenant rotating a token in a loop cannot grow
the operator's memory.
"""

from __future__ import annotations

import base64
import re
import threading
from collections import OrderedDict
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8
MAX_SECRETS = 4096

_lock = threading.Lock()
_values: OrderedDict[str, None] = OrderedDict()
_pattern: re.Pattern[str] | None = None


def spellings(value: str) -> set[str]:
    """Every form of ``value`` that may show up in text: itself, base64, URL-quoted."""
    raw = value.encode("utf-8")
    forms = {
        value,
        base64.b64encode(raw).decode("ascii"),
        base64.b64encode(raw).decode("ascii").rstrip("="),
        base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
        quote(value, safe=""),
        quote_plus(value, safe=""),
    }
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def register_secret(value: str | None) -> None:
    """Remember ``value`` (and its spellings) so :func:`redact` removes it from now on."""
    global _pattern
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _values:
            _values.move_to_end(value)
            return
        _values[value] = None
        while len(_values) > MAX_SECRETS:
            _values.popitem(last=False)
        _pattern = None


def redact(text: str) -> str:
    """``text`` with every registered secret, in any of its spellings, replaced."""
    pattern = _compiled()
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def _compiled() -> re.Pattern[str] | None:
    global _pattern
    with _lock:
        if _pattern is None and _values:
            forms: set[str] = set()
            for value in _values:
                forms |= spellings(value)
            # Longest first, so a value is replaced whole before any shorter form inside it.
            ordered = sorted(forms, key=lambda form: (-len(form), form))
            _pattern = re.compile("|".join(re.escape(form) for form in ordered))
        return _pattern


def clear() -> None:
    """Forget every registered value (tests only: a process keeps its secrets)."""
    global _pattern
    with _lock:
        _values.clear()
        _pattern = None
