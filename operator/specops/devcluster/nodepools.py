"""Declarative node pools for the simulated cluster, and the Node objects they become.

Why Node objects rather than kubelets: kwok plays the kubelet for every node that
carries its annotation, so a node is just an API object with the capacity and labels
a real GPU node would advertise (as the NVIDIA device plugin and GPU feature
discovery would set them). The real scheduler then places GPU pods exactly as it
would on a real cluster.

The default pools are part of a fixed interface (tests and the demo rely on them);
other shapes (H200, L40S, ...) come from a YAML file named by ``SPECOPS_NODE_POOLS``
or from a list passed to the launcher.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_VAR = "SPECOPS_NODE_POOLS"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TYPE_LABEL = "specops.dev/gpu-type"
POOL_LABEL = "specops.dev/node-pool"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class NodePoolError(ValueError):
    """A node-pool description that cannot be used; the message says what to fix."""


class GPUSpec(BaseModel):
    """The GPUs of every node in a pool, as GPU feature discovery would label them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(gt=0, description="nvidia.com/gpu capacity per node")
    type: str = Field(min_length=1, description="value of specops.dev/gpu-type, e.g. H100-80GB")
    product: str = Field(
        min_length=1, description="nvidia.com/gpu.product, e.g. NVIDIA-H100-80GB-HBM3"
    )
    memory_mib: int = Field(gt=0, alias="memoryMiB", description="nvidia.com/gpu.memory")


class NodePool(BaseModel):
    """A group of identical simulated nodes named ``<name>-<index>``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    count: int = Field(ge=0)
    gpu: GPUSpec | None = None
    cpu: str = "128"
    memory: str = "1Ti"
    pods: int = Field(default=250, gt=0)
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[dict[str, str]] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _DNS_LABEL.match(value) or len(value) > 50:
            raise ValueError("must be a lowercase DNS label of at most 50 characters")
        return value


DEFAULT_POOLS: tuple[NodePool, ...] = (
    NodePool(
        name="h100",
        count=2,
        gpu=GPUSpec(count=8, type="H100-80GB", product="NVIDIA-H100-80GB-HBM3", memoryMiB=81559),
    ),
    NodePool(
        name="a100",
        count=2,
        gpu=GPUSpec(count=4, type="A100-40GB", product="NVIDIA-A100-SXM4-40GB", memoryMiB=40960),
    ),
    NodePool(name="cpu", count=2, cpu="64", memory="256Gi"),
)


def parse(document: Any, source: str = "node pools") -> tuple[NodePool, ...]:
    """Validate a node-pool description: a list of pools or ``{"pools": [...]}``."""
    if isinstance(document, dict) and "pools" in document:
        document = document["pools"]
    if not isinstance(document, list):
        raise NodePoolError(f"{source}: expected a list of pools (or a 'pools:' key)")
    try:
        pools = tuple(NodePool.model_validate(item) for item in document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise NodePoolError(f"{source}: {where}: {first['msg']}") from None
    names = [p.name for p in pools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise NodePoolError(f"{source}: duplicate pool names: {', '.join(duplicates)}")
    return pools


def load(path: Path) -> tuple[NodePool, ...]:
    """Read a YAML node-pool file, turning every problem into a :class:`NodePoolError`."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise NodePoolError(f"cannot read node pools from {path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise NodePoolError(f"{path}: not valid YAML: {exc}") from None
    return parse(document, str(path))


def from_env(environ: dict[str, str] | None = None) -> tuple[NodePool, ...]:
    """The pools named by ``SPECOPS_NODE_POOLS``, or the defaults when it is unset."""
    environ = dict(os.environ) if environ is None else environ
    path = environ.get(ENV_VAR, "").strip()
    return load(Path(path)) if path else DEFAULT_POOLS


def node_manifests(pools: tuple[NodePool, ...] | list[NodePool]) -> list[dict[str, Any]]:
    """Node objects for every pool, with status capacity kwok keeps and reports Ready."""
    nodes: list[dict[str, Any]] = []
    for pool in pools:
        for index in range(pool.count):
            name = f"{pool.name}-{index}"
            labels = {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "type": "kwok",
                POOL_LABEL: pool.name,
            }
            capacity = {
                "cpu": pool.cpu,
                "memory": pool.memory,
                "pods": str(pool.pods),
                "ephemeral-storage": "4Ti",
            }
            if pool.gpu is not None:
                labels.update(
                    {
                        GPU_TYPE_LABEL: pool.gpu.type,
                        "nvidia.com/gpu.present": "true",
                        "nvidia.com/gpu.product": pool.gpu.product,
                        "nvidia.com/gpu.memory": str(pool.gpu.memory_mib),
                        "nvidia.com/gpu.count": str(pool.gpu.count),
                    }
                )
                capacity[GPU_RESOURCE] = str(pool.gpu.count)
            labels.update(pool.labels)
            node: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": labels,
                    "annotations": {
                        KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE,
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                },
                "spec": {},
                "status": {"capacity": capacity, "allocatable": dict(capacity)},
            }
            if pool.taints:
                node["spec"]["taints"] = [dict(t) for t in pool.taints]
            nodes.append(node)
    return nodes
