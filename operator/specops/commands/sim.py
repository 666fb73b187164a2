"""``specops sim``: run one simulated vLLM replica, or check the simulator's calibration.

``specops sim serve <verifier> [vLLM's flags] --gpu TYPE --port PORT
[--hub-mirror DIR] [--seed N] [--time-scale X] [--acceptance-profile NAME |
--alpha A] [--load-time S] [--slowdown F]`` takes exactly the command line
the operator renders for vLLM, so the pod runner can start it with a pod's
own container arguments. ``specops sim calibrate`` prints the model against
the published measurements and exits 1 when any is outside its tolerance.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

SERVE_USAGE = (
    "usage: specops sim serve <model> [vLLM flags: --tensor-parallel-size N "
    "--speculative-config JSON --max-model-len N --max-num-seqs N "
    "--gpu-memory-utilization F --port P --served-model-name NAME ...] "
    "[--gpu TYPE] [--hub-mirror DIR] [--seed N] [--time-scale X] "
    "[--acceptance-profile NAME | --alpha A] [--load-time S] [--slowdown F] "
    "[--mean-output-tokens N]"
)


def _serve(args: argparse.Namespace) -> int:
    from specops.cli import UsageError
    from specops.sim.args import SimArgsError, build_replica, parse_serve_args
    from specops.sim.server import serve_forever

    argv: list[str] = list(args.vllm_argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(SERVE_USAGE)
        return 0 if argv else 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        parsed = parse_serve_args(argv)
        replica = build_replica(parsed)
    except SimArgsError as exc:
        raise UsageError(str(exc)) from None
    try:
        asyncio.run(serve_forever(replica, parsed.port))
    except OSError as exc:
        raise UsageError(f"cannot serve on 127.0.0.1:{parsed.port}: {exc.strerror}") from None
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from specops.sim.calibration import format_table, run_all

    results = run_all()
    print(format_table(results))
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"\n{len(failed)} of {len(results)} checks outside tolerance", file=sys.stderr)
        return 1
    print(f"\nall {len(results)} checks within tolerance")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sim", help="simulated vLLM replica (serving twin)")
    sub = parser.add_subparsers(dest="sim_command", metavar="MODE")
    sub.required = True
    # vLLM's flags are parsed by specops.sim.args, not argparse: every word after
    # `serve` is taken verbatim (no option prefix characters here).
    serve = sub.add_parser(
        "serve",
        help="serve one replica on 127.0.0.1 with vLLM's command line",
        prefix_chars="\x00",
        add_help=False,
        usage=SERVE_USAGE.removeprefix("usage: "),
    )
    serve.add_argument("vllm_argv", nargs=argparse.REMAINDER)
    serve.set_defaults(func=_serve)
    calibrate = sub.add_parser(
        "calibrate", help="print the model against published measurements (exit 1 if off)"
    )
    calibrate.set_defaults(func=_calibrate)
