"""The demo's report: ``report.md``, ``timeline.json`` and one PNG per quantity.

Markdown first because it is what a reader pastes into an issue; the PNGs
show the same timeline (load, latency, throughput, replicas, k) so a change
of decision can be lined up with the load that caused it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from specops.demo.schedule import Step
from specops.demo.timeline import Sample, StepSummary, Transition


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def table(summaries: Sequence[StepSummary]) -> str:
    """The per-step table: load asked, load served, latency, and what the operator ran."""
    lines = [
        "| step | t (s) | offered req/s | completed req/s | errors | client TPOT p50 ms "
        "| vLLM ITL ms | output tok/s | ready replicas | speculation | acceptance |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.step.index + 1} | {s.step.start:.0f}-{s.step.end:.0f} | {s.step.rate:.1f} "
            f"| {_fmt(s.completed_rate)} | {s.errors} | {_fmt(s.tpot_p50_ms)} "
            f"| {_fmt(s.vllm_itl_ms)} | {_fmt(s.tokens_per_s, 0)} | {s.replicas} "
            f"| {s.speculation} | {_fmt(s.acceptance, 2)} |"
        )
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _machine_line(meta: dict[str, Any]) -> str:
    """The simulators run in real time: a starved CPU makes them slower than the GPU."""
    loads = meta.get("load_average")
    if not loads or not meta.get("cpus"):
        return ""
    busy = max(loads) > meta["cpus"]
    return (
        f"Machine: {meta['cpus']} CPUs, 1-minute load average {loads[0]} at the start and "
        f"{loads[1]} at the end of the load."
        + (
            " More runnable processes than CPUs: the simulators, which run in real time, "
            "fell behind the modelled GPUs, so latencies are worse than the model's."
            if busy
            else ""
        )
        + "\n"
    )


def _errors_line(kinds: dict[str, int]) -> str:
    if not kinds:
        return "Every request succeeded.\n"
    listed = ", ".join(f"{count} x {kind}" for kind, count in kinds.items())
    return f"Failed requests by kind: {listed}.\n"


def markdown(
    *,
    meta: dict[str, Any],
    summaries: Sequence[StepSummary],
    changes: Sequence[Transition],
    events: Sequence[dict[str, Any]],
    operator: dict[str, Any],
    plots: Sequence[str],
) -> str:
    """The whole report as Markdown."""
    out = [
        "# SpecOps demo report",
        "",
        f"{meta['resource']} ({meta['model']} with its EAGLE-3 speculator on simulated "
        f"{meta['gpu']}), installed by the SpecOps Helm chart; the operator ran as the "
        "chart's pod under its ServiceAccount token. Load: Poisson arrivals rising to "
        f"{meta['peak_rate']:g} req/s and falling again over {meta['duration_s']:.0f} s "
        f"({meta['prompt_tokens']} prompt / {meta['output_tokens']} output tokens), "
        f"through the Service's front door. Objective: mean ITL under "
        f"{_fmt(meta.get('target_itl_ms'))} ms; policy window {meta['window_s']} s, "
        f"evaluation every {meta['evaluation_s']:g} s.",
        "",
        "## What happened, step by step",
        "",
        table(summaries),
        "",
        _errors_line(meta.get("errors_by_kind") or {}),
        _machine_line(meta),
        "Client TPOT is what a user saw per output token (end-to-end through the front "
        "door); vLLM ITL is the mean of vLLM's `inter_token_latency_seconds` histogram "
        "(one engine step, several tokens when drafts are accepted), both from Prometheus "
        "as the operator reads them.",
        "",
        "## What the operator decided, and why",
        "",
    ]
    if changes:
        out += ["| t (s) | what | from | to | reason | details |", "|---|---|---|---|---|---|"]
        out += [
            f"| {c.t:.0f} | {c.what} | {c.before} | {c.after} | {c.reason} | {_cell(c.message)} |"
            for c in changes
        ]
    else:
        reasons = sorted({r for s in summaries for r in s.reasons})
        out.append(
            "No change of speculation or replicas during the load; the status gave these "
            f"reasons throughout: {', '.join(reasons) or 'none'}."
        )
    out += [
        "",
        "### Events on the resource",
        "",
        "As the API server holds them; the operator rate-limits its Events per object "
        "(`specops.kube.events`), so the status transitions above are the complete record.",
        "",
    ]
    if events:
        out += ["| type | reason | count | message |", "|---|---|---|---|"]
        for e in events:
            out.append(
                f"| {e.get('type')} | {e.get('reason')} | {e.get('count', 1)} "
                f"| {_cell(str(e.get('message', '')))} |"
            )
    else:
        out.append("(none)")
    out += [
        "",
        "## The operator process",
        "",
        f"- pods run: {', '.join(operator.get('pods', [])) or 'none'}",
        f"- log: `{operator.get('log_dir')}`",
        f"- HTTP 403 (Forbidden) lines in its log: {operator.get('forbidden', 0)}",
        f"- errors in its log: {operator.get('errors', 0)}",
        "",
        "## Plots",
        "",
    ]
    out += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    out += [
        "",
        "Everything is still running: `kubectl` with "
        f"`KUBECONFIG={meta['kubeconfig']}`, Prometheus at {meta['prometheus_url']}. "
        "Tear it all down with `make demo-down`.",
        "",
    ]
    return "\n".join(out)


def plots(
    samples: Sequence[Sample], plan: Sequence[Step], outdir: Path, target_itl_ms: float | None
) -> list[Path]:
    """load.png, itl.png, throughput.png, replicas.png, speculation_k.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in samples]

    def series(values: Sequence[float | None]) -> list[float]:
        return [math.nan if v is None else float(v) for v in values]

    def step_edges() -> tuple[list[float], list[float]]:
        xs: list[float] = []
        ys: list[float] = []
        for step in plan:
            xs += [step.start, step.end]
            ys += [step.rate, step.rate]
        return xs, ys

    figures: list[tuple[str, str, str, list[tuple[str, list[float], list[float]]]]] = [
        (
            "load",
            "Load",
            "requests/s",
            [
                ("offered", *step_edges()),
                ("completed", t, series([s.completed_rate for s in samples])),
            ],
        ),
        (
            "itl",
            "Latency",
            "ms",
            [
                ("client TPOT", t, series([s.client_tpot_ms for s in samples])),
                ("vLLM ITL (step)", t, series([s.vllm_itl_ms for s in samples])),
            ],
        ),
        (
            "throughput",
            "Output throughput",
            "tokens/s",
            [("generation tokens/s", t, series([s.tokens_per_s for s in samples]))],
        ),
        (
            "replicas",
            "Replicas",
            "replicas",
            [
                ("desired", t, series([s.desired_replicas for s in samples])),
                ("ready (pods)", t, series([s.ready_replicas for s in samples])),
                ("serving (front door)", t, series([s.serving_replicas for s in samples])),
            ],
        ),
        (
            "speculation_k",
            "Speculation (k, 0 = off)",
            "k",
            [
                (
                    "k",
                    t,
                    series(
                        [
                            None
                            if s.speculation_active is None
                            else (s.k or 0)
                            if s.speculation_active
                            else 0
                            for s in samples
                        ]
                    ),
                )
            ],
        ),
    ]
    written = []
    outdir.mkdir(parents=True, exist_ok=True)
    for name, title, unit, lines in figures:
        fig, ax = plt.subplots(figsize=(8, 3.2))
        for label, xs, ys in lines:
            drawstyle = "steps-post" if name in ("replicas", "speculation_k") else "default"
            ax.plot(xs, ys, label=label, drawstyle=drawstyle)
        if name == "itl" and target_itl_ms is not None:
            ax.axhline(target_itl_ms, color="grey", linestyle="--", label="ITL target")
        ax.set_title(title)
        ax.set_xlabel("seconds since the load started")
        ax.set_ylabel(unit)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
        fig.tight_layout()
        path = outdir / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def timeline_json(
    meta: dict[str, Any],
    plan: Sequence[Step],
    samples: Sequence[Sample],
    changes: Sequence[Transition],
    events: Sequence[dict[str, Any]],
    operator: dict[str, Any],
) -> str:
    """Raw data behind the report, for tests and for anyone re-plotting it."""
    return json.dumps(
        {
            "schema": "specops.dev/demo-report/v1",
            "meta": meta,
            "steps": [asdict(s) for s in plan],
            "samples": [asdict(s) for s in samples],
            "transitions": [asdict(c) for c in changes],
            "events": list(events),
            "operator": operator,
        },
        indent=1,
        default=str,
    )
