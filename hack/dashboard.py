"""The SpecOps Grafana dashboard, as data: one entry per panel, built into Grafana JSON.

Why a table instead of hand-edited JSON: each panel is a title, a unit and its PromQL;
everything else (grid positions, datasource references, ids) is bookkeeping that a
generator gets right every time. ``hack/gen-manifests`` writes the result to
``charts/specops/dashboards/specops.json``; the integration test runs every query
against a real Prometheus scraping the simulator and the operator.

Query variables: ``$model`` (vLLM's ``model_name`` label), ``$namespace`` (the
SpeculativeDeployment's namespace on the operator's metrics) and Grafana's
``$__rate_interval``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The operator's own metric names (specops.controller metrics). Kept in one place so a
#: rename in the operator is a one-line change here, caught by the dashboard test.
OPERATOR = {
    "speculation_active": "specops_speculation_active",
    "speculative_tokens": "specops_speculative_tokens",
    "replicas_desired": "specops_desired_replicas",
    "reconciles": "specops_reconcile_total",
}

RECONCILES = OPERATOR["reconciles"]
M = '{model_name=~"$model"}'
OP = '{namespace=~"$namespace"}'
RI = "[$__rate_interval]"


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """One time-series panel."""

    title: str
    unit: str
    targets: tuple[Target, ...]
    description: str = ""
    width: int = 12
    overrides: dict[str, Any] = field(default_factory=dict)


def _quantiles(metric: str) -> tuple[Target, ...]:
    return tuple(
        Target(
            f"histogram_quantile({q}, sum by (le, model_name) (rate({metric}_bucket{M}{RI})))",
            f"p{round(q * 100)} {{{{model_name}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    )


ACCEPTED = f"vllm:spec_decode_num_accepted_tokens_total{M}"
DRAFTED = f"vllm:spec_decode_num_draft_tokens_total{M}"
DRAFTS = f"vllm:spec_decode_num_drafts_total{M}"
PER_POS = f"vllm:spec_decode_num_accepted_tokens_per_pos_total{M}"

PANELS: tuple[Panel, ...] = (
    Panel(
        "Acceptance rate",
        "percentunit",
        (
            Target(
                f"sum by (model_name) (rate({ACCEPTED}{RI})) / "
                f"sum by (model_name) (rate({DRAFTED}{RI}))",
                "{{model_name}}",
            ),
        ),
        "Accepted / drafted tokens: the share of drafted tokens the verifier kept.",
    ),
    Panel(
        "Mean acceptance length",
        "short",
        (
            Target(
                f"1 + sum by (model_name) (rate({ACCEPTED}{RI})) / "
                f"sum by (model_name) (rate({DRAFTS}{RI}))",
                "{{model_name}}",
            ),
        ),
        "Tokens produced per verifier step while speculating (1 + accepted / drafts).",
    ),
    Panel(
        "Per-position acceptance",
        "percentunit",
        (
            Target(
                f"sum by (model_name, position) (rate({PER_POS}{RI})) / ignoring(position) "
                f"group_left sum by (model_name) (rate({DRAFTS}{RI}))",
                "pos {{position}} {{model_name}}",
            ),
        ),
        "Probability that draft position i is accepted; falls with i. Guides k.",
    ),
    Panel(
        "Speculation on/off and k",
        "short",
        (
            Target(
                f"max by (namespace, name) ({OPERATOR['speculation_active']}{OP})",
                "on {{namespace}}/{{name}}",
            ),
            Target(
                f"max by (namespace, name) ({OPERATOR['speculative_tokens']}{OP})",
                "k {{namespace}}/{{name}}",
            ),
        ),
        "The operator's decision: 1 while vLLM drafts tokens, and the k it renders.",
    ),
    Panel(
        "Replicas desired / ready",
        "short",
        (
            Target(
                f"max by (namespace, name) ({OPERATOR['replicas_desired']}{OP})",
                "desired {{namespace}}/{{name}}",
            ),
            Target(
                f"count by (model_name) (vllm:num_requests_running{M})",
                "ready {{model_name}}",
            ),
        ),
        "The autoscaler's target, and the vLLM replicas serving (reporting metrics).",
    ),
    Panel(
        "Requests running / waiting",
        "short",
        (
            Target(f"sum by (model_name) (vllm:num_requests_running{M})", "running {{model_name}}"),
            Target(f"sum by (model_name) (vllm:num_requests_waiting{M})", "waiting {{model_name}}"),
        ),
        "Waiting requests mean the batch is full: scale out, or speculation stops paying.",
    ),
    Panel(
        "KV cache usage",
        "percentunit",
        (
            Target(f"avg by (model_name) (vllm:kv_cache_usage_perc{M})", "mean {{model_name}}"),
            Target(f"max by (model_name) (vllm:kv_cache_usage_perc{M})", "max {{model_name}}"),
        ),
        "Share of KV cache blocks in use (1 = full; requests queue or get preempted).",
    ),
    Panel(
        "Time to first token",
        "s",
        _quantiles("vllm:time_to_first_token_seconds"),
        "TTFT percentiles over all replicas.",
    ),
    Panel(
        "Inter-token latency",
        "s",
        _quantiles("vllm:inter_token_latency_seconds"),
        "ITL percentiles: what speculative decoding lowers at low load.",
    ),
    Panel(
        "Operator reconciles and errors",
        "ops",
        (
            Target(
                f"sum by (outcome) (rate({OPERATOR['reconciles']}{RI}))",
                "{{outcome}}",
            ),
            # 0 rather than no data while the operator reports and nothing failed yet (the
            # error series only appears with the first error); still empty without the operator.
            Target(
                f'sum (rate({RECONCILES}{{outcome="error"}}{RI})) '
                f"or on () (0 * sum (rate({RECONCILES}{RI})))",
                "errors",
            ),
        ),
        "Reconcile rate of the SpecOps operator and the rate of failed reconciles.",
    ),
)


def _panel_json(index: int, panel: Panel, x: int, y: int) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "custom": {"lineWidth": 1, "fillOpacity": 10}},
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        "targets": [
            {
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "expr": target.expr,
                "legendFormat": target.legend,
                "refId": chr(ord("A") + n),
            }
            for n, target in enumerate(panel.targets)
        ],
    }


def build_dashboard() -> dict[str, Any]:
    """The whole dashboard: panels two to a row, a datasource and two filter variables."""
    panels = []
    for index, panel in enumerate(PANELS):
        panels.append(_panel_json(index, panel, x=(index % 2) * 12, y=(index // 2) * 8))
    return {
        "uid": "specops",
        "title": "SpecOps: speculative decoding",
        "description": "vLLM speculative decoding under the SpecOps operator.",
        "tags": ["specops", "vllm", "speculative-decoding"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "graphTooltip": 1,
        "annotations": {"list": []},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "model",
                    "label": "Model",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": {
                        "query": "label_values(vllm:num_requests_running, model_name)",
                        "refId": "model",
                    },
                    "definition": "label_values(vllm:num_requests_running, model_name)",
                    "includeAll": True,
                    "allValue": ".*",
                    "multi": True,
                    "current": {},
                    "refresh": 2,
                    "hide": 0,
                },
                {
                    "name": "namespace",
                    "label": "Namespace",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": {
                        "query": f"label_values({OPERATOR['replicas_desired']}, namespace)",
                        "refId": "namespace",
                    },
                    "definition": f"label_values({OPERATOR['replicas_desired']}, namespace)",
                    "includeAll": True,
                    "allValue": ".*",
                    "multi": True,
                    "current": {},
                    "refresh": 2,
                    "hide": 0,
                },
            ]
        },
        "panels": panels,
    }
