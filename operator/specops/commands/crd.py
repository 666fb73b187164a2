"""``specops crd``: print the SpeculativeDeployment CRD generated from the models.

``make generate`` writes its output to ``crds/``; a unit test fails when the
checked-in file and this output differ, so the models stay the source of truth.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``crd`` subcommand."""
    parser = subparsers.add_parser(
        "crd",
        help="print the SpeculativeDeployment CustomResourceDefinition (YAML)",
        description="Print the CRD generated from specops.api.v1alpha1.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the CRD YAML to stdout."""
    from specops.api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0
