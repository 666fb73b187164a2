"""Rendering: a SpeculativeDeployment, its pinned models, plan and decision -> Kubernetes objects.

Pure (no I/O, no clock); see :func:`specops.render.manifests.render`.
"""

from specops.render.manifests import render
from specops.render.meta import labels, selector_labels, selector_string
from specops.render.model import RenderDecision, RenderError, RenderOptions
from specops.render.vllm_args import speculative_config, vllm_args

__all__ = [
    "RenderDecision",
    "RenderError",
    "RenderOptions",
    "labels",
    "render",
    "selector_labels",
    "selector_string",
    "speculative_config",
    "vllm_args",
]
