"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go does it.

Why not kopf peering: peering needs kopf's own cluster-scoped CRDs installed
and pauses rather than excludes; a Lease is built into every cluster and is
what operators written in Go use, so ``kubectl get lease`` shows who acts.

Expiry is judged on this process's monotonic clock: a follower notes when it
last saw the Lease record *change* and takes over only after it stayed
unchanged for ``leaseDurationSeconds``. Clock skew between replicas therefore
cannot make two of them lead. The leader gives up (and the process should
exit) when it could not renew for ``renew_deadline`` seconds, which is shorter
than the lease duration, so it stops acting before anyone may take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from specops.kube.client import KubeClient, KubeError
from specops.kube.kinds import LEASE

log = logging.getLogger(__name__)


def micro_time(moment: datetime) -> str:
    """A ``metav1.MicroTime`` string."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Observation:
    """The Lease record as last seen, and when (monotonic) it last changed."""

    record: tuple[Any, ...]
    since: float


def record_of(spec: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies one renewal: any change means the holder is alive."""
    return (
        spec.get("holderIdentity") or "",
        spec.get("renewTime"),
        spec.get("acquireTime"),
        spec.get("leaseTransitions"),
        spec.get("leaseDurationSeconds"),
    )


def observe(previous: Observation | None, spec: dict[str, Any], now: float) -> Observation:
    """Update the observation with a freshly read Lease spec."""
    record = record_of(spec)
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def claim(
    spec: dict[str, Any] | None,
    observation: Observation | None,
    *,
    identity: str,
    duration: float,
    now: float,
    wall: datetime,
) -> dict[str, Any] | None:
    """The Lease spec to write to lead (acquire or renew), or ``None`` if another leads.

    Pure: ``now`` is this process's monotonic clock, ``wall`` only stamps the
    record for people reading it.
    """
    stamp = micro_time(wall)
    if spec is None:
        return {
            "holderIdentity": identity,
            "leaseDurationSeconds": max(1, round(duration)),
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": 0,
        }
    holder = spec.get("holderIdentity") or ""
    if holder == identity:
        return {**spec, "renewTime": stamp, "leaseDurationSeconds": max(1, round(duration))}
    held_for = float(spec.get("leaseDurationSeconds") or duration)
    if holder and (observation is None or now - observation.since < held_for):
        return None
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, round(duration)),
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": int(spec.get("leaseTransitions") or 0) + 1,
    }


class LeaderElector:
    """Runs a coroutine only while this process holds the Lease."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        duration: float = 15.0,
        renew: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if renew >= duration:
            raise ValueError("renew period must be shorter than the lease duration")
        self.kube = kube
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.duration = duration
        self.renew = renew
        self.renew_deadline = duration - renew
        self.clock = clock
        self._observation: Observation | None = None
        self.leading = False

    async def try_acquire_or_renew(self) -> bool:
        """One round: read the Lease and, if free, expired or ours, write our claim."""
        lease = await self.kube.get(LEASE, self.namespace, self.name)
        now = self.clock()
        spec = None if lease is None else dict(lease.get("spec") or {})
        if spec is not None:
            self._observation = observe(self._observation, spec, now)
        wanted = claim(
            spec,
            self._observation,
            identity=self.identity,
            duration=self.duration,
            now=now,
            wall=datetime.now(UTC),
        )
        if wanted is None:
            return False
        try:
            if lease is None:
                body = {
                    "apiVersion": LEASE.api_version,
                    "kind": LEASE.kind,
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": wanted,
                }
                await self.kube.create(LEASE, self.namespace, body)
            else:
                body = {**lease, "spec": wanted}
                await self.kube.replace(LEASE, self.namespace, body)
        except KubeError as exc:
            if exc.status == 409:  # someone else wrote first; they lead this round
                return False
            raise
        self._observation = observe(self._observation, wanted, self.clock())
        return True

    async def release(self) -> None:
        """Hand the Lease back on a clean stop, so a follower takes over at once."""
        try:
            lease = await self.kube.get(LEASE, self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = {
                **lease["spec"],
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": micro_time(datetime.now(UTC)),
            }
            await self.kube.replace(LEASE, self.namespace, {**lease, "spec": spec})
        except KubeError as exc:
            log.warning("could not release the leader Lease: %s", exc)

    async def run(
        self,
        lead: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
        stop: asyncio.Event,
        on_change: Callable[[bool], None] | None = None,
    ) -> bool:
        """Wait to lead, run ``lead(stop_leading)`` while leading.

        Returns ``True`` when stopped by ``stop`` (clean shutdown), ``False``
        when the lease was lost (the caller should exit so the pod restarts
        clean, as client-go operators do).
        """
        while not stop.is_set():
            try:
                if await self.try_acquire_or_renew():
                    break
            except KubeError as exc:
                log.warning("leader election: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.renew)
        if stop.is_set():
            return True

        log.info(
            "leader election: %s leads via Lease %s/%s", self.identity, self.namespace, self.name
        )
        self.leading = True
        if on_change:
            on_change(True)
        stop_leading = asyncio.Event()
        task: asyncio.Task[None] = asyncio.create_task(lead(stop_leading))
        last_renewed = self.clock()
        lost = False
        try:
            while not stop.is_set() and not task.done():
                waiter = asyncio.create_task(stop.wait())
                await asyncio.wait(
                    {task, waiter}, timeout=self.renew, return_when="FIRST_COMPLETED"
                )
                waiter.cancel()
                if stop.is_set() or task.done():
                    break
                try:
                    if await self.try_acquire_or_renew():
                        last_renewed = self.clock()
                        continue
                    log.error("leader election: another replica took the Lease")
                    lost = True
                    break
                except KubeError as exc:
                    log.warning("leader election: renewal failed: %s", exc)
                if self.clock() - last_renewed > self.renew_deadline:
                    log.error("leader election: could not renew within %.0fs", self.renew_deadline)
                    lost = True
                    break
        finally:
            stop_leading.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=max(self.renew_deadline, 1.0))
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            self.leading = False
            if on_change:
                on_change(False)
            if not lost:
                await self.release()
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        return not lost
