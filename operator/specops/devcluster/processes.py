"""Starting and stopping the cluster's programs so that none is ever left behind.

Each program runs in its own session (so its process group id is its pid) with its
output in a log file. Stopping signals the whole group, so anything a program
forked dies with it. When the launcher is used from a test session the children
also get ``PR_SET_PDEATHSIG``: if pytest is killed outright, the kernel kills the
control plane too, and the next start clears the stale state directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class ProcessError(RuntimeError):
    """A program of the cluster failed to start or exited early; message names its log."""


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask for SIGKILL when the parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class Program:
    """A started program: its name, pid (also its process group) and log file."""

    name: str
    pid: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        """True while the process exists and is not a zombie."""
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the program's log, to explain a failure without a traceback."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def start(
    name: str, argv: list[str], log: Path, *, die_with_parent: bool, cwd: Path | None = None
) -> Program:
    """Start ``argv`` in a new session, output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                cwd=cwd,
                preexec_fn=_die_with_parent if die_with_parent else None,
            )
        except OSError as exc:
            raise ProcessError(f"cannot start {name} ({argv[0]}): {exc.strerror}") from None
    return Program(name=name, pid=popen.pid, log=log, popen=popen)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def executable(pid: int) -> str | None:
    """The executable path of ``pid``, or None when it is gone or not ours to read."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def stop(pid: int, *, timeout: float = 10.0, popen: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL it if it lingers."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if popen is not None:
                if popen.poll() is not None and not _group_alive(pid):
                    return
            elif not pid_alive(pid) and not _group_alive(pid):
                return
            time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """True while any process of the group still exists (signal 0 probes without harm)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) also succeeds for zombies; look for a live member.
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False
