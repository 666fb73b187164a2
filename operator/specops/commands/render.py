"""``specops render -f resource.yaml``: the objects the operator would apply, offline.

Runs the same steps as a reconcile (validate, resolve both models to commit
SHAs, check compatibility, plan GPUs, render) with speculation on unless
``speculation.mode`` is ``Never``, and prints multi-document YAML, so a user
can review or ``kubectl apply`` the result without the operator. The plan's
arithmetic and any warnings go to stderr as the reasons behind the output.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from specops.cli import UsageError
from specops.commands._guard import input_errors

EXIT_INCOMPATIBLE = 1


def register(subparsers: Any) -> None:
    """Add the ``render`` subcommand."""
    parser = subparsers.add_parser(
        "render",
        help="render a SpeculativeDeployment into Kubernetes objects (YAML)",
        description=(
            "Validate a SpeculativeDeployment, pin its models, check and size it, and print "
            "the Deployment, Service, PodDisruptionBudget and friends the operator would apply."
        ),
    )
    parser.add_argument(
        "-f",
        "--filename",
        required=True,
        metavar="FILE",
        help="resource YAML ('-' for stdin); several documents render one after the other",
    )
    parser.add_argument(
        "--hub-mirror",
        metavar="DIR",
        default=None,
        help="resolve models from DIR/<org>/<repo>/config.json (default: $SPECOPS_HUB_MIRROR)",
    )
    parser.add_argument(
        "--gpu-override",
        metavar="GPU",
        default=None,
        help="plan for this catalogue GPU instead of spec.gpu (e.g. H200-141GB)",
    )
    parser.add_argument(
        "--hf-endpoint",
        metavar="URL",
        default=None,
        help="HF_ENDPOINT for resolving and for the pods' download (a Hub mirror)",
    )
    parser.set_defaults(func=run)


def _load_documents(filename: str) -> list[Any]:
    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{filename}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{filename}: cannot read: {exc}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{filename}: not valid YAML{where}: {problem}") from None
    if not documents:
        raise UsageError(f"{filename}: no documents")
    return documents


def _note(message: str) -> None:
    print(f"# {message}", file=sys.stderr)


def render_document(doc: Any, args: argparse.Namespace, index: int) -> list[dict[str, Any]]:
    """All steps for one resource document; raises UsageError with a one-line reason."""
    from pydantic import ValidationError

    from specops import compat, gpus, hub, sizing
    from specops.api.errors import describe
    from specops.api.v1alpha1 import ResolvedModelStatus, ResolvedStatus, SpeculativeDeployment
    from specops.compat.speculators import parse as parse_speculator
    from specops.modelarch import ConfigError
    from specops.render import RenderDecision, RenderError, RenderOptions, render

    label = f"{args.filename} (document {index + 1})"
    if isinstance(doc, dict) and doc.get("kind") not in (None, "SpeculativeDeployment"):
        raise UsageError(f"{label}: kind {doc.get('kind')!r} is not SpeculativeDeployment")
    try:
        resource = SpeculativeDeployment.model_validate(doc)
    except ValidationError as exc:
        raise UsageError(f"{label}: invalid SpeculativeDeployment: {describe(exc)}") from None
    spec = resource.spec

    use_speculator = spec.speculator is not None and spec.speculation.mode != "Never"
    token = os.environ.get("HF_TOKEN") or None
    try:
        verifier = hub.resolve(
            spec.verifier.model,
            spec.verifier.revision,
            mirror_dir=args.hub_mirror,
            token=token,
            endpoint=args.hf_endpoint,
        )
        drafter = None
        if use_speculator and spec.speculator is not None:
            drafter = hub.resolve(
                spec.speculator.model,
                spec.speculator.revision,
                mirror_dir=args.hub_mirror,
                token=token,
                endpoint=args.hf_endpoint,
            )
    except hub.HubError as exc:
        raise UsageError(f"{resource.name}: {exc}") from None

    try:
        if args.gpu_override:
            gpu = gpus.lookup(args.gpu_override)
            # Render as if spec.gpu named this card: node selection and resource follow it.
            overridden = spec.gpu.model_copy(
                update={
                    "type": gpu.name,
                    "memory_gib": None,
                    "product_value": None,
                    "resource_name": gpu.resource_name,
                }
            )
            spec = spec.model_copy(update={"gpu": overridden})
            resource = resource.model_copy(update={"spec": spec})
        elif spec.gpu.memory_gib is not None:
            base = gpus.lookup(spec.gpu.type) if spec.gpu.type else None
            gpu = gpus.custom(spec.gpu.memory_gib, base=base)
        else:
            gpu = gpus.lookup(str(spec.gpu.type))
    except ValueError as exc:
        raise UsageError(f"{resource.name}: {exc}") from None

    num_tokens = spec.speculator.num_speculative_tokens if spec.speculator else None
    settings = compat.CheckSettings(
        verifier_ref=spec.verifier.model,
        tensor_parallel_size=spec.tensor_parallel_size,
        num_speculative_tokens=num_tokens,
        max_model_len=spec.max_model_len,
        gpu=gpu,
        gpu_memory_utilization=spec.gpu_memory_utilization,
    )
    findings = compat.check(verifier, drafter, settings)
    for finding in findings:
        _note(f"{resource.name}: {finding.severity} {finding.code}: {finding.message}")
    if compat.has_errors(findings):
        raise _Incompatible(f"{resource.name}: incompatible; see the errors above")

    try:
        plan = sizing.plan(
            verifier.config,
            drafter.config if drafter is not None else None,
            gpu,
            tensor_parallel_size=spec.tensor_parallel_size,
            max_model_len=spec.max_model_len,
            gpu_memory_utilization=spec.gpu_memory_utilization,
            verifier_safetensors=verifier.safetensors,
            drafter_safetensors=drafter.safetensors if drafter is not None else None,
            verifier_name=spec.verifier.model,
            drafter_name=spec.speculator.model if spec.speculator else "drafter",
        )
    except (sizing.SizingError, ConfigError) as exc:
        raise _Incompatible(f"{resource.name}: {exc}") from None
    for line in plan.explanation:
        _note(f"{resource.name}: plan: {line}")

    if drafter is not None and num_tokens is None:
        parsed, _ = parse_speculator(drafter.config)
        num_tokens = parsed.trained_tokens if parsed is not None else None
    resolved = ResolvedStatus(
        verifier=ResolvedModelStatus(
            model=spec.verifier.model, revision=spec.verifier.revision, sha=verifier.sha
        ),
        speculator=None
        if drafter is None or spec.speculator is None
        else ResolvedModelStatus(
            model=spec.speculator.model, revision=spec.speculator.revision, sha=drafter.sha
        ),
    )
    for model in (verifier, drafter):
        if model is not None and model.source != "hub":
            _note(
                f"{resource.name}: {model.ref} came from a {model.source} copy; its revision "
                f"{model.sha} is not a Hub commit, so the download in these pods would fail"
            )
    if not resource.metadata.get("uid"):
        _note(
            f"{resource.name}: no metadata.uid, so no ownerReferences "
            "(the operator adds them for a live resource)"
        )
    replicas = spec.replicas if spec.replicas is not None else spec.autoscaling.min_replicas
    decision = RenderDecision(
        speculation_active=drafter is not None,
        num_speculative_tokens=num_tokens if drafter is not None else None,
        replicas=replicas,
    )
    try:
        return render(
            resource,
            resolved,
            plan,
            decision,
            options=RenderOptions(hf_endpoint=args.hf_endpoint),
        )
    except RenderError as exc:
        raise UsageError(f"{resource.name}: {exc}") from None


class _Incompatible(Exception):
    """The resource is valid but cannot be served as specified (exit 1)."""


def run(args: argparse.Namespace) -> int:
    """Render every document of the file; print YAML to stdout."""
    with input_errors(args.filename):
        documents = _load_documents(args.filename)
    objects: list[dict[str, Any]] = []
    try:
        for index, doc in enumerate(documents):
            with input_errors(f"{args.filename} (document {index + 1})"):
                objects += render_document(doc, args, index)
    except _Incompatible as exc:
        print(f"specops: error: {exc}", file=sys.stderr)
        return EXIT_INCOMPATIBLE
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=True, width=100))
    return 0
