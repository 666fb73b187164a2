"""Compatibility and sizing of a resolved spec, as verdicts (pure).

A thin seam over :mod:`specops.compat` and :mod:`specops.sizing`: the
reconcile needs one answer, "may this spec be rendered, with which plan, and
if not, what does the user have to change", as a ``Compatible`` verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from specops import compat, gpus
from specops.api.v1alpha1 import GpuSpec, PlanStatus, SpeculativeDeploymentSpec
from specops.controller.status import Verdict
from specops.hub import ResolvedModel
from specops.render.images import ImageRule, refusal


def gpu_type(gpu: GpuSpec) -> gpus.GpuType:
    """The catalogue GPU, with ``memoryGiB`` overriding its memory when given."""
    base = gpus.lookup(gpu.type) if gpu.type is not None else None
    if gpu.memory_gib is not None:
        return gpus.custom(gpu.memory_gib, base=base)
    assert base is not None  # the API requires type or memoryGiB
    return base


@dataclass(frozen=True)
class CheckResult:
    """The Compatible verdict and, when compatible, the plan to render."""

    verdict: Verdict
    plan: PlanStatus | None


def check(
    spec: SpeculativeDeploymentSpec,
    verifier: ResolvedModel,
    speculator: ResolvedModel | None,
    *,
    image_rules: Sequence[ImageRule] = (),
) -> CheckResult:
    """Compatibility and sizing in one pass; the reason is the first error's code.

    An image outside the admin's allowlist (``image_rules``; empty allows any)
    comes first: it is ``Compatible=False`` like a model that does not fit,
    because the spec cannot run on this cluster as written and only a spec
    change (``spec.vllm.image``) fixes it; no plan, so no child changes.
    """
    refused = refusal(spec.vllm.image, image_rules)
    if refused is not None:
        return CheckResult(Verdict("False", "ImageNotAllowed", refused), None)
    try:
        gpu = gpu_type(spec.gpu)
    except (gpus.UnknownGpuError, ValueError) as exc:
        return CheckResult(Verdict("False", "UnknownGpu", str(exc)), None)
    settings = compat.CheckSettings(
        verifier_ref=spec.verifier.model,
        tensor_parallel_size=spec.tensor_parallel_size,
        num_speculative_tokens=spec.speculator.num_speculative_tokens if spec.speculator else None,
        max_model_len=spec.max_model_len,
        gpu=gpu,
        gpu_memory_utilization=spec.gpu_memory_utilization,
    )
    report = compat.evaluate(verifier, speculator, settings)
    errors = [f for f in report.findings if f.severity == "error"]
    warnings = [f for f in report.findings if f.severity != "error"]
    if errors:
        text = "; ".join(f"{f.code}: {f.message}" for f in errors)
        return CheckResult(Verdict("False", errors[0].code, text), None)
    if report.plan is None:
        return CheckResult(Verdict("False", "NoPlan", "sizing produced no plan for this GPU"), None)
    plan = report.plan
    message = (
        f"tensor parallel size {plan.tensor_parallel_size} on {gpu.name}, "
        f"{plan.max_concurrent_sequences} full-length sequences fit"
    )
    if warnings:
        message += "; warnings: " + "; ".join(f"{f.code}: {f.message}" for f in warnings)
    return CheckResult(Verdict("True", "Compatible", message), plan)
