"""The ``specops`` command line.

Every subcommand lives in its own module under :mod:`specops.commands` and
exposes ``register(subparsers)``; this file only discovers them, so adding a
command never means editing a central switchboard. Modules are imported lazily
per process start, which keeps ``specops crd`` free of kopf and client imports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

import specops.commands


class UsageError(Exception):
    """Bad arguments or input the user can fix; printed without a traceback (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    """Build the parser from every module in :mod:`specops.commands`."""
    parser = argparse.ArgumentParser(
        prog="specops",
        description="Speculative decoding as a production setting for vLLM on Kubernetes.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for info in sorted(pkgutil.iter_modules(specops.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"specops.commands.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; return its exit code (2 for usage errors, never a traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"specops: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `specops render ... | head` closes the pipe early; that is not an error.
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code
