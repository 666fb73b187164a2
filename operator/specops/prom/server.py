"""Run the Debian ``prometheus`` binary on a free loopback port.

Storage lives in a temporary directory that survives ``stop()``/``start()``
so a test can take Prometheus away mid-run (the operator must then hold its
last decision) and bring it back on the same URL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import yaml

from specops.prom.client import PromClient
from specops.prom.config import PromSettings, build_config


class PrometheusStartError(RuntimeError):
    """The binary is missing, exited early, or never became ready."""


def free_loopback_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (free unless raced)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusServer:
    """One Prometheus process; use as a context manager or call start/stop.

    ``targets_dir`` is where file-SD JSON files go (``*.json``); a missing
    one is created inside the work directory.
    """

    def __init__(
        self,
        targets_dir: Path | None = None,
        *,
        scrape_interval_s: float = 2.0,
        operator_targets: tuple[str, ...] = (),
        binary: str = "prometheus",
        workdir: Path | None = None,
        port: int | None = None,
    ) -> None:
        self._own_workdir = workdir is None
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="specops-prom-"))
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.targets_dir = targets_dir if targets_dir is not None else self.workdir / "targets"
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self.settings = PromSettings(
            targets_dir=self.targets_dir,
            scrape_interval_s=scrape_interval_s,
            operator_targets=operator_targets,
        )
        self.binary = binary
        self.port = port if port is not None else free_loopback_port()
        self.config_path = self.workdir / "prometheus.yml"
        self.log_path = self.workdir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self) -> PromClient:
        return PromClient(self.url)

    def write_config(self) -> None:
        """(Re)write ``prometheus.yml`` from the current settings."""
        text = yaml.safe_dump(build_config(self.settings), sort_keys=False)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def start(self, timeout_s: float = 30.0) -> None:
        """Start (or restart after ``stop()``) and wait until ``/-/ready`` says 200."""
        if self.running:
            return
        path = shutil.which(self.binary)
        if path is None:
            raise PrometheusStartError(
                f"{self.binary!r} not found on PATH; run `bash hack/install-system-deps`"
            )
        self.write_config()
        args = [
            path,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise PrometheusStartError(
                    f"prometheus exited with {self._proc.returncode}: {self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusStartError(f"prometheus not ready after {timeout_s}s: {self.log_tail()}")

    def reload(self) -> None:
        """Rewrite the config and ask Prometheus to re-read it (file SD needs no reload)."""
        self.write_config()
        if not self.running:
            return
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=5.0) as resp:
            if resp.status != 200:
                raise PrometheusStartError(f"reload answered HTTP {resp.status}")

    def add_operator_target(self, target: str) -> None:
        """Scrape an operator's ``/metrics`` at loopback ``host:port`` (job specops-operator)."""
        if target in self.settings.operator_targets:
            return
        self.settings = replace(
            self.settings, operator_targets=(*self.settings.operator_targets, target)
        )
        self.reload()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL); keeps storage for a later ``start()``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop and delete the work directory if we created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
