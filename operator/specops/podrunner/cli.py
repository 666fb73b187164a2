"""Command line of the pod runner.

Shared by ``python -m specops.podrunner`` and ``specops podrunner``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

from specops.podrunner.runner import Options, PodRunner, kube_lister, kube_readiness_writer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig of the local cluster (default: $KUBECONFIG)",
    )
    parser.add_argument(
        "--targets-dir",
        type=Path,
        required=True,
        help="Prometheus file-SD directory; frontdoors.json is written here too",
    )
    parser.add_argument("--log-dir", type=Path, help="simulator logs (default: TARGETS_DIR/logs)")
    parser.add_argument("--hub-mirror", help="directory of <org>/<repo>/config.json")
    parser.add_argument("--time-scale", type=float, help="simulator speed-up factor")
    parser.add_argument("--load-time", type=float, help="simulated model load time, seconds")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between API polls")
    parser.add_argument("-v", "--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; returns 2 on bad arguments."""
    from specops.cli import UsageError

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.kubeconfig or not Path(args.kubeconfig).is_file():
        raise UsageError(f"--kubeconfig {args.kubeconfig!r} is not a file")
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    try:
        lister = kube_lister(args.kubeconfig)
        set_ready = kube_readiness_writer(args.kubeconfig)
    except ValueError as exc:
        raise UsageError(f"API server: {exc}") from None
    options = Options(
        targets_dir=args.targets_dir,
        log_dir=args.log_dir or args.targets_dir / "logs",
        hub_mirror=args.hub_mirror,
        time_scale=args.time_scale,
        load_time_s=args.load_time,
        interval_s=args.interval,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await PodRunner(lister, options, set_ready).run(stop)

    asyncio.run(main())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m specops.podrunner",
        description="Run one simulator per SpecOps pod on the local cluster, plus front doors.",
    )
    add_arguments(parser)
    from specops.cli import UsageError

    try:
        return run(parser.parse_args())
    except UsageError as exc:
        parser.exit(2, f"podrunner: error: {exc}\n")
