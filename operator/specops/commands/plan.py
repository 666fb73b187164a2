"""``specops plan``: how many GPUs a verifier (and drafter) needs, and why.

Sizing alone, without the compatibility verdict: useful when choosing the
GPU type or the context length. Exit 0 with a plan, 1 when nothing fits one
node (or the given tensor-parallel size does not work), 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from specops.cli import UsageError
from specops.commands._guard import input_errors
from specops.commands.check import (
    add_model_arguments,
    describe_model,
    gpu_from_args,
    plan_json,
    print_plan_text,
    resolve_model,
)

if TYPE_CHECKING:
    from specops.hub import ResolvedModel


def _resolve(args: argparse.Namespace, ref: str, revision: str) -> ResolvedModel:
    from specops.compat import Finding

    resolved = resolve_model(args, ref, revision)
    if isinstance(resolved, Finding):
        raise UsageError(f"{ref}: {resolved.message}")
    return resolved


def run(args: argparse.Namespace) -> int:
    """Resolve the models and print the plan (or why none fits)."""
    with input_errors("the models' files"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from specops import sizing
    from specops.modelarch import ConfigError

    gpu = gpu_from_args(args, required=True)
    assert gpu is not None
    verifier = _resolve(args, args.verifier, args.verifier_revision)
    speculator = (
        _resolve(args, args.speculator, args.speculator_revision)
        if args.speculator is not None
        else None
    )
    try:
        result = sizing.plan(
            verifier.config,
            speculator.config if speculator is not None else None,
            gpu,
            tensor_parallel_size=args.tensor_parallel_size,
            max_model_len=args.max_model_len,
            gpu_memory_utilization=args.gpu_memory_utilization,
            min_concurrent_sequences=args.min_concurrent_sequences,
            verifier_safetensors=verifier.safetensors,
            drafter_safetensors=speculator.safetensors if speculator is not None else None,
            verifier_name=verifier.ref,
            drafter_name=speculator.ref if speculator is not None else "drafter",
        )
    except ConfigError as exc:
        raise UsageError(f"cannot size: {exc}") from None
    except sizing.SizingError as exc:
        if args.output == "json":
            document = {
                "fits": False,
                "error": str(exc),
                "verifier": describe_model(verifier),
                "speculator": describe_model(speculator),
                "plan": None,
            }
            json.dump(document, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print(f"does not fit: {exc}")
        return 1
    if args.output == "json":
        document = {
            "fits": True,
            "verifier": describe_model(verifier),
            "speculator": describe_model(speculator),
            "plan": plan_json(result),
        }
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_plan_text(result)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``plan`` subcommand."""
    parser = subparsers.add_parser(
        "plan",
        help="size a replica: tensor-parallel size, GPUs and the memory budget",
        description=(
            "Choose the smallest tensor-parallel size whose memory holds the weights, the"
            " drafter and the KV cache, and show the arithmetic."
        ),
    )
    add_model_arguments(parser, verifier_required=True)
    parser.set_defaults(func=run)
