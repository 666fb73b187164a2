"""Simulator subprocesses: start on a free loopback port, stop on request.

Each simulator is ``python -m specops sim serve ...`` in its own process, as
each vLLM replica is its own container. Children get SIGTERM when the runner
dies (Linux ``PR_SET_PDEATHSIG``), so a killed runner never leaves replicas
serving; ``Popen`` is called from the runner's main thread for that reason
(the death signal follows the thread that forked).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def free_loopback_port() -> int:
    """A port the kernel just handed out on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class SimProcess:
    """One running simulator."""

    key: str
    port: int
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def start(key: str, sim_args: list[str], port: int, log_dir: Path) -> SimProcess:
    """Start ``specops sim <sim_args>``; output goes to ``log_dir/<key>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / (key.replace("/", "_") + ".log")
    argv = [sys.executable, "-m", "specops", "sim", *sim_args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log_path.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    log.info("started simulator for %s on 127.0.0.1:%d (pid %d)", key, port, proc.pid)
    return SimProcess(key=key, port=port, argv=argv, log_path=log_path, proc=proc)


def stop_all(sims: list[SimProcess], timeout_s: float = 5.0) -> None:
    """SIGTERM every simulator at once, then SIGKILL what is left after ``timeout_s``."""
    for sim in sims:
        if sim.alive:
            sim.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for sim in sims:
        try:
            sim.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            sim.proc.kill()
            sim.proc.wait()
        log.info("stopped simulator for %s (exit %s)", sim.key, sim.proc.returncode)


def log_tail(sim: SimProcess, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(sim.log_path.read_text(errors="replace").splitlines()[-lines:])
    return ""
