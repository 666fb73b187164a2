"""The GPU catalogue: the few hardware facts sizing and the simulator need.

Sizing needs memory; the serving simulator needs memory bandwidth, dense
BF16 throughput and the interconnect (the tensor-parallel all-reduce term);
rendering needs the resource name and the node label that selects the card.
Everything else about a GPU is irrelevant here, so it is not recorded.

Conventions, stated once so every consumer reads the numbers the same way:

* ``memory_gib`` is the total device memory **as the device reports it to
  PyTorch** (``torch.cuda.mem_get_info()[1]``), in GiB (2**30 bytes). That is
  the number vLLM multiplies by ``gpu_memory_utilization``. It is below the
  marketing figure, which is decimal GB: an "80GB" H100 reports about
  79.2 GiB, not 80.
* ``bandwidth_tb_s`` is HBM/GDDR bandwidth in decimal TB/s from the datasheet.
* ``bf16_tflops`` is **dense** BF16 tensor throughput (datasheets often print
  the 2:4-sparse figure, twice as large; we never use that).
* ``interconnect_gb_s`` is the GPU-to-GPU bandwidth per GPU in decimal GB/s,
  bidirectional, as datasheets print it (NVLink / Infinity Fabric; PCIe Gen4
  x16 for cards without NVLink). The one-way rate an all-reduce sees is half.
* ``product_label`` is the value of the node label ``label_key`` that NVIDIA
  GPU feature discovery (``nvidia.com/gpu.product``: the NVML name with spaces
  replaced by ``-``) or the AMD node labeller writes, so a node selector can
  pin the card.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

GIB = 1024**3
"""Bytes in a GiB; sizing works in GiB throughout."""


class UnknownGpuError(ValueError):
    """A GPU name the catalogue does not know; the message lists the known ones."""


@dataclass(frozen=True)
class GpuType:
    """One GPU model, with the numbers sizing and the simulator use."""

    name: str
    memory_gib: float
    bandwidth_tb_s: float
    bf16_tflops: float
    interconnect_gb_s: float
    product_label: str
    vendor: Literal["nvidia", "amd"]
    resource_name: str
    label_key: str
    marketing_memory_gb: int
    aliases: tuple[str, ...] = ()

    @property
    def memory_bytes(self) -> int:
        """Device memory in bytes (the reported GiB figure, not the marketing one)."""
        return int(self.memory_gib * GIB)

    @property
    def ridge_tokens(self) -> float:
        """Tokens per decode step at which a dense model turns compute-bound.

        A decode step reads every weight once (bytes ~ 2 x params) and spends
        2 x params FLOPs per token, so the crossover is F / BW tokens
        (about 295 on an H100; see calibration.md).
        """
        return (self.bf16_tflops * 1e12) / (self.bandwidth_tb_s * 1e12)


_NVIDIA_LABEL = "nvidia.com/gpu.product"
_AMD_LABEL = "amd.com/gpu.product-name"

_TYPES = (
    # H100 SXM5 80GB: 3.35 TB/s, 989 dense BF16 TFLOP/s, NVLink4 900 GB/s (calibration.md).
    GpuType(
        name="H100-80GB",
        memory_gib=79.2,
        bandwidth_tb_s=3.35,
        bf16_tflops=989.0,
        interconnect_gb_s=900.0,
        product_label="NVIDIA-H100-80GB-HBM3",
        vendor="nvidia",
        resource_name="nvidia.com/gpu",
        label_key=_NVIDIA_LABEL,
        marketing_memory_gb=80,
        aliases=("H100", "H100-SXM", "H100-SXM5-80GB"),
    ),
    # H200 SXM 141GB: 4.8 TB/s, 989 TFLOP/s (calibration.md), NVLink4 900 GB/s.
    GpuType(
        name="H200-141GB",
        memory_gib=139.8,
        bandwidth_tb_s=4.8,
        bf16_tflops=989.0,
        interconnect_gb_s=900.0,
        product_label="NVIDIA-H200",
        vendor="nvidia",
        resource_name="nvidia.com/gpu",
        label_key=_NVIDIA_LABEL,
        marketing_memory_gb=141,
        aliases=("H200",),
    ),
    # A100 SXM4 80GB: 2.04 TB/s, 312 TFLOP/s (calibration.md), NVLink3 600 GB/s.
    GpuType(
        name="A100-80GB",
        memory_gib=79.2,
        bandwidth_tb_s=2.04,
        bf16_tflops=312.0,
        interconnect_gb_s=600.0,
        product_label="NVIDIA-A100-SXM4-80GB",
        vendor="nvidia",
        resource_name="nvidia.com/gpu",
        label_key=_NVIDIA_LABEL,
        marketing_memory_gb=80,
        aliases=("A100-SXM4-80GB",),
    ),
    # A100 SXM4 40GB: 1.555 TB/s, 312 TFLOP/s, NVLink3 600 GB/s (NVIDIA A100 datasheet).
    GpuType(
        name="A100-40GB",
        memory_gib=39.4,
        bandwidth_tb_s=1.555,
        bf16_tflops=312.0,
        interconnect_gb_s=600.0,
        product_label="NVIDIA-A100-SXM4-40GB",
        vendor="nvidia",
        resource_name="nvidia.com/gpu",
        label_key=_NVIDIA_LABEL,
        marketing_memory_gb=40,
        aliases=("A100-SXM4-40GB", "A100"),
    ),
    # L40S 48GB GDDR6: 864 GB/s, 362 dense BF16 TFLOP/s, no NVLink (PCIe Gen4 x16 64 GB/s).
    GpuType(
        name="L40S-48GB",
        memory_gib=44.4,
        bandwidth_tb_s=0.864,
        bf16_tflops=362.0,
        interconnect_gb_s=64.0,
        product_label="NVIDIA-L40S",
        vendor="nvidia",
        resource_name="nvidia.com/gpu",
        label_key=_NVIDIA_LABEL,
        marketing_memory_gb=48,
        aliases=("L40S",),
    ),
    # L4 24GB GDDR6: 300 GB/s, 121 dense BF16 TFLOP/s, PCIe Gen4 x16 64 GB/s.
    GpuType(
        name="L4-24GB",
        memory_gib=22.0,
        bandwidth_tb_s=0.3,
        bf16_tflops=121.0,
        interconnect_gb_s=64.0,
        product_label="NVIDIA-L4",
        vendor="nvidia",
        resource_name="nvidia.com/gpu",
        label_key=_NVIDIA_LABEL,
        marketing_memory_gb=24,
        aliases=("L4",),
    ),
    # B200 180GB HBM3e: 8 TB/s, 2250 dense BF16 TFLOP/s (HGX B200), NVLink5 1800 GB/s.
    GpuType(
        name="B200-180GB",
        memory_gib=178.4,
        bandwidth_tb_s=8.0,
        bf16_tflops=2250.0,
        interconnect_gb_s=1800.0,
        product_label="NVIDIA-B200",
        vendor="nvidia",
        resource_name="nvidia.com/gpu",
        label_key=_NVIDIA_LABEL,
        marketing_memory_gb=180,
        aliases=("B200",),
    ),
    # MI300X 192GB HBM3: 5.3 TB/s, 1307 dense BF16 TFLOP/s, Infinity Fabric 7x128 = 896 GB/s.
    GpuType(
        name="MI300X-192GB",
        memory_gib=191.5,
        bandwidth_tb_s=5.3,
        bf16_tflops=1307.0,
        interconnect_gb_s=896.0,
        product_label="AMD_Instinct_MI300X",
        vendor="amd",
        resource_name="amd.com/gpu",
        label_key=_AMD_LABEL,
        marketing_memory_gb=192,
        aliases=("MI300X",),
    ),
)

CATALOGUE: dict[str, GpuType] = {gpu.name: gpu for gpu in _TYPES}
"""Known GPUs by canonical name (``H100-80GB`` ...)."""


def _key(name: str) -> str:
    return name.strip().upper().replace("_", "-").replace(" ", "-")


_INDEX: dict[str, GpuType] = {}
for _gpu in _TYPES:
    for _alias in (_gpu.name, _gpu.product_label, *_gpu.aliases):
        _INDEX.setdefault(_key(_alias), _gpu)


def lookup(name: str) -> GpuType:
    """Find a GPU by canonical name, alias or node product label (case-insensitive).

    Raises :class:`UnknownGpuError` naming the known types, because a typo in
    ``spec.gpu.type`` should be answered with the list to pick from.
    """
    if not isinstance(name, str) or not name.strip():
        raise UnknownGpuError(f"GPU type must be a non-empty string; known: {known_names()}")
    found = _INDEX.get(_key(name))
    if found is None:
        raise UnknownGpuError(
            f"unknown GPU type {name!r}; known: {known_names()} "
            "(for another card give its memory: spec.gpu.memoryGiB, --gpu-memory-gib)"
        )
    return found


def known_names() -> str:
    """The canonical names, comma-separated, for error messages and ``--help``."""
    return ", ".join(CATALOGUE)


def custom(memory_gib: float, *, name: str | None = None, base: GpuType | None = None) -> GpuType:
    """A GPU described only by its memory (``spec.gpu.memoryGiB``).

    Speed numbers are borrowed from ``base`` (if known) so the simulator can
    still run; sizing only reads memory.
    """
    if not (isinstance(memory_gib, int | float) and math.isfinite(memory_gib) and memory_gib > 0):
        raise ValueError(f"GPU memory must be a positive number, got {memory_gib!r} GiB")
    ref = base or CATALOGUE["H100-80GB"]
    return GpuType(
        name=name or (base.name if base else f"custom-{memory_gib:g}GiB"),
        memory_gib=float(memory_gib),
        bandwidth_tb_s=ref.bandwidth_tb_s,
        bf16_tflops=ref.bf16_tflops,
        interconnect_gb_s=ref.interconnect_gb_s,
        product_label=base.product_label if base else "",
        vendor=ref.vendor,
        resource_name=ref.resource_name,
        label_key=ref.label_key,
        marketing_memory_gb=round(memory_gib * GIB / 1e9),
        aliases=(),
    )
