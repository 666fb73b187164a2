"""``specops run``: the operator process.

With no flags it watches every namespace of the cluster ``KUBECONFIG`` (or
the in-cluster service account) points at, honours ``SPECOPS_HUB_MIRROR``,
serves ``/metrics`` and ``/healthz``, and acts only while it holds the leader
Lease. Flags override the ``SPECOPS_*`` environment variables one to one
(see :mod:`specops.settings`). kopf and the Kubernetes client are imported
only when the command runs, so other subcommands stay light.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``run`` to the CLI."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run the operator against the current cluster",
        description=(
            "Reconcile SpeculativeDeployments into vLLM workloads. Every flag has a "
            "SPECOPS_* environment variable; flags win."
        ),
    )
    parser.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        help="watch this namespace (repeatable; default: all) [SPECOPS_NAMESPACES]",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, in-cluster)")
    parser.add_argument("--hub-mirror", help="model mirror directory [SPECOPS_HUB_MIRROR]")
    parser.add_argument("--hub-endpoint", help="Hugging Face Hub endpoint [SPECOPS_HUB_ENDPOINT]")
    parser.add_argument("--prometheus-url", help="default Prometheus [SPECOPS_PROMETHEUS_URL]")
    parser.add_argument("--vllm-image", help="default vLLM image [SPECOPS_VLLM_IMAGE]")
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="log format [SPECOPS_LOG_FORMAT]"
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level [SPECOPS_LOG_LEVEL]",
    )
    parser.add_argument(
        "--metrics-port", type=int, help="/metrics and /healthz port [SPECOPS_METRICS_PORT]"
    )
    parser.add_argument(
        "--health-port", type=int, help="separate /healthz port [SPECOPS_HEALTH_PORT]"
    )
    parser.add_argument("--bind-address", help="listen address [SPECOPS_BIND_ADDRESS]")
    election = parser.add_mutually_exclusive_group()
    election.add_argument(
        "--leader-elect",
        dest="leader_election",
        action="store_const",
        const=True,
        help="act only while holding the leader Lease (default) [SPECOPS_LEADER_ELECTION]",
    )
    election.add_argument(
        "--no-leader-elect",
        dest="leader_election",
        action="store_const",
        const=False,
        help="act without a Lease (a single replica)",
    )
    parser.add_argument("--lease-name", help="leader Lease name [SPECOPS_LEASE_NAME]")
    parser.add_argument(
        "--lease-namespace", help="leader Lease namespace [SPECOPS_LEASE_NAMESPACE]"
    )
    parser.add_argument(
        "--lease-duration", dest="lease_duration_seconds", type=float, metavar="SECONDS"
    )
    parser.add_argument("--lease-renew", dest="lease_renew_seconds", type=float, metavar="SECONDS")
    parser.add_argument("--identity", help="this replica's name in the Lease [SPECOPS_IDENTITY]")
    parser.add_argument(
        "--resync", dest="resync_seconds", type=float, metavar="SECONDS", help="full resync period"
    )
    parser.set_defaults(func=_run)


_SETTINGS_FLAGS = (
    "namespaces",
    "hub_mirror",
    "hub_endpoint",
    "prometheus_url",
    "vllm_image",
    "log_format",
    "log_level",
    "metrics_port",
    "health_port",
    "bind_address",
    "leader_election",
    "lease_name",
    "lease_namespace",
    "lease_duration_seconds",
    "lease_renew_seconds",
    "identity",
    "resync_seconds",
)


def _run(args: argparse.Namespace) -> int:
    from specops.cli import UsageError
    from specops.settings import SettingsError, load_settings

    try:
        settings = load_settings(**{name: getattr(args, name) for name in _SETTINGS_FLAGS})
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    if settings.hub_mirror is not None and not settings.hub_mirror.is_dir():
        raise UsageError(f"hub mirror {settings.hub_mirror} is not a directory")

    from specops.controller.runner import run_operator

    return run_operator(settings, kubeconfig=args.kubeconfig)
