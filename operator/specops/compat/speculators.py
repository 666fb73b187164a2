"""Reading a Speculators-format drafter config, both layouts, without trusting it.

Speculators 0.1 (``nm-testing/...``) and 0.9 (``RedHatAI/...``) write the same
core keys (``speculators_model_type``, ``speculators_config`` with
``proposal_methods`` and ``verifier``, ``transformer_layer_config``) and differ
in optional ones (``norm_before_fc``, ``fc_norm``, ``eagle_aux_hidden_state_layer_ids``,
architecture names). Everything optional is read with a default; everything
required is validated and reported as an ``InvalidConfig`` finding, so a
hand-edited or truncated config produces a message, not a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from specops.compat.findings import Finding, error

SUPPORTED_TYPES = frozenset({"eagle3", "peagle", "dflash", "dspark", "mtp"})
"""Speculator types vLLM 0.33 serves from a Speculators config."""

_USE_EAGLE3 = "vLLM's Speculators loader does not read it; use (or train) an EAGLE-3 speculator"
LEGACY_TYPES = {
    "eagle": f"legacy EAGLE-1/HASS speculators are not supported: {_USE_EAGLE3}",
    "hass": f"HASS speculators use the legacy EAGLE layout: {_USE_EAGLE3}",
    "eagle2": f"EAGLE-2 speculators are not supported: {_USE_EAGLE3}",
    "medusa": f"Medusa heads are not supported: {_USE_EAGLE3}",
    "mlp_speculator": f"MLP speculators are not supported: {_USE_EAGLE3}",
}

TYPES_WITHOUT_LAYERS = frozenset({"mtp"})
"""MTP reuses the verifier's own prediction layers; no ``transformer_layer_config``."""


@dataclass(frozen=True)
class SpeculatorConfig:
    """The validated facts compat needs from a drafter config."""

    model_type: str
    trained_tokens: int
    verifier_name: str
    verifier_architectures: tuple[str, ...]
    layer_config: Mapping[str, Any] | None
    target_hidden_size: int | None
    aux_layer_ids: tuple[int, ...] | None
    draft_vocab_size: int | None


def is_speculators(cfg: Mapping[str, Any]) -> bool:
    return "speculators_config" in cfg or "speculators_model_type" in cfg


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def parse(cfg: Mapping[str, Any]) -> tuple[SpeculatorConfig | None, list[Finding]]:
    """Validate the Speculators keys; return the facts, or None plus InvalidConfig findings."""
    problems: list[str] = []
    kind = cfg.get("speculators_model_type")
    if not isinstance(kind, str) or not kind.strip():
        problems.append("'speculators_model_type' is missing or not a string")
        kind = ""
    kind = kind.strip().lower()

    spec = cfg.get("speculators_config")
    trained = 0
    verifier_name = ""
    verifier_archs: tuple[str, ...] = ()
    if not isinstance(spec, Mapping):
        problems.append("'speculators_config' is missing or not an object")
    else:
        methods = spec.get("proposal_methods")
        if not isinstance(methods, list) or not methods:
            problems.append("'speculators_config.proposal_methods' must be a non-empty list")
        else:
            tokens = [
                m.get("speculative_tokens") if isinstance(m, Mapping) else None for m in methods
            ]
            if not all(_positive_int(t) for t in tokens):
                problems.append(
                    "every 'speculators_config.proposal_methods[].speculative_tokens'"
                    " must be a positive integer"
                )
            else:
                trained = max(t for t in tokens if isinstance(t, int))
        verifier = spec.get("verifier")
        name = verifier.get("name_or_path") if isinstance(verifier, Mapping) else None
        if not isinstance(name, str) or not name.strip():
            problems.append("'speculators_config.verifier.name_or_path' is missing or empty")
        else:
            verifier_name = name.strip()
            archs = verifier.get("architectures") if isinstance(verifier, Mapping) else None
            if isinstance(archs, list) and all(isinstance(a, str) for a in archs):
                verifier_archs = tuple(archs)

    layer = cfg.get("transformer_layer_config")
    if kind not in TYPES_WITHOUT_LAYERS and not isinstance(layer, Mapping):
        problems.append("'transformer_layer_config' is missing or not an object")
    layer_cfg = layer if isinstance(layer, Mapping) else None

    if cfg.get("norm_before_fc") is True and cfg.get("fc_norm") is True:
        problems.append(
            "both 'norm_before_fc' and 'fc_norm' are true; they are two names for the same"
            " normalisation and a config must set at most one"
        )

    target_hidden = cfg.get("target_hidden_size")
    if target_hidden is not None and not _positive_int(target_hidden):
        problems.append("'target_hidden_size' must be a positive integer or null")
        target_hidden = None

    aux = cfg.get("eagle_aux_hidden_state_layer_ids")
    aux_ids: tuple[int, ...] | None = None
    if aux is not None:
        if not isinstance(aux, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in aux
        ):
            problems.append("'eagle_aux_hidden_state_layer_ids' must be a list of integers or null")
        else:
            aux_ids = tuple(aux)

    draft_vocab = cfg.get("draft_vocab_size")
    if draft_vocab is not None and not _positive_int(draft_vocab):
        problems.append("'draft_vocab_size' must be a positive integer")
        draft_vocab = None

    if problems:
        message = "speculator config is invalid: " + "; ".join(problems)
        return None, [error("InvalidConfig", message)]
    return (
        SpeculatorConfig(
            model_type=kind,
            trained_tokens=trained,
            verifier_name=verifier_name,
            verifier_architectures=verifier_archs,
            layer_config=layer_cfg,
            target_hidden_size=target_hidden if isinstance(target_hidden, int) else None,
            aux_layer_ids=aux_ids,
            draft_vocab_size=draft_vocab if isinstance(draft_vocab, int) else None,
        ),
        [],
    )
