"""Compatibility of a verifier, a drafter and serving settings, as findings.

Pure: configs in, a list of :class:`Finding` out, each with a stable code
(see :data:`CODES`), a severity and a message that says what to change. It
runs before anything is deployed, so the mistakes that otherwise surface as
a vLLM crash minutes into start-up (wrong verifier, vocab or hidden size
mismatch, heads not divisible by TP, not enough memory, context longer than
the model) are caught with their cause.

Malformed input never raises: an unparsable or incomplete config is an
``InvalidConfig`` finding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from specops.api.v1alpha1 import PlanStatus
from specops.compat.findings import CODES, Finding, Severity, error, has_errors, warning
from specops.compat.speculators import (
    LEGACY_TYPES,
    SUPPORTED_TYPES,
    TYPES_WITHOUT_LAYERS,
    SpeculatorConfig,
    is_speculators,
)
from specops.compat.speculators import parse as parse_speculator
from specops.gpus import GpuType
from specops.modelarch import ConfigError, ModelArch, SafetensorsInfo, from_config
from specops.sizing import SizingError, plan, tp_compatible

__all__ = [
    "CODES",
    "CheckSettings",
    "Finding",
    "ModelLike",
    "Report",
    "Severity",
    "check",
    "evaluate",
    "has_errors",
]


class ModelLike(Protocol):
    """What compat reads from a resolved model (``specops.hub.ResolvedModel`` fits)."""

    @property
    def ref(self) -> str: ...

    @property
    def config(self) -> dict[str, Any]: ...

    @property
    def safetensors(self) -> SafetensorsInfo | None: ...


ModelInput = ModelLike | Mapping[str, Any] | str | bytes


@dataclass(frozen=True)
class CheckSettings:
    """The serving settings the models are checked against; None means "not specified".

    ``verifier_ref`` is the verifier the user named (defaults to the resolved
    verifier's ``ref``); ``verifier_explicit`` is False when the verifier was
    taken from the drafter's own ``verifier.name_or_path``.
    """

    verifier_ref: str | None = None
    verifier_explicit: bool = True
    tensor_parallel_size: int | None = None
    num_speculative_tokens: int | None = None
    max_model_len: int | None = None
    gpu: GpuType | None = None
    gpu_memory_utilization: float = 0.9
    min_concurrent_sequences: int = 4


@dataclass(frozen=True)
class Report:
    """Findings plus the sizing plan, when a GPU was given and everything fits."""

    findings: list[Finding]
    plan: PlanStatus | None

    @property
    def compatible(self) -> bool:
        return not has_errors(self.findings)


@dataclass(frozen=True)
class _Loaded:
    ref: str | None
    config: Mapping[str, Any] | None
    safetensors: SafetensorsInfo | None


def _load(model: object, role: str, findings: list[Finding]) -> _Loaded:
    """Accept a resolved model, a dict or raw JSON; report what cannot be used."""
    ref: str | None = None
    safetensors: SafetensorsInfo | None = None
    raw: object = model
    if hasattr(model, "config") and hasattr(model, "ref"):
        ref = model.ref if isinstance(model.ref, str) else None
        raw = model.config
        found = getattr(model, "safetensors", None)
        safetensors = found if isinstance(found, SafetensorsInfo) else None
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            findings.append(error("InvalidConfig", f"{role} config.json is not UTF-8 text"))
            return _Loaded(ref, None, None)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            findings.append(
                error(
                    "InvalidConfig",
                    f"{role} config.json is not valid JSON ({exc.msg} at line {exc.lineno},"
                    f" column {exc.colno}); re-download or regenerate it",
                )
            )
            return _Loaded(ref, None, None)
    if not isinstance(raw, Mapping):
        findings.append(
            error(
                "InvalidConfig",
                f"{role} config.json must be a JSON object, found {type(raw).__name__}",
            )
        )
        return _Loaded(ref, None, None)
    return _Loaded(ref, raw, safetensors)


def _arch(cfg: Mapping[str, Any], role: str, findings: list[Finding]) -> ModelArch | None:
    try:
        return from_config(cfg)
    except ConfigError as exc:
        findings.append(error("InvalidConfig", f"{role}: {exc}"))
        return None


def _is_local_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", "\\"))
        or (len(name) > 2 and name[1] == ":" and name[2] in "\\/")
        or name.count("/") > 1
    )


def _same_model(a: str, b: str) -> bool:
    return a.strip().strip("/").lower() == b.strip().strip("/").lower()


def _verifier_identity(
    spec: SpeculatorConfig,
    verifier: ModelArch,
    drafter: ModelArch | None,
    settings: CheckSettings,
    verifier_ref: str | None,
    findings: list[Finding],
) -> None:
    named = spec.verifier_name
    if _is_local_path(named):
        if settings.verifier_explicit and verifier_ref:
            findings.append(
                warning(
                    "LocalVerifierPath",
                    f"the drafter names a machine-local verifier path {named!r}; SpecOps serves"
                    f" the verifier you named ({verifier_ref}) through --speculative-config,"
                    " so make sure it is the model the drafter was trained against",
                )
            )
        else:
            findings.append(
                error(
                    "LocalVerifierPath",
                    f"the drafter names a machine-local verifier path {named!r} that no cluster"
                    " can load; name the verifier explicitly (spec.verifier.model / --verifier)",
                )
            )
        return
    if verifier_ref is None or _same_model(named, verifier_ref):
        return
    archs_match = not spec.verifier_architectures or set(spec.verifier_architectures) == set(
        verifier.architectures
    )
    shapes_match = drafter is None or (
        drafter.vocab_size == verifier.vocab_size
        and (spec.target_hidden_size or drafter.hidden_size) == verifier.hidden_size
    )
    if archs_match and shapes_match:
        findings.append(
            warning(
                "VerifierMismatch",
                f"the drafter was trained for {named}, you named {verifier_ref}; architecture and"
                " shapes match (e.g. a quantized or fine-tuned variant), so it will run, but"
                " acceptance may be lower than published",
            )
        )
    else:
        why = (
            f"architectures {list(spec.verifier_architectures)} vs {list(verifier.architectures)}"
            if not archs_match
            else "their shapes differ"
        )
        findings.append(
            error(
                "VerifierMismatch",
                f"the drafter was trained for {named}, not {verifier_ref} ({why}); use {named}"
                " as the verifier or a speculator trained for your verifier",
            )
        )


def _shapes(
    spec: SpeculatorConfig, verifier: ModelArch, drafter: ModelArch, findings: list[Finding]
) -> None:
    if drafter.vocab_size != verifier.vocab_size:
        findings.append(
            error(
                "VocabSizeMismatch",
                f"the drafter's transformer_layer_config.vocab_size is {drafter.vocab_size}, the"
                f" verifier's vocab_size is {verifier.vocab_size}; the drafter must be trained"
                " with the verifier's tokenizer",
            )
        )
    target_hidden = spec.target_hidden_size or drafter.hidden_size
    source = (
        "target_hidden_size"
        if spec.target_hidden_size
        else "hidden_size (target_hidden_size is null)"
    )
    if target_hidden != verifier.hidden_size:
        findings.append(
            error(
                "HiddenSizeMismatch",
                f"the drafter reads verifier hidden states of width {target_hidden} (its {source}),"
                f" the verifier's hidden_size is {verifier.hidden_size}; use a speculator trained"
                " for this verifier",
            )
        )
    if spec.aux_layer_ids is not None:
        bad = [i for i in spec.aux_layer_ids if not 0 <= i < verifier.num_layers]
        if bad:
            findings.append(
                error(
                    "AuxLayerOutOfRange",
                    f"eagle_aux_hidden_state_layer_ids {list(spec.aux_layer_ids)} name layers {bad}"
                    f" outside the verifier's 0..{verifier.num_layers - 1}; the drafter was trained"
                    " on a deeper model",
                )
            )


def evaluate(
    verifier: ModelInput,
    drafter: ModelInput | None,
    settings: CheckSettings | None = None,
) -> Report:
    """Run every check; return the findings and, when a GPU is given and all fits, the plan."""
    settings = settings or CheckSettings()
    findings: list[Finding] = []

    vload = _load(verifier, "verifier", findings)
    varch: ModelArch | None = None
    if vload.config is not None:
        if is_speculators(vload.config):
            findings.append(
                error(
                    "InvalidConfig",
                    "the verifier is a Speculators drafter config; pass the model to serve as the"
                    " verifier and the drafter as the speculator",
                )
            )
        else:
            varch = _arch(vload.config, "verifier config.json", findings)
    verifier_ref = settings.verifier_ref or vload.ref

    spec: SpeculatorConfig | None = None
    darch: ModelArch | None = None
    dload: _Loaded | None = None
    if drafter is not None:
        dload = _load(drafter, "speculator", findings)
        if dload.config is not None:
            if not is_speculators(dload.config):
                findings.append(
                    error(
                        "NotSpeculatorsFormat",
                        "the speculator has no speculators_config: it is not in the Speculators"
                        " format vLLM reads; convert it with `speculators convert` (e.g."
                        " `speculators convert <repo> --algorithm eagle3 --verifier <verifier>`)",
                    )
                )
            else:
                spec, parse_findings = parse_speculator(dload.config)
                findings.extend(parse_findings)
        if spec is not None and spec.model_type not in SUPPORTED_TYPES:
            hint = LEGACY_TYPES.get(
                spec.model_type, f"vLLM serves {', '.join(sorted(SUPPORTED_TYPES))}"
            )
            findings.append(
                error(
                    "UnsupportedSpeculatorType",
                    f"speculators_model_type {spec.model_type!r} is not supported: {hint}",
                )
            )
            spec = None
        if spec is not None and spec.model_type not in TYPES_WITHOUT_LAYERS and dload is not None:
            assert dload.config is not None
            darch = _arch(dload.config, "speculator transformer_layer_config", findings)

    if spec is not None and varch is not None:
        _verifier_identity(spec, varch, darch, settings, verifier_ref, findings)
        if darch is not None:
            _shapes(spec, varch, darch, findings)
    if spec is not None:
        k = settings.num_speculative_tokens
        if k is not None and spec.trained_tokens and k > spec.trained_tokens:
            findings.append(
                warning(
                    "SpeculativeTokensAboveTrained",
                    f"{k} speculative tokens requested, the drafter was trained for"
                    f" {spec.trained_tokens}; acceptance drops for positions beyond training,"
                    f" so use numSpeculativeTokens <= {spec.trained_tokens}",
                )
            )

    tp = settings.tensor_parallel_size
    if tp is not None:
        for role, arch in (("verifier", varch), ("drafter", darch)):
            why = tp_compatible(arch, tp) if arch is not None else None
            if why is not None:
                findings.append(
                    error(
                        "HeadsNotDivisible",
                        f"{role}: {why}; vLLM shards attention heads evenly, so choose a"
                        " tensorParallelSize that divides them (or leave it unset)",
                    )
                )

    length = settings.max_model_len
    if varch is not None and length is not None and length > varch.max_context:
        scaled = (
            f" ({varch.max_position_embeddings} scaled by its rope_scaling)"
            if varch.max_context != varch.max_position_embeddings
            else ""
        )
        findings.append(
            error(
                "ContextLengthExceeded",
                f"maxModelLen {settings.max_model_len} exceeds the verifier's context limit"
                f" max_position_embeddings {varch.max_context}{scaled}; lower maxModelLen"
                " (or serve a variant with RoPE scaling configured)",
            )
        )

    result: PlanStatus | None = None
    if settings.gpu is not None and varch is not None and not has_errors(findings):
        try:
            result = plan(
                varch,
                darch,
                settings.gpu,
                tensor_parallel_size=tp,
                max_model_len=settings.max_model_len,
                gpu_memory_utilization=settings.gpu_memory_utilization,
                min_concurrent_sequences=settings.min_concurrent_sequences,
                verifier_safetensors=vload.safetensors,
                drafter_safetensors=dload.safetensors if dload is not None else None,
                verifier_name=verifier_ref or "verifier",
                drafter_name=(dload.ref if dload is not None and dload.ref else "drafter"),
            )
        except SizingError as exc:
            findings.append(error("InsufficientGpuMemory", str(exc)))
    return Report(findings, result)


def check(
    verifier: ModelInput,
    drafter: ModelInput | None,
    settings: CheckSettings | None = None,
) -> list[Finding]:
    """All findings for this verifier, drafter and settings (empty: compatible)."""
    return evaluate(verifier, drafter, settings).findings
