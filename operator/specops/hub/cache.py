"""The resolver's in-process caches: keyed by credential, bounded, and able to forget.

Keyed by credential because a gated or private repo resolved with one token
must never be served to a caller with another token or none: the key holds
the SHA-256 of the token (never the token), ``""`` for none. Bounded because
the operator runs under a memory limit and tenants choose what is resolved:
least recently used entries go first once there are too many or their
configs weigh too much.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

V = TypeVar("V")


class CacheKey(NamedTuple):
    """Where, as whom, which repo, at which revision (or commit)."""

    endpoint: str
    credential: str
    repo: str
    revision: str


def credential_key(token: str | None) -> str:
    """The SHA-256 of ``token`` in hex, ``""`` for none: tells callers apart, reveals nothing."""
    if not token:
        return ""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class LruCache(Generic[V]):
    """A thread-safe mapping bounded by entry count and by total weight (bytes, say)."""

    def __init__(self, max_entries: int, max_weight: int | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.max_weight = max_weight
        self._lock = threading.Lock()
        self._items: OrderedDict[CacheKey, tuple[V, int]] = OrderedDict()
        self._weight = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def weight(self) -> int:
        with self._lock:
            return self._weight

    def get(self, key: CacheKey) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: CacheKey, value: V, weight: int = 0) -> None:
        """Store ``value``, then evict the least recently used until both bounds hold.

        An entry heavier than ``max_weight`` on its own is not stored at all.
        """
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._weight -= old[1]
            if self.max_weight is not None and weight > self.max_weight:
                return
            self._items[key] = (value, weight)
            self._weight += weight
            while len(self._items) > self.max_entries or (
                self.max_weight is not None and self._weight > self.max_weight
            ):
                _, (_, dropped) = self._items.popitem(last=False)
                self._weight -= dropped

    def discard_where(self, predicate: Callable[[CacheKey], bool]) -> int:
        """Drop every entry whose key matches; return how many went."""
        with self._lock:
            doomed = [key for key in self._items if predicate(key)]
            for key in doomed:
                self._weight -= self._items.pop(key)[1]
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._weight = 0
