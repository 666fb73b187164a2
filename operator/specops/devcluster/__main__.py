"""``python -m specops.devcluster up|down|env|status`` (also ``hack/cluster``).

``up`` returns once the cluster is ready and prints its kubeconfig path as the last
line, so scripts can do ``export KUBECONFIG=$(hack/cluster up | tail -n1)``.
Problems are reported in one message (exit 1), never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from specops.devcluster import cluster, nodepools, tools


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hack/cluster",
        description="A local Kubernetes control plane (real apiserver, kwok GPU nodes).",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, help_text in (
        ("up", "start the cluster (or reuse it) and print its kubeconfig path last"),
        ("down", "stop every process of the cluster and remove its state"),
        ("env", "print shell exports (KUBECONFIG, PATH) for a running cluster"),
        ("status", "print the running cluster as JSON (exit 1 if it is not running)"),
    ):
        p = sub.add_parser(action, help=help_text)
        p.add_argument("--name", default=cluster.DEFAULT_NAME, help="cluster name (default: dev)")
        if action == "up":
            p.add_argument(
                "--node-pools",
                type=Path,
                help=f"YAML node-pool file (default: ${nodepools.ENV_VAR} or the built-in pools)",
            )
            p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
            p.add_argument(
                "--simulated-readiness",
                action="store_true",
                help="start SpecOps-managed pods NotReady until the pod runner's simulator "
                "has loaded (rollouts then wait for the model load, as on GPUs)",
            )
    return parser


def _up(args: argparse.Namespace) -> int:
    pools = nodepools.load(args.node_pools) if args.node_pools else nodepools.from_env()
    bin_dir = tools.find()
    start = time.monotonic()
    running = cluster.find(args.name)
    if running is None:
        print(f"devcluster: starting cluster {args.name!r} ...", file=sys.stderr)
    result = cluster.up(
        args.name,
        bin_dir=bin_dir,
        pools=pools,
        timeout=args.timeout,
        simulated_readiness=args.simulated_readiness,
    )
    if running is None:
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
        print(
            f"devcluster: {args.name!r} ready in {time.monotonic() - start:.1f}s ({steps})",
            file=sys.stderr,
        )
    else:
        print(f"devcluster: {args.name!r} already running", file=sys.stderr)
    print(f"devcluster: server {result.server}; logs in {result.state_dir}/logs", file=sys.stderr)
    print(result.kubeconfig)
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = cluster.down(args.name)
    what = ", ".join(stopped) if stopped else "nothing was running"
    print(f"devcluster: {args.name!r} down ({what})", file=sys.stderr)
    return 0


def _running(name: str) -> cluster.Cluster:
    found = cluster.find(name)
    if found is None:
        raise cluster.ClusterError(
            f"cluster {name!r} is not running; start it with: hack/cluster up --name {name}"
        )
    return found


def _env(args: argparse.Namespace) -> int:
    found = _running(args.name)
    print(f"export KUBECONFIG={shlex.quote(found.kubeconfig)}")
    print(f'export PATH={shlex.quote(found.bin_dir)}:"$PATH"')
    return 0


def _status(args: argparse.Namespace) -> int:
    print(json.dumps(cluster.describe(_running(args.name)), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one action; errors become one line on stderr and exit code 1."""
    args = _parser().parse_args(argv)
    actions = {"up": _up, "down": _down, "env": _env, "status": _status}
    try:
        return actions[args.action](args)
    except (
        cluster.ClusterError,
        tools.ToolsError,
        nodepools.NodePoolError,
    ) as exc:
        print(f"devcluster: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
