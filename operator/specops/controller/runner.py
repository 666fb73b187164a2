"""The operator process: logging, endpoints, leader election, then kopf.

Order matters for restarts and HA. The metrics and health endpoints come up
first (a follower is healthy while it waits). kopf's handlers only start
inside the leader callback and are stopped when the Lease is lost; the
process then exits non-zero so Kubernetes restarts it as a clean follower,
as client-go operators do. SIGTERM stops kopf, hands the Lease back and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from specops.api.redact import redact, register_secret
from specops.controller import handlers
from specops.controller.reconcile import Reconciler
from specops.kube.client import KubeClient, KubeError, load_api_client
from specops.kube.events import EventRecorder
from specops.kube.leader import LeaderElector
from specops.metrics import OperatorMetrics, build_app, serve
from specops.settings import OperatorSettings

log = logging.getLogger("specops")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log pipelines."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class RedactingFilter(logging.Filter):
    """Removes every registered secret (:mod:`specops.api.redact`) from a log record.

    Installed on the root handlers, so it sees every record of every library at
    every level. The message is formatted here and the result kept (arguments
    dropped), and a traceback is formatted and redacted in advance, so no
    formatter can put the raw text back.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string: keep its raw text
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


#: Loggers that print whole HTTP bodies at DEBUG (the kubernetes client logs every
#: response, a Secret's data included): never below INFO, whatever --log-level says.
BODY_LOGGERS = ("kubernetes.client.rest", "kubernetes", "urllib3")


def configure_logging(settings: OperatorSettings) -> None:
    """Root logging per settings; kopf's per-handler chatter only at DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in BODY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
    if settings.log_level != "DEBUG":
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("kubernetes").setLevel(logging.WARNING)
        for noisy in ("urllib3", "httpx", "httpx2", "huggingface_hub"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


class Operator:
    """Everything one process owns; :meth:`run` returns the exit code."""

    def __init__(self, settings: OperatorSettings, *, kubeconfig: str | None = None) -> None:
        self.settings = settings
        self.kubeconfig = kubeconfig
        self.metrics = OperatorMetrics()
        self.started = time.monotonic()
        self.kopf_ready = asyncio.Event()
        self.leading = False
        self.bound_port: int | None = None

    def healthy(self) -> tuple[bool, str]:
        """Probe answer: a follower is healthy; a leader once kopf's watches run."""
        if self.leading and not self.kopf_ready.is_set():
            if time.monotonic() - self.started > 120:
                return False, "leader but kopf did not start"
            return True, "starting"
        return True, "leader" if self.leading else "standby"

    def _on_leading(self, leading: bool) -> None:
        self.leading = leading
        self.metrics.leader.set(1 if leading else 0)
        if not leading:
            self.kopf_ready.clear()

    async def _kopf(self, reconciler: Reconciler, stop: asyncio.Event) -> None:
        registry = kopf.OperatorRegistry()
        handlers.register(registry, reconciler, self.settings)
        resync = asyncio.create_task(handlers.resync_forever(reconciler, self.settings, stop))
        evaluate = asyncio.create_task(handlers.evaluate_forever(reconciler, self.settings, stop))
        try:
            await self._kopf_operator(registry, stop)
        finally:
            reconciler.close()
            for task in (resync, evaluate):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _kopf_operator(self, registry: kopf.OperatorRegistry, stop: asyncio.Event) -> None:
        await kopf.operator(
            registry=registry,
            settings=handlers.kopf_settings(self.settings),
            standalone=True,
            clusterwide=self.settings.clusterwide,
            namespaces=self.settings.namespaces,
            stop_flag=stop,
            ready_flag=self.kopf_ready,
        )

    async def run(self, stop: asyncio.Event) -> int:
        """Serve endpoints, elect, run kopf while leading; 0 on a clean stop."""
        try:
            api = load_api_client(self.kubeconfig, pool_size=32)
        except KubeError as exc:
            log.error("%s", exc)
            return 1
        if self.kubeconfig:
            # kopf's login_via_client reads the same file through KUBECONFIG.
            os.environ["KUBECONFIG"] = self.kubeconfig
        kube = KubeClient(api)
        recorder = EventRecorder(kube, instance=self.settings.identity)
        reconciler = Reconciler(self.settings, kube, recorder, self.metrics)

        runners = []
        app = build_app(self.metrics, self.healthy)
        runner, self.bound_port = await serve(
            app, self.settings.bind_address, self.settings.metrics_port
        )
        runners.append(runner)
        if self.settings.health_port is not None:
            health_runner, _ = await serve(
                build_app(None, self.healthy), self.settings.bind_address, self.settings.health_port
            )
            runners.append(health_runner)
        log.info(
            "specops %s: metrics on %s:%s, watching %s",
            self.settings.identity,
            self.settings.bind_address,
            self.bound_port,
            ",".join(self.settings.namespaces) or "all namespaces",
        )

        async def lead(stop_leading: asyncio.Event) -> None:
            await self._kopf(reconciler, stop_leading)

        try:
            if not self.settings.leader_election:
                self._on_leading(True)
                await self._kopf(reconciler, stop)
                return 0
            elector = LeaderElector(
                kube,
                name=self.settings.lease_name,
                namespace=self.settings.lease_namespace,
                identity=self.settings.identity,
                duration=self.settings.lease_duration_seconds,
                renew=self.settings.lease_renew_seconds,
            )
            clean = await elector.run(lead, stop, on_change=self._on_leading)
            return 0 if clean else 1
        finally:
            for r in runners:
                await r.cleanup()
            api.close()


def run_operator(settings: OperatorSettings, *, kubeconfig: str | None = None) -> int:
    """Blocking entry point of ``specops run``."""
    register_secret(settings.hub_token)
    configure_logging(settings)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Blocking API calls run in threads; they mostly wait on sockets, so more
        # threads than cores keep a burst of reconciles from queueing behind six.
        loop.set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="kube"))
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        return await Operator(settings, kubeconfig=kubeconfig).run(stop)

    try:
        return asyncio.run(main())
    except OSError as exc:  # e.g. the metrics port is taken
        log.error("cannot start: %s", exc)
        return 1
