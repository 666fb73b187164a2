"""``specops check``: will this verifier, speculator and GPU work together?

Answers before anything is deployed, with the same resolution, checks and
sizing the operator runs, so a user can try a pair on a laptop. Exit codes
are for scripts and CI: 0 compatible (warnings allowed), 1 incompatible (an
error finding), 2 the check could not run (bad arguments, a model that does
not exist, the Hub unreachable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from specops.cli import UsageError
from specops.commands._argtypes import fraction, positive_float, positive_int
from specops.commands._guard import input_errors

if TYPE_CHECKING:
    from specops.api.v1alpha1 import PlanStatus
    from specops.compat import Finding
    from specops.gpus import GpuType
    from specops.hub import ResolvedModel


def add_model_arguments(parser: argparse.ArgumentParser, *, verifier_required: bool) -> None:
    """Arguments shared by ``check`` and ``plan``: models, GPU, serving settings, Hub."""
    models = parser.add_argument_group("models")
    models.add_argument(
        "--verifier",
        required=verifier_required,
        metavar="MODEL",
        help="verifier: Hub id (org/name), local directory with config.json, or mirror entry"
        + ("" if verifier_required else "; default: the speculator's verifier.name_or_path"),
    )
    models.add_argument("--verifier-revision", default="main", metavar="REV")
    models.add_argument("--speculator", metavar="MODEL", help="speculator (Speculators format)")
    models.add_argument("--speculator-revision", default="main", metavar="REV")
    serving = parser.add_argument_group("serving")
    serving.add_argument(
        "--gpu", metavar="TYPE", help="GPU type, e.g. H100-80GB (see specops.gpus)"
    )
    serving.add_argument(
        "--gpu-memory-gib",
        type=positive_float,
        metavar="GIB",
        help="memory per GPU as the device reports it (overrides the catalogue)",
    )
    serving.add_argument("--tensor-parallel-size", type=positive_int, metavar="N")
    serving.add_argument("--max-model-len", type=positive_int, metavar="TOKENS")
    serving.add_argument("--gpu-memory-utilization", type=fraction, default=0.9, metavar="FRACTION")
    serving.add_argument(
        "--min-concurrent-sequences",
        type=positive_int,
        default=4,
        metavar="N",
        help="full-length sequences the KV cache must hold (default 4)",
    )
    hub = parser.add_argument_group("hub")
    hub.add_argument(
        "--hub-mirror",
        metavar="DIR",
        default=os.environ.get("SPECOPS_HUB_MIRROR") or None,
        help="directory laid out <org>/<repo>/config.json, consulted before the Hub"
        " (default: $SPECOPS_HUB_MIRROR)",
    )
    hub.add_argument(
        "--hf-endpoint", metavar="URL", help="Hub endpoint (default: $HF_ENDPOINT or the Hub)"
    )
    hub.add_argument("--hub-timeout", type=positive_float, default=10.0, metavar="SECONDS")
    parser.add_argument("--output", "-o", choices=("text", "json"), default="text")


def gpu_from_args(args: argparse.Namespace, *, required: bool) -> GpuType | None:
    """The GPU named on the command line, ``--gpu-memory-gib`` overriding its memory."""
    from specops import gpus

    base = None
    if args.gpu is not None:
        try:
            base = gpus.lookup(args.gpu)
        except gpus.UnknownGpuError as exc:
            raise UsageError(str(exc)) from None
    if args.gpu_memory_gib is not None:
        return gpus.custom(args.gpu_memory_gib, base=base)
    if base is None and required:
        raise UsageError(f"--gpu is required (one of {gpus.known_names()}) or --gpu-memory-gib")
    return base


def resolve_model(args: argparse.Namespace, ref: str, revision: str) -> ResolvedModel | Finding:
    """Resolve one model; an unparsable config is a finding, anything else a UsageError."""
    from specops import hub
    from specops.compat import Finding

    try:
        return hub.resolve(
            ref,
            revision,
            mirror_dir=args.hub_mirror,
            endpoint=args.hf_endpoint,
            timeout=args.hub_timeout,
        )
    except hub.InvalidModelConfig as exc:
        return Finding("InvalidConfig", "error", str(exc))
    except hub.HubError as exc:
        kind = "temporary" if not exc.permanent else exc.reason
        raise UsageError(f"cannot resolve {ref}@{revision} ({kind}): {exc}") from None


def verifier_from_speculator(speculator: ResolvedModel) -> str:
    """The verifier a drafter names, for when the user did not name one."""
    spec = speculator.config.get("speculators_config")
    verifier = spec.get("verifier") if isinstance(spec, dict) else None
    name = verifier.get("name_or_path") if isinstance(verifier, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise UsageError(
            f"{speculator.ref} does not name its verifier (speculators_config.verifier"
            ".name_or_path); pass --verifier"
        )
    return name.strip()


def describe_model(model: ResolvedModel | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {"ref": model.ref, "revision": model.revision, "sha": model.sha, "source": model.source}


def plan_json(plan: PlanStatus | None) -> dict[str, Any] | None:
    return plan.model_dump(mode="json", by_alias=True) if plan is not None else None


def print_plan_text(plan: PlanStatus) -> None:
    print(
        f"plan: tensorParallelSize {plan.tensor_parallel_size}, {plan.gpus_per_replica} x"
        f" {plan.gpu_type} per replica; KV budget {plan.kv_budget_gib:.2f} GiB holds"
        f" {plan.max_concurrent_sequences} sequences of {plan.max_model_len} tokens"
    )
    for line in plan.explanation:
        print(f"  {line}")


@dataclass(frozen=True)
class _Outcome:
    verifier: ResolvedModel | None
    speculator: ResolvedModel | None
    findings: list[Finding]
    plan: PlanStatus | None


def _run_check(args: argparse.Namespace) -> _Outcome:
    from specops import compat

    gpu = gpu_from_args(args, required=False)
    findings: list[Finding] = []

    speculator: ResolvedModel | None = None
    if args.speculator is not None:
        resolved = resolve_model(args, args.speculator, args.speculator_revision)
        if isinstance(resolved, compat.Finding):
            findings.append(
                compat.Finding(resolved.code, resolved.severity, f"speculator: {resolved.message}")
            )
        else:
            speculator = resolved

    verifier_ref = args.verifier
    explicit = verifier_ref is not None
    if verifier_ref is None:
        if args.speculator is None:
            raise UsageError("give --verifier, --speculator or both")
        if speculator is None:
            return _Outcome(None, None, findings, None)
        verifier_ref = verifier_from_speculator(speculator)

    verifier: ResolvedModel | None = None
    resolved_verifier = resolve_model(args, verifier_ref, args.verifier_revision)
    if isinstance(resolved_verifier, compat.Finding):
        findings.append(
            compat.Finding(
                resolved_verifier.code,
                resolved_verifier.severity,
                f"verifier: {resolved_verifier.message}",
            )
        )
    else:
        verifier = resolved_verifier
    if verifier is None or (args.speculator is not None and speculator is None):
        return _Outcome(verifier, speculator, findings, None)

    settings = compat.CheckSettings(
        verifier_ref=verifier_ref,
        verifier_explicit=explicit,
        tensor_parallel_size=args.tensor_parallel_size,
        num_speculative_tokens=args.num_speculative_tokens,
        max_model_len=args.max_model_len,
        gpu=gpu,
        gpu_memory_utilization=args.gpu_memory_utilization,
        min_concurrent_sequences=args.min_concurrent_sequences,
    )
    report = compat.evaluate(verifier, speculator, settings)
    return _Outcome(verifier, speculator, findings + report.findings, report.plan)


def run(args: argparse.Namespace) -> int:
    """Resolve, check, size; print the verdict; exit 0/1 (2 via UsageError)."""
    with input_errors("the models' files"):
        outcome = _run_check(args)
    compatible = not any(f.severity == "error" for f in outcome.findings)
    if args.output == "json":
        document = {
            "compatible": compatible,
            "verifier": describe_model(outcome.verifier),
            "speculator": describe_model(outcome.speculator),
            "findings": [f.as_dict() for f in outcome.findings],
            "plan": plan_json(outcome.plan),
        }
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        gpu_given = args.gpu is not None or args.gpu_memory_gib is not None
        _print_text(outcome, compatible, gpu_given=gpu_given)
    return 0 if compatible else 1


def _print_text(outcome: _Outcome, compatible: bool, *, gpu_given: bool) -> None:
    for role, model in (("verifier", outcome.verifier), ("speculator", outcome.speculator)):
        if model is not None:
            print(f"{role:<11} {model.ref} @ {model.revision} ({model.source}, {model.sha[:20]})")
    if outcome.findings:
        width = max(len(f.code) for f in outcome.findings)
        print()
        print(f"{'SEVERITY':<8}  {'CODE':<{width}}  MESSAGE")
        for f in outcome.findings:
            print(f"{f.severity:<8}  {f.code:<{width}}  {f.message}")
    errors = sum(f.severity == "error" for f in outcome.findings)
    warnings = len(outcome.findings) - errors
    print()
    if compatible:
        note = f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else ""
        print(f"verdict: compatible{note}")
    else:
        print(f"verdict: incompatible ({errors} error{'s' if errors != 1 else ''})")
    if outcome.plan is not None:
        print_plan_text(outcome.plan)
    elif compatible and not gpu_given:
        print("plan: skipped (give --gpu or --gpu-memory-gib to size the replica)")


def register(subparsers: Any) -> None:
    """Add the ``check`` subcommand."""
    parser = subparsers.add_parser(
        "check",
        help="check that a verifier, a speculator and a GPU work together",
        description=(
            "Resolve the models, run the compatibility checks and size the GPUs. Exit 0 when"
            " compatible (warnings allowed), 1 when incompatible, 2 when the check could not run."
        ),
    )
    add_model_arguments(parser, verifier_required=False)
    parser.add_argument(
        "--num-speculative-tokens", type=positive_int, metavar="K", help="tokens drafted per step"
    )
    parser.set_defaults(func=run)
