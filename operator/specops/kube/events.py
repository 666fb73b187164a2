"""Kubernetes Events on a SpeculativeDeployment, without storms.

The controller only asks for an Event when a condition *transitions*
(compared with the status stored in the API, so a restarted operator does not
repeat itself). This module adds a second guard for the same process: an
identical (object, reason, message) within ``window`` seconds is dropped, and
no object gets more than ``burst`` Events per window, so a flapping child
cannot flood the namespace.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.burst = burst
        self.clock = clock
        self._last: dict[tuple[str, str, str], float] = {}
        self._recent: dict[str, deque[float]] = {}

    def allow(self, uid: str, reason: str, message: str) -> bool:
        """True if this Event should be sent now (and records that it was)."""
        now = self.clock()
        key = (uid, reason, message)
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            return False
        recent = self._recent.setdefault(uid, deque())
        while recent and now - recent[0] >= self.window:
            recent.popleft()
        if len(recent) >= self.burst:
            return False
        recent.append(now)
        self._last[key] = now
        return True

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
