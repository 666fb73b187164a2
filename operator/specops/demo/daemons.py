"""Background programs of the demo that outlive ``demo up`` until ``demo down``.

``make demo`` returns with everything still running so the user can look
around (kubectl, Prometheus); ``make demo-down`` must then find and stop
exactly those processes. Each one runs in its own session (process group =
its pid, so its children die with it) and is recorded in ``state.json``
with its kernel start time: a recorded pid whose start time differs is a
recycled pid of someone else's process and is never signalled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from specops.devcluster import processes

STATE_FILE = "state.json"


@dataclass(frozen=True)
class Daemon:
    name: str
    pid: int
    start_time: int
    log: str


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])


def is_ours(daemon: Daemon) -> bool:
    """Alive and the same process we started (not a recycled pid)."""
    return processes.pid_alive(daemon.pid) and start_time(daemon.pid) == daemon.start_time


def read_state(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(directory: Path, data: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(directory / STATE_FILE)


def daemons(data: dict[str, Any]) -> list[Daemon]:
    return [Daemon(**d) for d in data.get("daemons", [])]


def launch(directory: Path, name: str, argv: list[str]) -> Daemon:
    """Start ``argv`` detached, log to ``directory/logs/NAME.log``, record it at once."""
    log = directory / "logs" / f"{name}.log"
    program = processes.start(name, argv, log, die_with_parent=False, cwd=directory)
    daemon = Daemon(name, program.pid, start_time(program.pid) or 0, str(log))
    data = read_state(directory)
    data["daemons"] = [asdict(d) for d in daemons(data) if d.name != name] + [asdict(daemon)]
    write_state(directory, data)
    return daemon


def stop_all(directory: Path) -> list[str]:
    """Stop every recorded daemon that is still ours, newest first; return their names."""
    stopped = []
    for daemon in reversed(daemons(read_state(directory))):
        if is_ours(daemon):
            processes.stop(daemon.pid, timeout=15.0)
            stopped.append(daemon.name)
    return stopped
