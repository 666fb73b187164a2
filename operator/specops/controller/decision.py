"""What to run this cycle: speculation on or off, k, replicas (pure).

This is the one seam where :mod:`specops.policy` plugs in for
``speculation.mode: Auto`` and the built-in autoscaler. Until observations
from Prometheus are wired, ``Auto`` starts with speculation on at the
drafter's k and ``minReplicas`` replicas, which is what the policy itself
does before it has a window of metrics.
"""

from __future__ import annotations

from typing import Any

from specops.api.v1alpha1 import SpeculativeDeploymentSpec
from specops.controller.status import SpeculationVerdict
from specops.render import RenderDecision


def drafter_default_k(config: dict[str, Any] | None) -> int | None:
    """The drafter's own ``speculative_tokens`` (Speculators config), if it declares one."""
    if not config:
        return None
    spec_cfg = config.get("speculators_config")
    if isinstance(spec_cfg, dict):
        methods = spec_cfg.get("proposal_methods")
        default = spec_cfg.get("default_proposal_method")
        if isinstance(methods, list):
            chosen = [m for m in methods if isinstance(m, dict)]
            preferred = [m for m in chosen if m.get("proposal_type") == default] or chosen
            for method in preferred:
                k = method.get("speculative_tokens")
                if isinstance(k, int) and not isinstance(k, bool) and k > 0:
                    return k
    for key in ("num_speculative_tokens", "num_lookahead_tokens"):
        k = config.get(key)
        if isinstance(k, int) and not isinstance(k, bool) and k > 0:
            return k
    return None


def desired_replicas(spec: SpeculativeDeploymentSpec) -> tuple[int, str]:
    """Replicas to run and why: pinned (scale subresource) or the autoscaler's floor."""
    if spec.replicas is not None:
        return spec.replicas, "Pinned"
    return spec.autoscaling.min_replicas, "MinReplicas"


def decide(
    spec: SpeculativeDeploymentSpec, speculator_config: dict[str, Any] | None
) -> tuple[RenderDecision, SpeculationVerdict, str]:
    """The render decision, the SpeculationActive verdict and the scale reason."""
    replicas, scale_reason = desired_replicas(spec)
    if spec.speculator is None:
        verdict = SpeculationVerdict(
            False, None, "NoSpeculator", "spec.speculator is not set: plain serving"
        )
        return RenderDecision(False, None, replicas), verdict, scale_reason
    if spec.speculation.mode == "Never":
        verdict = SpeculationVerdict(
            False, None, "ModeNever", "speculation.mode is Never: plain serving"
        )
        return RenderDecision(False, None, replicas), verdict, scale_reason
    k = spec.speculator.num_speculative_tokens or drafter_default_k(speculator_config)
    source = "spec" if spec.speculator.num_speculative_tokens else "the drafter's config"
    k_text = f"k={k} from {source}" if k is not None else "vLLM's default k"
    if spec.speculation.mode == "Always":
        verdict = SpeculationVerdict(True, k, "ModeAlways", f"speculation.mode is Always, {k_text}")
    else:
        verdict = SpeculationVerdict(
            True,
            k,
            "AutoInitial",
            f"speculation.mode is Auto: on until metrics show it does not pay, {k_text}",
        )
    return RenderDecision(True, k, replicas), verdict, scale_reason
