"""Prometheus file-based service discovery files, written atomically.

Prometheus re-reads these on inotify events; writing in place could let it
see half a file and drop every target for a scrape cycle, so we write a
temporary file in the same directory and rename it over the old one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specops.prom.loopback import is_loopback_host


@dataclass(frozen=True)
class TargetGroup:
    """Addresses that share one label set (one group per simulated pod in practice)."""

    targets: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for target in self.targets:
            host, _, port = target.rpartition(":")
            if not port.isdigit() or not is_loopback_host(host):
                raise ValueError(f"file SD target {target!r} is not a loopback host:port")


def render(groups: Sequence[TargetGroup]) -> list[dict[str, Any]]:
    """The JSON document Prometheus' ``file_sd_configs`` reads."""
    return [{"targets": list(g.targets), "labels": dict(sorted(g.labels.items()))} for g in groups]


def write_atomic(path: Path, document: Any) -> None:
    """Write JSON to ``path`` via temp file + rename (readers never see a partial file).

    The temp name ends in ``.tmp`` so the ``*.json`` glob never matches it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(document, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_targets(path: Path, groups: Sequence[TargetGroup]) -> None:
    """Atomically replace the file SD file ``path`` with ``groups``."""
    write_atomic(path, render(groups))
