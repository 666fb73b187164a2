"""``SpeculativeDeployment`` (``serving.specops.dev/v1alpha1``) as pydantic models.

These models are the API. The CRD's OpenAPI schema, its CEL rules, the CLI's
validation of a resource file and the operator's parsing of live objects all
come from here, so a field can never mean one thing to ``kubectl`` and another
to the operator. Every CEL rule (``x-kubernetes-validations``) is mirrored by a
pydantic validator with the same message, so ``specops render`` rejects what
the API server would reject, offline.

Scale subresource design: ``spec.replicas`` is the scale subresource's spec
path. It is optional; when set it pins the replica count (``kubectl scale``,
an external HPA or KEDA write it) and the built-in autoscaler must be off
(``autoscaling.minReplicas == autoscaling.maxReplicas``), because two
autoscalers writing one number fight. ``status.replicas`` and
``status.selector`` are the status paths.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from specops.api import vllm_cli

GROUP = "serving.specops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SpeculativeDeployment"
PLURAL = "speculativedeployments"
SINGULAR = "speculativedeployment"
SHORT_NAMES = ("specdeploy", "sdep")

GPU_TYPES = (
    "H100-80GB",
    "H200-141GB",
    "A100-80GB",
    "A100-40GB",
    "L40S-48GB",
    "L4-24GB",
    "B200-180GB",
    "MI300X-192GB",
)
GpuTypeName = Literal[
    "H100-80GB",
    "H200-141GB",
    "A100-80GB",
    "A100-40GB",
    "L40S-48GB",
    "L4-24GB",
    "B200-180GB",
    "MI300X-192GB",
]
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)

#: What ``extraArgs`` may not set, in any spelling vLLM accepts (CRD message; the
#: operator's own check, :func:`specops.api.vllm_cli.managed_violations`, names the field).
MANAGED_VLLM_ARGS_MESSAGE = (
    "vllm.extraArgs may not set flags the operator manages, in any spelling vLLM accepts "
    "(_ for -, =value, .key, abbreviations, -tp, -sc) nor --config: use spec.verifier, "
    "spec.servedModelName, spec.tensorParallelSize, spec.maxModelLen, "
    "spec.gpuMemoryUtilization, spec.speculator/speculation, spec.vllm.apiKeySecretRef, "
    "spec.hfTokenSecretRef; the port is the operator's"
)
#: Environment variables the operator sets; user ``env`` may not override them.
#: ``VLLM_API_KEY`` comes from ``vllm.apiKeySecretRef`` only, so the key never sits in the spec.
MANAGED_ENV = ("HF_HOME", "HF_HUB_OFFLINE", "HF_TOKEN", "VLLM_API_KEY")

DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
#: A Kubernetes object name (RFC 1123 subdomain), for every field that names an object:
#: with no ``/`` and no ``..`` it can only ever be one segment of an API path.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: A key of a Secret's or ConfigMap's ``data``, as the API server allows it.
DATA_KEY = r"^[-._a-zA-Z0-9]+$"
#: Label a tenant puts on a Secret (value ``"true"``) to let the operator read it as
#: the Hub token of ``spec.hfTokenSecretRef``. Without it the operator refuses to read
#: the Secret, so its cluster-wide ``get`` cannot be aimed at an arbitrary Secret.
HUB_TOKEN_SECRET_LABEL = "serving.specops.dev/hub-token"
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def _alias(name: str) -> str:
    """camelCase, with ``GiB`` spelled the way Kubernetes users write it."""
    camel = to_camel(name)
    return re.sub(r"Gib(?=[A-Z]|$)", "GiB", camel)


def _check_quantity(value: str | int) -> str | int:
    if isinstance(value, bool):
        raise ValueError("a quantity must be a number or a string like '200Gi'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a quantity must not be negative")
        return value
    if not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: '200Gi', '8', '500m')")
    return value


#: A Kubernetes resource quantity (``200Gi``, ``8``): int-or-string in the CRD.
Quantity = Annotated[
    str | int,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    ),
]
#: A Deployment rolling-update bound: an integer or a percentage.
IntOrPercent = Annotated[
    int | str,
    WithJsonSchema(
        {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    ),
]


def cel(rule: str, message: str) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry.

    Rules guard optional and defaulted fields with ``has()``: the API server also
    evaluates them against each ``default`` value, where nested defaults are absent.
    """
    return {"rule": rule, "message": message}


class _Model(BaseModel):
    """Shared configuration: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=_alias,
        populate_by_name=True,
        extra="forbid",
        validate_default=False,
    )


class _SpecModel(_Model):
    """Spec models are strict: ``replicas: "2"`` is an error, as it is for the API server."""

    model_config = ConfigDict(strict=True)


# --------------------------------------------------------------------------- spec


#: One half of a Hub repo id: the Hub's characters, starting alphanumeric, no ``..``.
_HUB_ID_PART = r"[A-Za-z0-9][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*\.?"
#: A model reference in a resource: a Hub repo id ``org/name``, or an absolute path
#: (no NUL, no line break), which the operator accepts only inside the directories
#: its admin allows (settings.allowedModelDirs). Relative and ``~`` paths mean
#: nothing in the operator's pod; the CLI's --verifier/--speculator flags, which do
#: not go through this model, still take them.
MODEL_REF = rf"^(?:{_HUB_ID_PART}/{_HUB_ID_PART}|/[^\x00\r\n]*)$"


class VerifierSpec(_SpecModel):
    """The model that answers requests (the target of speculative decoding)."""

    model: str = Field(
        min_length=1,
        max_length=256,
        pattern=MODEL_REF,
        description=(
            "Hugging Face repo id (org/name) of the model served to clients, or an absolute "
            "path inside a directory the operator allows (settings.allowedModelDirs)."
        ),
    )
    revision: str = Field(
        default="main",
        min_length=1,
        max_length=256,
        description="Branch, tag or commit; the operator pins the resolved commit SHA.",
    )


class SpeculatorSpec(_SpecModel):
    """The drafter. Absent means plain serving without speculative decoding."""

    model: str = Field(
        min_length=1,
        max_length=256,
        pattern=MODEL_REF,
        description=(
            "Hugging Face repo id of the drafter, e.g. an EAGLE-3 speculator, or an absolute "
            "path inside a directory the operator allows (settings.allowedModelDirs)."
        ),
    )
    revision: str = Field(
        default="main",
        min_length=1,
        max_length=256,
        description="Branch, tag or commit; the operator pins the resolved commit SHA.",
    )
    num_speculative_tokens: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description=(
            "Tokens drafted per step (k). Unset: the drafter's own speculative_tokens "
            "from its config."
        ),
    )
    method: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]+$",
        max_length=64,
        description="vLLM speculative method (default eagle3).",
    )


_TOLERATION_OPERATORS = Literal["Exists", "Equal"]
_TAINT_EFFECTS = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class Toleration(_SpecModel):
    """A pod toleration, as in ``core/v1``, for GPU node taints."""

    key: str | None = Field(default=None, max_length=316, description="Taint key.")
    operator: _TOLERATION_OPERATORS | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value.")
    effect: _TAINT_EFFECTS | None = Field(default=None, description="Taint effect.")
    toleration_seconds: int | None = Field(
        default=None, description="For NoExecute: how long the pod stays bound."
    )


class GpuSpec(_SpecModel):
    """Which accelerator one replica's GPUs are; sizing and node selection follow from it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.type) || has(self.memoryGiB)",
                    "gpu.type or gpu.memoryGiB must be set",
                )
            ]
        }
    )

    type: GpuTypeName | None = Field(
        default=None, description="A GPU from the catalogue; sets memory and node selection."
    )
    memory_gib: float | None = Field(
        default=None,
        gt=0,
        le=4096,
        description="Memory per GPU in GiB, for GPUs not in the catalogue (overrides type's).",
    )
    resource_name: str = Field(
        default="nvidia.com/gpu",
        min_length=1,
        max_length=253,
        description="Extended resource requested per GPU (nvidia.com/gpu, amd.com/gpu).",
    )
    product_label: str = Field(
        default="specops.dev/gpu-type",
        min_length=1,
        max_length=316,
        description="Node label selecting the GPU model, e.g. nvidia.com/gpu.product.",
    )
    product_value: str | None = Field(
        default=None,
        max_length=63,
        description="Value of productLabel to select; default: gpu.type. Unset with no type: none.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Further node labels every replica requires."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=32,
        description="Tolerations added to the default one for the GPU resource's taint.",
    )

    @model_validator(mode="after")
    def _type_or_memory(self) -> GpuSpec:
        if self.type is None and self.memory_gib is None:
            raise ValueError("gpu.type or gpu.memoryGiB must be set")
        return self


class AutoscalingSpec(_SpecModel):
    """Bounds and targets for the built-in autoscaler; off when min == max."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.minReplicas) || !has(self.maxReplicas) || "
                    "self.minReplicas <= self.maxReplicas",
                    "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
                )
            ]
        }
    )

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(default=1, ge=1, le=1000, description="Most replicas.")
    target_concurrency_per_replica: int | None = Field(
        default=None, ge=1, le=100000, description="Running requests per replica to aim for."
    )
    target_itl_milliseconds: float | None = Field(
        default=None,
        alias="targetITLMilliseconds",
        gt=0,
        le=100000,
        description="Mean inter-token latency to stay under; scale out above it.",
    )
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="Wait this long before scaling down (GPU cold starts are slow).",
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling.minReplicas must not exceed autoscaling.maxReplicas")
        return self


class SpeculationSpec(_SpecModel):
    """When the operator lets vLLM draft tokens."""

    mode: Literal["Auto", "Always", "Never"] = Field(
        default="Auto",
        description=(
            "Auto: on while it pays (acceptance, load); Always: on whenever a speculator is "
            "set; Never: plain serving."
        ),
    )
    min_acceptance_rate: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Auto: turn speculation off when vLLM's acceptance rate stays below this.",
    )
    window_seconds: int = Field(
        default=300, ge=30, le=86400, description="Auto: observation window for decisions."
    )
    per_batch_size_table: bool = Field(
        default=False,
        description=(
            "Auto: also render vLLM's num_speculative_tokens_per_batch_size so drafting "
            "stops in high-concurrency bands without a restart."
        ),
    )


class EnvVar(_SpecModel):
    """An environment variable for the vLLM container."""

    name: str = Field(
        min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Name."
    )
    value: str | None = Field(default=None, max_length=32768, description="Literal value.")
    value_from: dict[str, Any] | None = Field(
        default=None, description="A core/v1 EnvVarSource (secretKeyRef, configMapKeyRef, ...)."
    )


class VllmSpec(_SpecModel):
    """The vLLM server: image and the few knobs the operator does not manage."""

    image: str = Field(
        default="vllm/vllm-openai:v0.33.0",
        min_length=1,
        max_length=512,
        description="vLLM OpenAI-server image; it also runs the model download (hf CLI).",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Image pull policy."
    )
    version: str = Field(
        default="0.33.0",
        pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$",
        description="vLLM version in the image; decides which flags and metrics exist.",
    )
    extra_args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "More vllm serve arguments, appended after the managed ones. Read as vLLM reads "
            "them, none may set a flag the operator renders, and each option must exist."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.all(a, !a.matches('"
                    + vllm_cli.cel_pattern(vllm_cli.MANAGED_DESTS)
                    + "'))",
                    MANAGED_VLLM_ARGS_MESSAGE,
                )
            ]
        },
    )
    api_key_secret_ref: ApiKeySecretRef | None = Field(
        default=None,
        description=(
            "Secret key holding an API key: vLLM then answers /v1/* only with "
            "'Authorization: Bearer <key>' (VLLM_API_KEY); /health and /metrics stay open."
        ),
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="More environment variables for the vLLM container.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "x-kubernetes-validations": [
                cel(
                    "self.all(e, !(e.name in " + repr(list(MANAGED_ENV)) + "))",
                    "vllm.env may not set variables the operator manages: "
                    + ", ".join(MANAGED_ENV),
                )
            ],
        },
    )

    @field_validator("extra_args")
    @classmethod
    def _no_managed_flags(cls, args: list[str], info: ValidationInfo) -> list[str]:
        """Resolve each argument as vLLM's parser would; the CRD's regex covers less."""
        known = info.data.get("version", vllm_cli.VLLM_VERSION) == vllm_cli.VLLM_VERSION
        problems = vllm_cli.managed_violations(args, known_version=known)
        if problems:
            raise ValueError(
                "vllm.extraArgs may not set flags the operator manages nor pass arguments "
                "vLLM would refuse: " + "; ".join(problems)
            )
        return args

    @field_validator("env")
    @classmethod
    def _no_managed_env(cls, env: list[EnvVar]) -> list[EnvVar]:
        names = [e.name for e in env]
        if any(n in MANAGED_ENV for n in names):
            raise ValueError(
                "vllm.env may not set variables the operator manages: " + ", ".join(MANAGED_ENV)
            )
        if len(set(names)) != len(names):
            raise ValueError("vllm.env names must be unique")
        return env


AccessMode = Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"]


def _read_write_once() -> list[AccessMode]:
    return ["ReadWriteOnce"]


class ModelCacheSpec(_SpecModel):
    """Where downloaded weights live.

    With ``ReadWriteMany`` one claim is shared by all replicas (one download);
    otherwise each pod gets its own ephemeral claim, because a ReadWriteOnce
    volume cannot follow replicas onto other nodes. ``existingClaimName`` uses
    a claim the user manages.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.existingClaimName) || (!has(self.size) && "
                    "!has(self.storageClassName))",
                    "modelCache.existingClaimName excludes size and storageClassName",
                )
            ]
        }
    )

    existing_claim_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Use this PersistentVolumeClaim as is.",
    )
    size: Quantity | None = Field(
        default=None, description="Claim size; default: the models' weights plus headroom."
    )
    storage_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Storage class of the claim.",
    )
    access_modes: list[AccessMode] = Field(
        default_factory=_read_write_once,
        min_length=1,
        max_length=4,
        description="ReadWriteMany shares one claim across replicas; otherwise one per pod.",
        json_schema_extra={"default": ["ReadWriteOnce"]},
    )

    @model_validator(mode="after")
    def _existing_excludes(self) -> ModelCacheSpec:
        if self.existing_claim_name is not None and (
            self.size is not None or self.storage_class_name is not None
        ):
            raise ValueError("modelCache.existingClaimName excludes size and storageClassName")
        return self


class SecretKeyRef(_SpecModel):
    """A key in a Secret in the resource's namespace.

    The operator reads it only if the Secret carries the label
    ``serving.specops.dev/hub-token: "true"`` (:data:`HUB_TOKEN_SECRET_LABEL`).
    """

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description=(
            "Secret name, in the resource's namespace; the Secret must carry the label "
            'serving.specops.dev/hub-token: "true".'
        ),
    )
    key: str = Field(
        default="HF_TOKEN", min_length=1, max_length=253, pattern=DATA_KEY, description="Key."
    )


class ApiKeySecretRef(_SpecModel):
    """The key in a Secret (resource's namespace) holding the API key clients must send.

    The pod reads it (``VLLM_API_KEY`` from a ``secretKeyRef``); the operator never
    does, so unlike :class:`SecretKeyRef` the Secret needs no label.
    """

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Secret name, in the resource's namespace (read by the pod, not the operator).",
    )
    key: str = Field(
        default="VLLM_API_KEY",
        min_length=1,
        max_length=253,
        pattern=DATA_KEY,
        description="Key.",
    )


class ResourcesSpec(_SpecModel):
    """Host resources per replica; GPUs come from the plan, not from here."""

    cpu: Quantity = Field(default="4", description="CPU request.")
    memory: Quantity = Field(
        default="32Gi", description="Memory request and limit (shared memory is added on top)."
    )
    shared_memory: Quantity | None = Field(
        default=None, description="/dev/shm size; default 2Gi per GPU (NCCL for TP > 1)."
    )


class MonitoringSpec(_SpecModel):
    """Prometheus Operator objects that scrape vLLM's /metrics."""

    pod_monitor: bool = Field(default=False, description="Render a PodMonitor.")
    service_monitor: bool = Field(default=False, description="Render a ServiceMonitor.")
    interval: str = Field(
        default="15s", pattern=r"^[0-9]+(ms|s|m)$", description="Scrape interval."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels on the monitor objects, e.g. to match a Prometheus selector.",
    )


#: A namespace name (DNS label): what ``kubernetes.io/metadata.name`` holds.
NamespaceName = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]


class NetworkPolicySpec(_SpecModel):
    """A NetworkPolicy for the vLLM pods: ingress to the serving port from this namespace,
    Prometheus's namespace (an operator setting) and the namespaces listed here; nothing
    else. Egress is not restricted (the pods download models from the Hub)."""

    enabled: bool = Field(default=False, description="Render the NetworkPolicy.")
    allow_from_namespaces: list[NamespaceName] = Field(
        default_factory=list,
        max_length=16,
        description="More namespaces whose pods may reach port 8000, e.g. an ingress controller's.",
    )


class RolloutSpec(_SpecModel):
    """Rolling-update bounds. Default: replace one pod at a time with no surge (GPUs are scarce)."""

    max_surge: IntOrPercent = Field(default=0, description="Extra pods during an update.")
    max_unavailable: IntOrPercent = Field(default=1, description="Pods down during an update.")

    @model_validator(mode="after")
    def _progress_possible(self) -> RolloutSpec:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError("rollout.maxSurge and rollout.maxUnavailable cannot both be 0")
        for name, value in (("maxSurge", self.max_surge), ("maxUnavailable", self.max_unavailable)):
            if isinstance(value, int) and value < 0:
                raise ValueError(f"rollout.{name} must not be negative")
            if isinstance(value, str) and not re.match(r"^[0-9]{1,3}%$", value):
                raise ValueError(f"rollout.{name} must be an integer or a percentage like '25%'")
        return self


class PodSecuritySpec(_SpecModel):
    """Optional fixed IDs. Unset (the default) lets the platform pick (OpenShift SCCs);
    on plain Kubernetes set runAsUser when the image's default user is root."""

    run_as_user: int | None = Field(default=None, ge=1, description="UID (non-zero).")
    run_as_group: int | None = Field(default=None, ge=0, description="GID.")
    fs_group: int | None = Field(default=None, ge=0, description="Group owning the model cache.")


class SpeculativeDeploymentSpec(_SpecModel):
    """What to serve, on what, and how speculation and scaling behave."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.replicas) || !has(self.autoscaling) || "
                    "!has(self.autoscaling.minReplicas) || !has(self.autoscaling.maxReplicas) || "
                    "self.autoscaling.minReplicas == self.autoscaling.maxReplicas",
                    "spec.replicas (the scale subresource) needs autoscaling off "
                    "(minReplicas == maxReplicas)",
                ),
                cel(
                    "!has(self.speculation) || !has(self.speculation.mode) || "
                    "self.speculation.mode != 'Always' || has(self.speculator)",
                    "speculation.mode Always needs spec.speculator",
                ),
            ]
        }
    )

    verifier: VerifierSpec = Field(description="The model served to clients.")
    speculator: SpeculatorSpec | None = Field(
        default=None, description="The drafter; omit for plain serving."
    )
    gpu: GpuSpec = Field(description="Accelerator of each replica.")
    tensor_parallel_size: int | None = Field(
        default=None,
        description="GPUs per replica (1, 2, 4 or 8); default: the smallest that fits.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self in [1, 2, 4, 8]", "tensorParallelSize must be 1, 2, 4 or 8")
            ]
        },
    )
    max_model_len: int | None = Field(
        default=None, ge=256, le=10_000_000, description="Context length; default: the model's."
    )
    gpu_memory_utilization: float = Field(
        default=0.9, ge=0.05, le=1.0, description="Share of GPU memory vLLM may use."
    )
    served_model_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        # It is rendered as the value of --served-model-name: a leading "-" would make
        # vLLM's parser read it as an option (--hf-overrides.x swallows the next flag).
        pattern=r"^[^-\s][^\s]*$",
        description=(
            "Model name clients use; default: verifier. No leading '-' and no white space."
        ),
    )
    replicas: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Pinned replica count (scale subresource); needs autoscaling off.",
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec,
        description="Built-in autoscaler; off when minReplicas == maxReplicas.",
        json_schema_extra={"default": {}},
    )
    speculation: SpeculationSpec = Field(
        default_factory=SpeculationSpec,
        description="When speculative decoding is on.",
        json_schema_extra={"default": {}},
    )
    vllm: VllmSpec = Field(
        default_factory=VllmSpec,
        description="vLLM image and extra settings.",
        json_schema_extra={"default": {}},
    )
    model_cache: ModelCacheSpec = Field(
        default_factory=ModelCacheSpec,
        description="Volume for downloaded weights.",
        json_schema_extra={"default": {}},
    )
    hf_token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret holding a Hugging Face token (gated models)."
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec,
        description="CPU, memory and shared memory per replica.",
        json_schema_extra={"default": {}},
    )
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec,
        description="PodMonitor / ServiceMonitor.",
        json_schema_extra={"default": {}},
    )
    network_policy: NetworkPolicySpec = Field(
        default_factory=NetworkPolicySpec,
        description="Optional NetworkPolicy limiting who reaches the serving port.",
        json_schema_extra={"default": {}},
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,
        description="Rolling-update bounds.",
        json_schema_extra={"default": {}},
    )
    pod_security: PodSecuritySpec = Field(
        default_factory=PodSecuritySpec,
        description="Optional fixed user/group IDs.",
        json_schema_extra={"default": {}},
    )

    @field_validator("tensor_parallel_size")
    @classmethod
    def _tp(cls, value: int | None) -> int | None:
        if value is not None and value not in TENSOR_PARALLEL_SIZES:
            raise ValueError("tensorParallelSize must be 1, 2, 4 or 8")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> SpeculativeDeploymentSpec:
        if (
            self.replicas is not None
            and self.autoscaling.min_replicas != self.autoscaling.max_replicas
        ):
            raise ValueError(
                "spec.replicas (the scale subresource) needs autoscaling off "
                "(minReplicas == maxReplicas)"
            )
        if self.speculation.mode == "Always" and self.speculator is None:
            raise ValueError("speculation.mode Always needs spec.speculator")
        return self


# --------------------------------------------------------------------------- status


class Condition(_Model):
    """A ``metav1.Condition``."""

    type: str = Field(min_length=1, max_length=316, description="Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        default="Unknown",
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase reason.",
    )
    message: str = Field(default="", max_length=32768, description="What a user can act on.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="Spec generation the condition is about."
    )


class ResolvedModelStatus(_Model):
    """A model reference pinned to a commit."""

    model: str = Field(description="Repo id.")
    revision: str = Field(description="Requested revision.")
    sha: str = Field(description="Resolved commit SHA.")


class ResolvedStatus(_Model):
    """Both models pinned; the rendered pods download exactly these commits."""

    verifier: ResolvedModelStatus = Field(description="The served model.")
    speculator: ResolvedModelStatus | None = Field(default=None, description="The drafter.")


class PlanStatus(_Model):
    """The GPU memory plan behind the tensor-parallel size, with its arithmetic."""

    tensor_parallel_size: int = Field(description="Tensor-parallel size.")
    gpus_per_replica: int = Field(description="GPUs requested per replica.")
    gpu_type: str | None = Field(default=None, description="Catalogue GPU, if any.")
    gpu_memory_gib: float = Field(description="Memory per GPU.")
    usable_memory_gib: float = Field(description="GPU memory x utilisation x TP.")
    verifier_weights_gib: float = Field(description="Verifier weights.")
    speculator_weights_gib: float = Field(default=0.0, description="Drafter weights.")
    activation_reserve_gib: float = Field(description="Activations, CUDA graphs, overhead.")
    kv_budget_gib: float = Field(description="Memory left for the KV cache.")
    kv_bytes_per_token: int = Field(description="KV cache bytes per token (all layers).")
    max_model_len: int = Field(description="Context length served.")
    max_concurrent_sequences: int = Field(description="Full-length sequences the KV budget holds.")
    explanation: list[str] = Field(
        default_factory=list, description="The arithmetic, one line per step."
    )


class SpeculationStatus(_Model):
    """Whether speculation is on now, and how well it is doing."""

    active: bool = Field(description="vLLM currently drafts tokens.")
    num_speculative_tokens: int | None = Field(default=None, description="k in use.")
    reason: str | None = Field(default=None, description="Why it is on or off.")
    last_transition_time: datetime | None = Field(default=None, description="Last switch.")
    acceptance_rate: float | None = Field(
        default=None, description="vLLM's accepted / drafted tokens over the window."
    )
    mean_acceptance_length: float | None = Field(
        default=None, description="1 + accepted / drafts over the window."
    )


class AutoscalingStatus(_Model):
    """The autoscaler's last decision."""

    desired_replicas: int | None = Field(default=None, description="Replicas wanted now.")
    last_scale_time: datetime | None = Field(default=None, description="Last change.")
    reason: str | None = Field(default=None, description="Why.")


class SpeculativeDeploymentStatus(_Model):
    """Observed state, written once per reconcile."""

    observed_generation: int | None = Field(default=None, description="Last reconciled spec.")
    replicas: int | None = Field(default=None, description="Pods of the current Deployment.")
    ready_replicas: int | None = Field(default=None, description="Ready pods.")
    selector: str | None = Field(default=None, description="Pod label selector (scale).")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Resolved, Compatible, Planned, ...",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    resolved: ResolvedStatus | None = Field(default=None, description="Pinned models.")
    plan: PlanStatus | None = Field(default=None, description="GPU plan.")
    speculation: SpeculationStatus | None = Field(default=None, description="Speculation now.")
    autoscaling: AutoscalingStatus | None = Field(default=None, description="Autoscaler.")


# --------------------------------------------------------------------------- resource


class SpeculativeDeployment(_Model):
    """The custom resource: a vLLM deployment with speculative decoding as a setting."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["serving.specops.dev/v1alpha1"] = Field(
        default="serving.specops.dev/v1alpha1", alias="apiVersion"
    )
    kind: Literal["SpeculativeDeployment"] = "SpeculativeDeployment"
    metadata: dict[str, Any] = Field(description="Kubernetes object metadata.")
    spec: SpeculativeDeploymentSpec
    status: SpeculativeDeploymentStatus | None = None

    @field_validator("metadata")
    @classmethod
    def _name(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("metadata.name is required")
        if len(name) > 63 or not re.match(DNS_LABEL, name):
            raise ValueError(
                "metadata.name must be a DNS label (lower case letters, digits and '-', "
                "starting with a letter, at most 63 characters): it names the Service"
            )
        namespace = metadata.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise ValueError("metadata.namespace must be a string")
        return metadata

    @property
    def name(self) -> str:
        """``metadata.name`` (validated to exist)."""
        return str(self.metadata["name"])

    @property
    def namespace(self) -> str | None:
        """``metadata.namespace`` when set."""
        value = self.metadata.get("namespace")
        return None if value is None else str(value)
