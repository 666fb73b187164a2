"""``specops podrunner``: make the local cluster's SpecOps pods serve through simulators."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "podrunner",
        help="run one simulator per SpecOps pod on the local cluster, plus front doors",
    )
    from specops.podrunner.cli import add_arguments

    add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from specops.podrunner.cli import run

    return run(args)
