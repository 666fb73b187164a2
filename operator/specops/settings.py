"""The operator's configuration: one typed object, loaded once at start-up.

Why one object: the Helm chart's values, the ``SPECOPS_*`` environment
variables and the flags of ``specops run`` must all mean the same thing, so
they map one to one onto the fields below. Flags override the environment,
which overrides the defaults. Nothing else in the operator reads the
environment.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "SPECOPS_"


def _default_identity() -> str:
    """Unique per process: the pod name in a cluster (HOSTNAME), plus the pid for local runs."""
    return f"{socket.gethostname()}-{os.getpid()}"


class SettingsError(ValueError):
    """A setting a user can fix (bad environment variable or flag); the message says which."""


class OperatorSettings(BaseSettings):
    """Everything ``specops run`` can be told, with its environment variable."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Namespaces to watch, comma-separated in SPECOPS_NAMESPACES; empty means the "
            "whole cluster."
        ),
    )
    prometheus_url: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090",
        description="Prometheus the speculation policy reads vLLM's metrics from by default.",
    )
    vllm_image: str | None = Field(
        default=None,
        description=(
            "vLLM image used when a resource does not set spec.vllm.image explicitly; "
            "unset keeps the API default."
        ),
    )
    hub_endpoint: str | None = Field(
        default=None,
        description="Hugging Face Hub endpoint (HF_ENDPOINT); unset means huggingface.co.",
    )
    hub_mirror: Path | None = Field(
        default=None,
        description=(
            "Directory laid out <org>/<repo>/config.json answering model look-ups "
            "instead of the Hub (air-gapped clusters, tests)."
        ),
    )
    allowed_model_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description=(
            "Absolute directories inside which spec.verifier.model and spec.speculator.model "
            "may name a local path, comma-separated in SPECOPS_ALLOWED_MODEL_DIRS; empty "
            "allows Hub repo ids (and the mirror) only."
        ),
    )
    max_model_file_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1,
        description=(
            "Largest config.json (or other model metadata file) the operator downloads or "
            "reads; larger ones are refused unread."
        ),
    )
    hub_token: str | None = Field(
        default=None,
        description=(
            "Hub token for resolving gated models when a resource names no hfTokenSecretRef "
            "(only if hubTokenForTenants is true)."
        ),
    )
    hub_token_for_tenants: bool = Field(
        default=False,
        description=(
            "Lend the operator's own hubToken to every resource that names no "
            "hfTokenSecretRef; off: such resources resolve anonymously, so a tenant "
            "cannot use a gated or private model through the operator's token."
        ),
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="text for people, json for log pipelines (production)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Least severe log level printed."
    )
    metrics_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Port serving /metrics and /healthz (0 picks a free port).",
    )
    health_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Separate port for /healthz only; unset serves it on the metrics port.",
    )
    bind_address: str = Field(
        default="0.0.0.0", description="Address the metrics and health endpoints listen on."
    )
    leader_election: bool = Field(
        default=True,
        description="Only the holder of a coordination.k8s.io Lease acts; others stand by.",
    )
    lease_name: str = Field(
        default="specops-operator", min_length=1, description="Name of the leader Lease."
    )
    lease_namespace: str = Field(
        default_factory=lambda: os.environ.get("POD_NAMESPACE", "default"),
        min_length=1,
        description="Namespace of the leader Lease; default the pod's namespace (POD_NAMESPACE).",
    )
    lease_duration_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How long a silent leader keeps the Lease before another replica takes it.",
    )
    lease_renew_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often the leader renews and followers retry.",
    )
    identity: str = Field(
        default_factory=_default_identity,
        min_length=1,
        description="This replica's name in the Lease (pod name and pid by default).",
    )
    resync_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Period of the full reconcile of every resource: the safety net for drift "
            "the child watch did not see."
        ),
    )
    evaluation_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Period of the speculation/autoscaling policy evaluation (mode Auto).",
    )
    hub_retry_max_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Longest wait between retries when the Hub is unreachable or rate-limited.",
    )
    allowed_images: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Images spec.vllm.image may name, comma-separated in SPECOPS_ALLOWED_IMAGES: "
            "a registry (registry.example.com), a path prefix (registry.example.com/vllm/), "
            "a repository, name:tag or name@sha256:...; empty allows any image."
        ),
    )
    prometheus_namespace: str = Field(
        default="monitoring",
        description=(
            "Namespace of the Prometheus that scrapes vLLM: a resource's NetworkPolicy "
            "(spec.networkPolicy) admits it to the serving port."
        ),
    )

    @field_validator("allowed_images", mode="before")
    @classmethod
    def _split_images(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_images")
    @classmethod
    def _image_rules(cls, value: list[str]) -> list[str]:
        from specops.render.images import parse_rules

        parse_rules(value)  # raises ImageReferenceError (a ValueError) naming the entry
        return value

    @field_validator("prometheus_namespace")
    @classmethod
    def _namespace_name(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", value) or len(value) > 63:
            raise ValueError(f"{value!r} is not a namespace name")
        return value

    @field_validator("namespaces", "allowed_model_dirs", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_model_dirs")
    @classmethod
    def _absolute_dirs(cls, value: list[Path]) -> list[Path]:
        # A relative directory would be relative to wherever the operator happens to run.
        for directory in value:
            if not directory.is_absolute():
                raise ValueError(f"{str(directory)!r} is not an absolute path")
        return value

    @field_validator("namespaces")
    @classmethod
    def _dns_labels(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.replace("-", "").isalnum() or name != name.lower() or len(name) > 63:
                raise ValueError(f"{name!r} is not a namespace name")
        return value

    @field_validator("prometheus_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL with a host")
        return value

    @model_validator(mode="after")
    def _timings(self) -> OperatorSettings:
        if self.lease_renew_seconds >= self.lease_duration_seconds:
            raise ValueError("lease_renew_seconds must be shorter than lease_duration_seconds")
        return self

    @model_validator(mode="after")
    def _loop_tuning(self) -> OperatorSettings:
        # The closed loop's SPECOPS_POLICY_* knobs are checked at start-up too, so a bad
        # one is a one-line error of `specops run`, not a failure at the first evaluation.
        from specops.controller.policy_inputs import load_tuning

        load_tuning()
        return self

    @property
    def clusterwide(self) -> bool:
        """Watch every namespace (no list given)."""
        return not self.namespaces


def load_settings(**overrides: Any) -> OperatorSettings:
    """Environment plus explicit overrides (flags); ``None`` overrides are ignored.

    Raises :class:`SettingsError` with every problem on one line each, naming
    the environment variable, instead of a pydantic traceback.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return OperatorSettings(**given)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            where = f"{ENV_PREFIX}{field.upper()}" if field != "settings" else "settings"
            lines.append(f"{where}: {error['msg']}")
        raise SettingsError("; ".join(lines)) from None
