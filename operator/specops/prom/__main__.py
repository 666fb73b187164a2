"""``python -m specops.prom``: a loopback Prometheus for the demo or manual runs.

Scrapes the pod runner's file-SD directory (and operators given with
``--operator-target``) until SIGINT/SIGTERM; prints its URL on stdout.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from specops.prom.server import PrometheusServer, PrometheusStartError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specops.prom", description=__doc__)
    parser.add_argument("--targets-dir", type=Path, required=True, help="file-SD directory")
    parser.add_argument("--workdir", type=Path, help="config, data and log (default: temp)")
    parser.add_argument("--port", type=int, help="listen port on 127.0.0.1 (default: free)")
    parser.add_argument("--scrape-interval", type=float, default=2.0, help="seconds")
    parser.add_argument(
        "--operator-target", action="append", default=[], help="loopback host:port, repeatable"
    )
    args = parser.parse_args(argv)
    try:
        server = PrometheusServer(
            args.targets_dir,
            scrape_interval_s=args.scrape_interval,
            operator_targets=tuple(args.operator_target),
            workdir=args.workdir,
            port=args.port,
        )
    except ValueError as exc:
        parser.exit(2, f"prom: error: {exc}\n")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        server.start()
    except PrometheusStartError as exc:
        print(f"prom: error: {exc}", file=sys.stderr)
        server.close()
        return 1
    print(server.url, flush=True)
    try:
        while not done.wait(1.0):
            if not server.running:
                print(f"prom: prometheus exited: {server.log_tail()}", file=sys.stderr)
                return 1
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
