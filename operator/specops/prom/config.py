"""Prometheus configuration for the twin, built as data (never string-formatted YAML).

Two jobs: the simulated vLLM replicas, found through file-based service
discovery in a directory the pod runner writes, and the operator's own
``/metrics``. Both keep only loopback targets, so a stray SD file can never
make Prometheus scrape a kwok pod IP or anything off the machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specops.prom.loopback import LOOPBACK_ADDRESS_REGEX, is_loopback_host

SIM_JOB = "specops-vllm"
OPERATOR_JOB = "specops-operator"


@dataclass(frozen=True)
class PromSettings:
    """What a test or the demo chooses about its Prometheus.

    ``scrape_interval_s`` is short by default because tests wait on scrapes;
    ``operator_targets`` are ``host:port`` strings of SpecOps operators.
    Prometheus sees file SD changes at once through inotify; the refresh
    interval is only a fallback, and long because every refresh logs an error
    for the pod runner's ``frontdoors.json`` (not an SD file) in that directory.
    """

    targets_dir: Path
    scrape_interval_s: float = 2.0
    operator_targets: tuple[str, ...] = ()
    file_sd_refresh_s: float = 30.0
    extra_labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scrape_interval_s <= 0:
            raise ValueError("scrape interval must be positive")
        for target in self.operator_targets:
            host, _, port = target.rpartition(":")
            if not port.isdigit() or not is_loopback_host(host):
                raise ValueError(f"operator target {target!r} is not a loopback host:port")


def _duration(seconds: float) -> str:
    """Prometheus durations take integers with a unit; milliseconds keep sub-second values."""
    return f"{round(seconds * 1000)}ms"


def _keep_loopback() -> list[dict[str, Any]]:
    return [{"source_labels": ["__address__"], "regex": LOOPBACK_ADDRESS_REGEX, "action": "keep"}]


def build_config(settings: PromSettings) -> dict[str, Any]:
    """The ``prometheus.yml`` document for ``settings``."""
    interval = _duration(settings.scrape_interval_s)
    scrape_configs: list[dict[str, Any]] = [
        {
            "job_name": SIM_JOB,
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "file_sd_configs": [
                {
                    "files": [str(settings.targets_dir / "*.json")],
                    "refresh_interval": _duration(settings.file_sd_refresh_s),
                }
            ],
            "relabel_configs": _keep_loopback(),
        }
    ]
    if settings.operator_targets:
        scrape_configs.append(
            {
                "job_name": OPERATOR_JOB,
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "static_configs": [{"targets": list(settings.operator_targets)}],
                "relabel_configs": _keep_loopback(),
            }
        )
    global_: dict[str, Any] = {"scrape_interval": interval, "evaluation_interval": interval}
    if settings.extra_labels:
        global_["external_labels"] = dict(settings.extra_labels)
    return {"global": global_, "scrape_configs": scrape_configs}
