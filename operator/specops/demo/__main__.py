"""``python -m specops.demo up|down`` (``make demo`` / ``make demo-down``).

Problems a user can fix come out as one line (exit 1, or 2 for bad flags),
never a traceback; Ctrl-C leaves the stack for ``down`` to clean.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from specops.demo import stack
from specops.demo.values import DemoTiming


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m specops.demo",
        description="The SpecOps demo: local cluster, Helm chart, Qwen3-8B, a load, a report.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="start everything, run the load, write the report")
    down = sub.add_parser("down", help="stop everything the demo started")
    for p in (up, down):
        p.add_argument("--name", default=stack.DEFAULT_NAME, help="cluster name (default: demo)")
    up.add_argument("--output", type=Path, default=Path("out/demo"), help="report directory")
    up.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    up.add_argument("--peak-rate", type=float, default=64.0, help="peak requests/s (default 64)")
    up.add_argument("--cooldown", type=float, default=40.0, help="seconds watched after the load")
    up.add_argument("--prompt-tokens", type=int, default=256)
    up.add_argument("--output-tokens", type=int, default=128)
    up.add_argument("--max-replicas", type=int, default=4)
    up.add_argument("--target-itl-ms", type=float, help="override the example's ITL objective (ms)")
    up.add_argument("--evaluation-seconds", type=float, default=5.0, help="policy period")
    up.add_argument("--window-seconds", type=int, default=30, help="policy window (>= 30)")
    up.add_argument("--load-time", type=float, default=10.0, help="simulated model load, s")
    up.add_argument("--time-scale", type=float, help="simulator speed-up (default: real time)")
    up.add_argument("--sample-seconds", type=float, default=3.0, help="live view period")
    return parser


def _up(args: argparse.Namespace) -> int:
    from specops.demo import drive

    if args.window_seconds < 30:
        raise ValueError("--window-seconds must be at least 30 (the API's minimum)")
    if args.max_replicas < 1 or args.evaluation_seconds <= 0 or args.load_time < 0:
        raise ValueError("--max-replicas >= 1, --evaluation-seconds > 0, --load-time >= 0")
    opts = drive.LoadOptions(
        duration_s=args.duration,
        peak_rate=args.peak_rate,
        prompt_tokens=args.prompt_tokens,
        output_tokens=args.output_tokens,
        cooldown_s=args.cooldown,
        sample_s=args.sample_seconds,
    )
    timing = DemoTiming(evaluation_s=args.evaluation_seconds, window_s=args.window_seconds)
    started = time.monotonic()
    running = stack.up(
        args.name,
        timing=timing,
        max_replicas=args.max_replicas,
        target_itl_ms=args.target_itl_ms,
        load_time_s=args.load_time,
        time_scale=args.time_scale,
    )
    path = drive.run(
        running,
        opts,
        timing=timing,
        output=args.output,
        target_itl_ms=running.target_itl_ms,
    )
    text = path.read_text()
    table = text.split("## What happened, step by step", 1)[-1].split("Client TPOT", 1)[0]
    print(table.strip())
    print(f"\nreport: {path} (plots next to it); whole demo took {time.monotonic() - started:.0f}s")
    print(
        "Everything is still running for you to look around:\n"
        f"  export KUBECONFIG={running.kubeconfig} PATH={running.bin_dir}:$PATH\n"
        f"  kubectl get speculativedeployments -A; Prometheus: {running.prometheus_url}\n"
        "Tear it all down with: make demo-down"
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = stack.down(args.name)
    print(f"demo {args.name!r} down ({', '.join(stopped) if stopped else 'nothing was running'})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from specops.devcluster import ClusterError, NodePoolError, ToolsError
    from specops.prom import PrometheusStartError

    args = _parser().parse_args(argv)
    try:
        return _up(args) if args.action == "up" else _down(args)
    except (
        stack.DemoError,
        ClusterError,
        ToolsError,
        NodePoolError,
        PrometheusStartError,
        ValueError,
        OSError,
    ) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        if args.action == "up":
            print("demo: clean up with: make demo-down", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted; clean up with: make demo-down", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
