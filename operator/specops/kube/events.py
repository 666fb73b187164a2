"""Kubernetes Events on a SpeculativeDeployment, without storms.

The controller only asks for an Event when a condition *transitions*
(compared with the status stored in the API, so a restarted operator does not
repeat itself). This module adds a second guard for the same process: an
identical (object, reason, message) within ``window`` seconds is dropped, and
no object gets more than ``burst`` Events per window, so a flapping child
cannot flood the namespace. What it remembers is forgotten once it is older
than the window, and capped at ``max_keys`` entries, so a stream of distinct
messages (or of resources) cannot grow the operator's memory.

Every message is redacted (:mod:`specops.api.redact`) before it is compared or
posted: an Event is as readable to a tenant as a condition.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from specops.api.redact import redact
from specops.kube.client import KubeClient, KubeError
from specops.kube.kinds import EVENT

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]


class EventLimiter:
    """Pure bookkeeping of what was emitted recently; the clock is injected."""

    def __init__(
        self,
        *,
        window: float = 600.0,
        burst: int = 10,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        #: (uid, reason, message) -> when last sent; oldest first.
        self._last: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        #: uid -> send times within the window; least recently sent first.
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, uid: str, reason: str, message: str) -> bool:
        """True if this Event should be sent now (and records that it was)."""
        now = self.clock()
        self._expire(now)
        key = (uid, reason, message)
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            return False
        recent = self._recent.pop(uid, None) or deque()
        while recent and now - recent[0] >= self.window:
            recent.popleft()
        self._recent[uid] = recent
        if len(recent) >= self.burst:
            return False
        recent.append(now)
        self._last.pop(key, None)
        self._last[key] = now
        for table in (self._last, self._recent):
            while len(table) > self.max_keys:
                table.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        """Drop what is older than the window (both tables are kept oldest first)."""
        while self._last:
            key, sent = next(iter(self._last.items()))
            if now - sent < self.window:
                break
            del self._last[key]
        while self._recent:
            uid, recent = next(iter(self._recent.items()))
            if recent and now - recent[-1] < self.window:
                break
            del self._recent[uid]

    def __len__(self) -> int:
        """Entries remembered (both tables): what the bounds above keep small."""
        return len(self._last) + len(self._recent)

    def forget(self, uid: str) -> None:
        """Drop the history of a deleted object."""
        self._recent.pop(uid, None)
        for key in [k for k in self._last if k[0] == uid]:
            del self._last[key]


def event_body(
    owner: dict[str, Any],
    type_: EventType,
    reason: str,
    message: str,
    *,
    now: datetime,
    instance: str,
) -> dict[str, Any]:
    """A ``core/v1`` Event about ``owner`` (pure; the name is unique per instant)."""
    meta = owner["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{int(now.timestamp() * 1e9):x}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": owner.get("apiVersion", ""),
            "kind": owner.get("kind", ""),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "specops"},
        "reportingComponent": "specops",
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    """Creates Events through the API, limited by an :class:`EventLimiter`."""

    def __init__(
        self, kube: KubeClient, *, instance: str, limiter: EventLimiter | None = None
    ) -> None:
        self.kube = kube
        self.instance = instance
        self.limiter = limiter or EventLimiter()

    async def emit(
        self, owner: dict[str, Any], type_: EventType, reason: str, message: str
    ) -> bool:
        """Post one Event; failures are logged, never raised (Events are best effort)."""
        message = redact(message)
        uid = str(owner["metadata"].get("uid", ""))
        if not self.limiter.allow(uid, reason, message):
            return False
        body = event_body(
            owner, type_, reason, message, now=datetime.now(UTC), instance=self.instance
        )
        try:
            await self.kube.create(EVENT, owner["metadata"]["namespace"], body)
        except KubeError as exc:
            log.warning("could not post Event %s on %s: %s", reason, owner["metadata"]["name"], exc)
            return False
        return True
