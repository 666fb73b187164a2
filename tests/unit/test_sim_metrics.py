"""The simulator's /metrics against vLLM 0.33.0's own list of names, types and buckets."""

from __future__ import annotations

import math
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from test_sim_engine import config

from specops.sim import acceptance as acc
from specops.sim import engine as eng
from specops.sim.metrics import VllmMetrics, build_1_2_5_buckets

VLLM = Path(__file__).resolve().parents[2] / "operator" / "specops" / "data" / "vllm-0.33.0"
LABELS = {"model_name", "engine"}
REQUIRED = {
    "vllm:spec_decode_num_drafts": "counter",
    "vllm:spec_decode_num_draft_tokens": "counter",
    "vllm:spec_decode_num_accepted_tokens": "counter",
    "vllm:spec_decode_num_accepted_tokens_per_pos": "counter",
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:generation_tokens": "counter",
    "vllm:prompt_tokens": "counter",
    "vllm:num_preemptions": "counter",
    "vllm:request_success": "counter",
    "vllm:iteration_tokens_total": "histogram",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_queue_time_seconds": "histogram",
}
BUCKETS_BY_METRIC = {
    "vllm:time_to_first_token_seconds": "TIME_TO_FIRST_TOKEN_BUCKETS",
    "vllm:inter_token_latency_seconds": "INTER_TOKEN_LATENCY_BUCKETS",
    "vllm:e2e_request_latency_seconds": "REQUEST_LATENCY_BUCKETS",
    "vllm:request_queue_time_seconds": "REQUEST_LATENCY_BUCKETS",
    "vllm:iteration_tokens_total": "ITERATION_TOKENS_BUCKETS",
    "vllm:request_params_n": "REQUEST_PARAMS_N_BUCKETS",
}


def vllm_types() -> dict[str, str]:
    out = {}
    for line in (VLLM / "metrics.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, kind = line.split("\t")[:2]
            out[name] = kind.lower()
    return out


def vllm_buckets() -> dict[str, list[float]]:
    out = {}
    for line in (VLLM / "histogram_buckets.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, values = line.split("\t")
            out[name] = [float(v) for v in values.split()]
    return out


def scrape(metrics: VllmMetrics) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}


def run_some_traffic(metrics: VllmMetrics) -> eng.SimulationResult:
    return eng.simulate(
        config(num_speculative_tokens=3, acceptance=acc.profile("code"), num_gpu_blocks=300),
        eng.Workload(40, (200, 600), (20, 200), concurrency=12, seed=4),
        observer=metrics.observe_step,
    )


def test_every_family_has_vllms_name_type_and_labels() -> None:
    metrics = VllmMetrics("llama", max_model_len=8192, num_spec_tokens=3)
    run_some_traffic(metrics)
    families = scrape(metrics)
    known = vllm_types()
    for name, kind in REQUIRED.items():
        assert name in families, name
        assert families[name].type == kind, name  # type: ignore[attr-defined]
    for name, family in families.items():
        assert name in known, f"{name} is not a vLLM 0.33.0 metric"
        assert family.type == known[name], name  # type: ignore[attr-defined]
        for sample in family.samples:  # type: ignore[attr-defined]
            extra = set(sample.labels) - LABELS - {"le"}
            assert set(sample.labels) >= LABELS, name
            expected = {
                "vllm:request_success": {"finished_reason"},
                "vllm:spec_decode_num_accepted_tokens_per_pos": {"position"},
            }.get(name, set())
            assert extra == expected, name
            assert not sample.name.endswith("_created")


def test_histograms_use_vllms_default_buckets() -> None:
    metrics = VllmMetrics("llama", max_model_len=4096)
    families = scrape(metrics)
    buckets = vllm_buckets()
    for name, constant in BUCKETS_BY_METRIC.items():
        bounds = [
            float(s.labels["le"])
            for s in families[name].samples  # type: ignore[attr-defined]
            if s.name.endswith("_bucket")
        ]
        assert bounds[:-1] == buckets[constant], name
        assert math.isinf(bounds[-1])
    assert build_1_2_5_buckets(4096) == (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


def test_counters_agree_with_the_simulation() -> None:
    metrics = VllmMetrics("llama", max_model_len=8192, num_spec_tokens=3)
    result = run_some_traffic(metrics)
    families = scrape(metrics)

    def value(name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in families[name].samples  # type: ignore[attr-defined]
            if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items())
        )

    assert value("vllm:spec_decode_num_drafts") == result.drafts
    assert value("vllm:spec_decode_num_accepted_tokens") == result.accepted_tokens
    for i, n in enumerate(result.accepted_per_position):
        assert value("vllm:spec_decode_num_accepted_tokens_per_pos", position=str(i)) == n
    assert value("vllm:generation_tokens") == sum(r.output_tokens for r in result.records)
    assert value("vllm:request_success", finished_reason="length") == 40
    assert value("vllm:num_preemptions") == result.preemptions > 0
    ttft_count = [
        s.value
        for s in families["vllm:time_to_first_token_seconds"].samples  # type: ignore[attr-defined]
        if s.name.endswith("_count")
    ]
    assert ttft_count == [40]
