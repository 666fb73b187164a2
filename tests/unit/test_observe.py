"""PromQL built from vLLM's formulas, and query results turned into an Observation."""

from __future__ import annotations

import math

import pytest

from specops.observe.prometheus import assemble
from specops.observe.queries import LabelNames, Queries, Selector, bucket_quantile, duration


def test_selector_uses_the_podmonitor_labels_and_escapes_values() -> None:
    sel = Selector("team-a", 'we"ird')
    assert sel.matchers() == '{namespace="team-a",app_kubernetes_io_instance="we\\"ird"}'


def test_label_names_are_configurable() -> None:
    sel = Selector("ns", "llama", LabelNames(namespace="kube_namespace", instance="deployment"))
    assert sel.matchers() == '{kube_namespace="ns",deployment="llama"}'
    queries = Queries(sel, 30).all()
    assert all('kube_namespace="ns"' in q for q in queries.values())


@pytest.mark.parametrize("bad", ["app.kubernetes.io/instance", "", "1abc"])
def test_a_label_name_prometheus_cannot_have_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="label name"):
        LabelNames(instance=bad)


def test_queries_follow_vllms_formulas_over_the_window() -> None:
    q = Queries(Selector("ns", "d"), 60).all()
    sel = '{namespace="ns",app_kubernetes_io_instance="d"}'
    assert (
        q["accepted_tokens"] == f"sum(rate(vllm:spec_decode_num_accepted_tokens_total{sel}[60s]))"
    )
    assert q["draft_tokens"] == f"sum(rate(vllm:spec_decode_num_draft_tokens_total{sel}[60s]))"
    assert q["drafts"] == f"sum(rate(vllm:spec_decode_num_drafts_total{sel}[60s]))"
    assert "by (position)" in q["accepted_per_position"]
    assert q["iteration_tokens_sum"].startswith("sum(rate(vllm:iteration_tokens_total_sum")
    assert q["itl_count"].startswith("sum(rate(vllm:inter_token_latency_seconds_count")
    assert q["running"] == f"avg(avg_over_time(vllm:num_requests_running{sel}[60s]))"
    assert "count by (pod)" in q["replicas"]


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf])
def test_a_window_that_is_not_a_positive_duration_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="window"):
        duration(bad)


BUCKETS = [(0.01, 0.0), (0.025, 50.0), (0.05, 100.0), (math.inf, 100.0)]


def test_quantiles_are_interpolated_where_the_buckets_resolve_them() -> None:
    value, why = bucket_quantile(0.5, BUCKETS)
    assert value == pytest.approx(0.025) and why == ""
    value, _ = bucket_quantile(0.75, BUCKETS)
    assert value == pytest.approx(0.0375)


@pytest.mark.parametrize(
    ("buckets", "needle"),
    [
        ([(0.01, 100.0), (0.025, 100.0), (math.inf, 100.0)], "below the first bucket"),
        ([(0.01, 0.0), (0.025, 1.0), (math.inf, 100.0)], "above the last finite"),
        ([(0.01, 0.0), (math.inf, 0.0)], "no samples"),
    ],
    ids=["fast model below 10 ms", "slow tail beyond the buckets", "idle window"],
)
def test_quantiles_the_buckets_cannot_resolve_are_not_reported(
    buckets: list[tuple[float, float]], needle: str
) -> None:
    value, why = bucket_quantile(0.5, buckets)
    assert value is None and needle in why


def vec(value: float, **labels: str) -> list[tuple[dict[str, str], float]]:
    return [(labels, value)]


def full_results() -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        "replicas": vec(2),
        "running": vec(8.0),
        "waiting": vec(1.0),
        "kv_cache_usage": vec(0.4),
        "generation_tokens": vec(900.0),
        "iteration_tokens_sum": vec(3200.0),
        "iteration_tokens_count": vec(100.0),
        "itl_sum": vec(1.5),
        "itl_count": vec(150.0),
        "ttft_sum": vec(0.6),
        "ttft_count": vec(4.0),
        "itl_buckets": [({"le": "0.01"}, 0.0), ({"le": "0.025"}, 150.0), ({"le": "+Inf"}, 150.0)],
        "ttft_buckets": [({"le": "0.25"}, 4.0), ({"le": "+Inf"}, 4.0)],
        "drafts": vec(100.0),
        "draft_tokens": vec(300.0),
        "accepted_tokens": vec(180.0),
        "accepted_per_position": [
            ({"position": "0"}, 80.0),
            ({"position": "1"}, 60.0),
            ({"position": "2"}, 40.0),
        ],
    }


def test_an_observation_uses_vllms_acceptance_formulas() -> None:
    obs = assemble(100.0, 30.0, full_results(), [])
    assert obs.replicas_reporting == 2
    assert obs.running_per_replica == 8.0 and obs.waiting_per_replica == 1.0
    assert obs.tokens_per_step == pytest.approx(32.0)
    assert obs.mean_itl_s == pytest.approx(0.01)
    assert obs.mean_ttft_s == pytest.approx(0.15)
    assert obs.num_speculative_tokens == 3
    acc = obs.acceptance
    assert acc is not None
    assert acc.acceptance_rate == pytest.approx(180 / 300)
    assert acc.mean_acceptance_length == pytest.approx(1 + 180 / 100)
    assert acc.per_position == pytest.approx((0.8, 0.6, 0.4))
    assert obs.itl_p50_s is not None
    assert obs.available


def test_what_could_not_be_seen_is_listed_not_zeroed() -> None:
    results = full_results()
    results["itl_sum"] = []
    results["itl_count"] = []
    results["drafts"] = vec(0.0)
    obs = assemble(100.0, 30.0, results, ["kv_cache_usage: HTTP 400: bad query"])
    assert obs.mean_itl_s is None
    assert obs.acceptance is None
    assert any(m.startswith("itl:") for m in obs.missing)
    assert any(m.startswith("acceptance:") for m in obs.missing)
    assert "kv_cache_usage: HTTP 400: bad query" in obs.missing


def test_no_pod_reporting_makes_the_observation_unavailable() -> None:
    obs = assemble(100.0, 30.0, {"replicas": [], "running": []}, [])
    assert obs.replicas_reporting == 0
    assert not obs.available
    assert any("replicas" in m for m in obs.missing)


def test_a_position_with_no_series_counts_as_never_accepted() -> None:
    results = full_results()
    results["accepted_per_position"] = [({"position": "0"}, 50.0)]
    obs = assemble(100.0, 30.0, results, [])
    assert obs.acceptance is not None
    assert obs.acceptance.per_position == pytest.approx((0.5, 0.0, 0.0))
