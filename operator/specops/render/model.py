"""Inputs to rendering besides the resource: the policy's decision and deployment options.

The decision is what the policy chose this cycle (speculation on or off, k,
replicas); the options are operator-wide settings, not per-resource API. Both
are plain frozen values so ``render`` stays a pure function of its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass


class RenderError(ValueError):
    """The inputs cannot make a consistent set of objects (e.g. speculation on, no drafter)."""


@dataclass(frozen=True)
class RenderDecision:
    """What the policy decided for this cycle."""

    speculation_active: bool
    num_speculative_tokens: int | None
    replicas: int
    #: vLLM's ``num_speculative_tokens_per_batch_size``: ``(lo, hi, k)`` bands, k = 0 is off.
    speculative_table: list[tuple[int, int, int]] | None = None


@dataclass(frozen=True)
class RenderOptions:
    """Operator-wide rendering settings (from the operator's settings object)."""

    #: How long vLLM may take from container start to ``/health`` (load, compile, CUDA graphs).
    startup_timeout_seconds: int = 1800
    #: Deployment progress deadline; covers the download plus the startup above.
    progress_deadline_seconds: int = 3600
    #: ``HF_ENDPOINT`` for the download (a Hub mirror); unset uses huggingface.co.
    hf_endpoint: str | None = None
    #: Image of the download init containers; default: the vLLM image (it ships ``hf``).
    download_image: str | None = None
    #: Seconds vLLM gets to finish in-flight requests on shutdown.
    termination_grace_period_seconds: int = 120
    #: Where the model cache volume is mounted in every container.
    cache_mount_path: str = "/models"
    #: Repo paths never downloaded: duplicate non-Hugging-Face weight formats.
    download_exclude: tuple[str, ...] = ("original/*", "metal/*")
    #: Namespace of the Prometheus pods a rendered NetworkPolicy lets reach the serving port.
    prometheus_namespace: str = "monitoring"
