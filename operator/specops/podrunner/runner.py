"""The pod runner's loop: list, diff, start/stop simulators, keep doors and targets current.

It polls the API server (three cheap list calls per interval, JSON not
deserialised into models) rather than holding watches: on a two-core
machine shared with the control plane that is cheaper than three watch
streams, and a missed event can never leave a simulator running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from specops.podrunner import plan, processes
from specops.podrunner.balance import Backend, probe_readiness
from specops.podrunner.frontdoor import FrontDoor
from specops.prom.filesd import TargetGroup, write_atomic, write_targets

log = logging.getLogger(__name__)

TARGETS_FILE = "specops-podrunner.json"
STATE_FILE = "frontdoors.json"

Lister = Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]]
"""Returns (pods, services, nodes) as plain dicts; runs in a worker thread."""
ReadinessWriter = Callable[[str, str, bool], None]
"""Sets pod (namespace, name)'s Ready condition; runs in a worker thread."""


@dataclass(frozen=True)
class Options:
    targets_dir: Path
    log_dir: Path
    hub_mirror: str | None = None
    time_scale: float | None = None
    load_time_s: float | None = None
    interval_s: float = 1.0
    health_interval_s: float = 0.5
    health_timeout_s: float = 3.0
    failure_threshold: int = 3
    """Consecutive failed probes before a ready replica leaves the front door, as a
    kubelet's readinessProbe ``failureThreshold``: one slow answer from a busy
    replica on a loaded machine must not drop its in-flight capacity."""
    restart_backoff_s: float = 5.0
    drain_timeout_s: float = 30.0
    """How long a deleted pod's simulator may finish its in-flight requests before it
    is stopped: Kubernetes' default ``terminationGracePeriodSeconds``."""


@dataclass
class Running:
    replica: plan.Replica
    sim: processes.SimProcess
    backend: Backend
    failures: int = 0
    reported: bool = False
    """The Ready status the pod has in the API (gated pods only)."""


class PodRunner:
    """Owns every simulator and front door; ``run()`` until ``stop`` is set."""

    def __init__(
        self, lister: Lister, options: Options, set_ready: ReadinessWriter | None = None
    ) -> None:
        self.lister = lister
        self.options = options
        self.set_ready = set_ready
        self.running: dict[str, Running] = {}
        self.doors: dict[str, FrontDoor] = {}
        self._crashed_at: dict[str, float] = {}
        self._crashes: dict[str, int] = {}
        self._skipped_logged: set[tuple[str, str]] = set()
        self._last_targets: Any = None
        self._last_state: Any = None
        self._session: aiohttp.ClientSession | None = None
        self._draining: dict[str, Running] = {}
        self._drains: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        self.options.targets_dir.mkdir(parents=True, exist_ok=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=2.0)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=connector, auto_decompress=False
        ) as session:
            self._session = session
            health = asyncio.create_task(self._health_loop(stop))
            try:
                while not stop.is_set():
                    try:
                        await self.reconcile()
                    except Exception as exc:  # keep serving through API hiccups
                        log.warning("reconcile failed, will retry: %s", exc)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.options.interval_s)
            finally:
                health.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await health
                await self.shutdown()

    async def reconcile(self) -> None:
        """One pass: bring simulators, doors, targets and the state file in line."""
        pods, services, nodes = await asyncio.to_thread(self.lister)
        by_node = {str(n["metadata"]["name"]): n for n in nodes}
        desired, skipped = plan.replicas(pods, by_node)
        for s in skipped:
            if (s.key, s.reason) not in self._skipped_logged:
                self._skipped_logged.add((s.key, s.reason))
                log.warning("not simulating %s: %s", s.key, s.reason)

        gone = [uid for uid in self.running if uid not in desired]
        crashed = [uid for uid, r in self.running.items() if uid in desired and not r.sim.alive]
        for uid in crashed:
            r = self.running[uid]
            log.warning(
                "simulator for %s exited with %s: %s",
                r.replica.key,
                r.sim.proc.returncode,
                processes.log_tail(r.sim),
            )
            self._crashed_at[uid] = time.monotonic()
            self._crashes[uid] = self._crashes.get(uid, 0) + 1
        for uid in [u for u in self._crashes if u not in desired]:
            self._crashes.pop(uid)
            self._crashed_at.pop(uid, None)
        for uid in gone:
            self._drain(self.running.pop(uid))
        stopping = [self.running.pop(uid) for uid in crashed]
        if stopping:
            for r in stopping:
                r.backend.ready = False
            await asyncio.to_thread(processes.stop_all, [r.sim for r in stopping])
        for uid in crashed:
            # The pod stays; its replica is down until the restart has loaded again.
            await self._report(desired[uid], ready=False, reported=desired[uid].pod_ready)

        now = time.monotonic()
        for uid, replica in desired.items():
            if uid in self.running:
                continue
            if now - self._crashed_at.get(uid, -1e9) < self._backoff(uid):
                continue
            port = processes.free_loopback_port()
            argv = plan.simulator_argv(
                replica,
                port,
                hub_mirror=self.options.hub_mirror,
                time_scale=self.options.time_scale,
                load_time_s=self.options.load_time_s,
            )
            sim = processes.start(replica.key, argv, port, self.options.log_dir)
            self.running[uid] = Running(
                replica, sim, Backend(replica.key, sim.url), reported=replica.pod_ready
            )

        await self._sync_doors(plan.front_doors(services))
        self._write_files()

    def _drain(self, r: Running) -> None:
        """Stop a deleted pod's replica the way kubelet and vLLM's server do.

        The pod is out of its Service at once (the door has no new request for
        it), but requests already streaming finish, up to the grace period;
        then the process gets SIGTERM. Killing it at once would cut every
        stream a scale-down happens to catch.
        """
        r.backend.ready = False
        self._draining[r.replica.uid] = r

        async def drain() -> None:
            deadline = time.monotonic() + self.options.drain_timeout_s
            while r.backend.outstanding and r.sim.alive and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.to_thread(processes.stop_all, [r.sim])
            self._draining.pop(r.replica.uid, None)

        task = asyncio.create_task(drain())
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    def _backoff(self, uid: str) -> float:
        return plan.restart_delay(self._crashes.get(uid, 0), self.options.restart_backoff_s)

    async def _sync_doors(self, wanted: dict[str, plan.FrontDoor]) -> None:
        assert self._session is not None
        for key in [k for k in self.doors if k not in wanted]:
            await self.doors.pop(key).stop()
            log.info("front door for %s closed", key)
        for key, spec in wanted.items():
            door = self.doors.get(key)
            if door is None:
                door = FrontDoor(key, self._session)
                await door.start()
                self.doors[key] = door
            door.backends = [r.backend for r in self.running.values() if spec.selects(r.replica)]

    async def _health_loop(self, stop: asyncio.Event) -> None:
        """Mark replicas ready while ``/health`` answers 200 (503 while the model loads)."""
        assert self._session is not None
        probe_timeout = aiohttp.ClientTimeout(total=self.options.health_timeout_s)

        async def probe(r: Running) -> None:
            ok = False
            if r.sim.alive:
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    async with self._session.get(  # type: ignore[union-attr]
                        r.sim.url + "/health", timeout=probe_timeout
                    ) as resp:
                        ok = resp.status == 200
            r.failures = 0 if ok else r.failures + 1
            ready = probe_readiness(
                ok=ok,
                was_ready=r.backend.ready,
                alive=r.sim.alive,
                failures=r.failures,
                threshold=self.options.failure_threshold,
            )
            if ready != r.backend.ready:
                log.info("%s is %s", r.replica.key, "ready" if ready else "not ready")
            r.backend.ready = ready
            if await self._report(r.replica, ready=ready, reported=r.reported):
                r.reported = ready

        while not stop.is_set():
            await asyncio.gather(*(probe(r) for r in list(self.running.values())))
            self._write_files()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.options.health_interval_s)

    async def _report(self, replica: plan.Replica, *, ready: bool, reported: bool) -> bool:
        """Write the pod's Ready condition if the runner owns it and it changed.

        Returns whether the API now says ``ready``; a failed write is retried
        on the next probe, since the pod keeps its old status meanwhile.
        """
        if not replica.gated or self.set_ready is None or ready == reported:
            return ready == reported
        try:
            await asyncio.to_thread(self.set_ready, replica.namespace, replica.pod, ready)
        except Exception as exc:  # the pod may be gone; the next pass knows
            log.warning("could not mark %s %s: %s", replica.key, _word(ready), exc)
            return False
        log.info("marked pod %s %s", replica.key, _word(ready))
        return True

    def _write_files(self) -> None:
        groups = [
            TargetGroup((f"127.0.0.1:{r.sim.port}",), plan.target_labels(r.replica))
            for r in sorted(self.running.values(), key=lambda r: r.replica.key)
        ]
        if groups != self._last_targets:
            write_targets(self.options.targets_dir / TARGETS_FILE, groups)
            self._last_targets = groups
        state = self.state()
        if state != self._last_state:
            write_atomic(self.options.targets_dir / STATE_FILE, state)
            self._last_state = state

    def state(self) -> dict[str, Any]:
        """What runs where: the document written to ``frontdoors.json``."""
        return {
            "frontdoors": {
                key: {
                    "url": door.url,
                    "port": door.port,
                    "backends": [
                        {"pod": b.key, "url": b.url, "ready": b.ready} for b in door.backends
                    ],
                }
                for key, door in sorted(self.doors.items())
            },
            "simulators": {
                r.replica.key: {
                    "uid": r.replica.uid,
                    "url": r.sim.url,
                    "port": r.sim.port,
                    "pid": r.sim.proc.pid,
                    "gpu": r.replica.gpu,
                    "node": r.replica.node,
                    "args": list(r.replica.serve_args),
                    "ready": r.backend.ready,
                }
                for r in sorted(self.running.values(), key=lambda r: r.replica.key)
            },
        }

    async def shutdown(self) -> None:
        """Close every door, stop every simulator, and leave empty target files."""
        for door in self.doors.values():
            await door.stop()
        self.doors.clear()
        for task in list(self._drains):
            task.cancel()
        sims = [r.sim for r in [*self.running.values(), *self._draining.values()]]
        self.running.clear()
        self._draining.clear()
        await asyncio.to_thread(processes.stop_all, sims)
        with contextlib.suppress(OSError):
            self._last_targets = None
            self._last_state = None
            self._write_files()


def _word(ready: bool) -> str:
    return "Ready" if ready else "NotReady"


def readiness_patch(ready: bool, now: str) -> dict[str, Any]:
    """The status patch a kubelet would send when the vLLM container's readiness changes."""
    status = "True" if ready else "False"
    reason = f"{plan.GATED_REASON_PREFIX}{'Ready' if ready else 'NotReady'}"
    conditions = [
        {"type": kind, "status": status, "reason": reason, "lastTransitionTime": now}
        for kind in ("Ready", "ContainersReady")
    ]
    return {
        "status": {
            "conditions": conditions,
            "containerStatuses": [{"name": plan.CONTAINER, "ready": ready}],
        }
    }


def kube_readiness_writer(kubeconfig: str) -> ReadinessWriter:
    """Writes gated pods' readiness through the pod ``status`` subresource (loopback only)."""
    from datetime import UTC, datetime

    from kubernetes import client, config

    from specops.prom.loopback import require_loopback_url

    api_client = config.new_client_from_config(config_file=kubeconfig)
    require_loopback_url(api_client.configuration.host)
    core = client.CoreV1Api(api_client)

    def set_ready(namespace: str, name: str, ready: bool) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        core.patch_namespaced_pod_status(
            name, namespace, readiness_patch(ready, now), _request_timeout=10
        )

    return set_ready


def kube_lister(kubeconfig: str) -> Lister:
    """A lister over the real API server named by ``kubeconfig`` (loopback only)."""
    from kubernetes import client, config

    from specops.prom.loopback import require_loopback_url

    api_client = config.new_client_from_config(config_file=kubeconfig)
    require_loopback_url(api_client.configuration.host)
    core = client.CoreV1Api(api_client)

    def items(resp: Any) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads(resp.data)["items"]
        return data

    def lister() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        pods = items(
            core.list_pod_for_all_namespaces(
                label_selector=plan.MANAGED_SELECTOR, _preload_content=False, _request_timeout=10
            )
        )
        services = items(
            core.list_service_for_all_namespaces(
                label_selector=plan.MANAGED_SELECTOR, _preload_content=False, _request_timeout=10
            )
        )
        nodes = items(core.list_node(_preload_content=False, _request_timeout=10))
        return pods, services, nodes

    return lister
