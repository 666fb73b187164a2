"""Least-outstanding-requests choice among ready replicas (pure).

Round-robin would keep sending to a replica stuck behind long requests;
counting what is in flight per replica is what production gateways (Envoy's
LEAST_REQUEST, the Inference Gateway) do for LLM traffic. Ties rotate so
equally idle replicas share the load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Backend:
    """One replica behind a front door; ``outstanding`` counts requests in flight."""

    key: str
    url: str
    ready: bool = False
    outstanding: int = 0


class LeastOutstanding:
    """Picks the ready backend with the fewest requests in flight."""

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, backends: Sequence[Backend]) -> Backend | None:
        ready = [b for b in backends if b.ready]
        if not ready:
            return None
        fewest = min(b.outstanding for b in ready)
        tied = [b for b in ready if b.outstanding == fewest]
        self._turn += 1
        return tied[self._turn % len(tied)]


def probe_readiness(
    *, ok: bool, was_ready: bool, alive: bool, failures: int, threshold: int
) -> bool:
    """Readiness after one ``/health`` probe, with a kubelet's ``failureThreshold``.

    One success makes a replica ready; a ready replica stays ready until
    ``threshold`` consecutive probes fail, so a busy replica that answers one probe
    late keeps its in-flight requests. A dead process is unready at once.
    """
    if ok:
        return True
    return was_ready and alive and failures < threshold
