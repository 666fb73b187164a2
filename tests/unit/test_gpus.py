"""The GPU catalogue: the numbers others rely on, and lookups by any name a user types."""

from __future__ import annotations

import pytest

from specops import gpus


@pytest.mark.parametrize(
    ("name", "bandwidth", "tflops"),
    [("H100-80GB", 3.35, 989.0), ("A100-80GB", 2.04, 312.0), ("H200-141GB", 4.8, 989.0)],
)
def test_calibrated_cards_match_calibration_md(name: str, bandwidth: float, tflops: float) -> None:
    gpu = gpus.CATALOGUE[name]
    assert gpu.bandwidth_tb_s == bandwidth
    assert gpu.bf16_tflops == tflops


def test_catalogue_holds_the_agreed_cards() -> None:
    assert set(gpus.CATALOGUE) == {
        "H100-80GB",
        "H200-141GB",
        "A100-80GB",
        "A100-40GB",
        "L40S-48GB",
        "L4-24GB",
        "B200-180GB",
        "MI300X-192GB",
    }


@pytest.mark.parametrize("gpu", list(gpus.CATALOGUE.values()), ids=lambda g: g.name)
def test_reported_memory_is_below_the_marketing_figure_in_gib(gpu: gpus.GpuType) -> None:
    marketing_gib = gpu.marketing_memory_gb * 1e9 / gpus.GIB
    # The device reports a little less than the label's number, read as GiB;
    # a figure below the label in decimal GB would mean a unit mix-up.
    assert gpu.memory_gib < gpu.marketing_memory_gb
    assert gpu.memory_gib > 0.9 * marketing_gib
    assert gpu.bf16_tflops > 0 and gpu.bandwidth_tb_s > 0 and gpu.interconnect_gb_s > 0


def test_eighty_gigabyte_cards_report_about_79_gib() -> None:
    assert gpus.CATALOGUE["H100-80GB"].memory_gib == pytest.approx(79.2, abs=0.3)
    assert gpus.CATALOGUE["A100-80GB"].memory_gib == pytest.approx(79.2, abs=0.3)


def test_amd_card_uses_the_amd_resource_and_label() -> None:
    mi300x = gpus.lookup("MI300X")
    assert mi300x.resource_name == "amd.com/gpu"
    assert mi300x.label_key == "amd.com/gpu.product-name"
    assert all(
        g.resource_name == "nvidia.com/gpu" for g in gpus.CATALOGUE.values() if g.vendor == "nvidia"
    )


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("H100-80GB", "H100-80GB"),
        ("h100", "H100-80GB"),
        ("NVIDIA-H100-80GB-HBM3", "H100-80GB"),
        (" a100_80gb ", "A100-80GB"),
        ("NVIDIA-A100-SXM4-40GB", "A100-40GB"),
        ("l40s", "L40S-48GB"),
        ("AMD_Instinct_MI300X", "MI300X-192GB"),
    ],
)
def test_lookup_accepts_names_aliases_and_node_labels(typed: str, expected: str) -> None:
    assert gpus.lookup(typed).name == expected


@pytest.mark.parametrize("bad", ["", "   ", "H300", "V100"])
def test_unknown_gpu_error_lists_the_known_names(bad: str) -> None:
    with pytest.raises(gpus.UnknownGpuError, match="H100-80GB"):
        gpus.lookup(bad)


def test_product_labels_are_unique_so_a_node_label_identifies_one_card() -> None:
    labels = [g.product_label for g in gpus.CATALOGUE.values()]
    assert len(labels) == len(set(labels))


def test_h100_ridge_point_is_about_295_tokens() -> None:
    assert gpus.CATALOGUE["H100-80GB"].ridge_tokens == pytest.approx(295, abs=1)


def test_custom_gpu_takes_memory_and_borrows_speed() -> None:
    card = gpus.custom(47.5, base=gpus.lookup("L40S"))
    assert card.memory_gib == 47.5
    assert card.bandwidth_tb_s == gpus.CATALOGUE["L40S-48GB"].bandwidth_tb_s
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="positive"):
            gpus.custom(bad)
