"""Turn profile summaries into ``report.json``, ``report.md`` and PNG plots.

The JSON is the source of truth (other tools and tests read it); the
Markdown table and the plots are views of it, so they can be regenerated
from a saved report without rerunning load.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from specops.load.schedule import Profile
from specops.load.stats import Summary

SCHEMA = "specops.dev/load-report/v1"


def build(meta: dict[str, Any], results: Sequence[tuple[Profile, Summary]]) -> dict[str, Any]:
    """The report document: run metadata, one entry per profile, and totals."""
    profiles = []
    for profile, summary in results:
        entry: dict[str, Any] = {"name": profile.name, "kind": profile.kind}
        entry["concurrency" if profile.kind == "concurrency" else "target_rate"] = profile.value
        entry.update(summary.as_dict())
        profiles.append(entry)
    totals = {
        "completed": sum(s.completed for _, s in results),
        "errored": sum(s.errored for _, s in results),
        "output_tokens": sum(s.output_tokens for _, s in results),
        "prompt_tokens": sum(s.prompt_tokens for _, s in results),
    }
    return {"schema": SCHEMA, **meta, "profiles": profiles, "totals": totals}


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def _triple(dist: dict[str, Any], digits: int = 1) -> str:
    return " / ".join(_fmt(dist[k], digits) for k in ("p50", "p90", "p99"))


def markdown(report: dict[str, Any]) -> str:
    """A table a human can paste into an issue: one row per profile."""
    target = report.get("target", {})
    lines = [
        f"# Load report: {target.get('model', '?')} at "
        + (target.get("url") or f"a simulated {target.get('gpu', '?')} (virtual time)"),
        "",
        f"Mode: {report.get('mode', '?')}; prompt tokens ~{report.get('prompt_tokens', '?')}, "
        f"output tokens {report.get('output_tokens', '?')}; seed {report.get('seed', '?')}.",
        "",
        "| profile | load | req/s | output tok/s | TTFT ms p50/p90/p99 | ITL ms p50/p90/p99 "
        "| TPOT ms p50/p90/p99 | latency s p50/p90/p99 | ok | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in report["profiles"]:
        load = (
            f"c={p['concurrency']:g}" if p["kind"] == "concurrency" else f"{p['target_rate']:g}/s"
        )
        lines.append(
            f"| {p['name']} | {load} | {_fmt(p['request_rate'], 2)} "
            f"| {_fmt(p['output_tokens_per_s'])} | {_triple(p['ttft_ms'])} "
            f"| {_triple(p['itl_ms'])} | {_triple(p['tpot_ms'])} "
            f"| {_triple(p['latency_s'], 2)} | {p['completed']} | {p['errored']} |"
        )
    totals = report["totals"]
    lines += [
        "",
        f"Totals: {totals['completed']} requests completed, {totals['errored']} failed, "
        f"{totals['output_tokens']} output tokens, {totals['prompt_tokens']} prompt tokens.",
        "",
    ]
    return "\n".join(lines)


def plots(report: dict[str, Any], outdir: Path) -> list[Path]:
    """``latency_vs_rate.png`` and ``throughput_vs_rate.png`` against achieved request rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(
        (p for p in report["profiles"] if p["completed"]), key=lambda p: p["request_rate"]
    )
    rates = [p["request_rate"] for p in rows]
    written = []

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, title in zip(
        axes,
        ("ttft_ms", "tpot_ms", "latency_s"),
        ("TTFT (ms)", "TPOT (ms)", "request latency (s)"),
        strict=True,
    ):
        for q, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
            ax.plot(rates, [p[key][q] for p in rows], style, label=q)
        ax.set_xlabel("request rate (req/s)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Latency against load: {report.get('target', {}).get('model', '')}")
    fig.tight_layout()
    path = outdir / "latency_vs_rate.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rates, [p["output_tokens_per_s"] for p in rows], "o-")
    for p in rows:
        ax.annotate(p["name"], (p["request_rate"], p["output_tokens_per_s"]), fontsize=7)
    ax.set_xlabel("request rate (req/s)")
    ax.set_ylabel("output tokens/s")
    ax.set_title("Throughput against load")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = outdir / "throughput_vs_rate.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written


def write(report: dict[str, Any], outdir: Path) -> list[Path]:
    """Write the JSON, the Markdown and the plots; return every path written."""
    outdir.mkdir(parents=True, exist_ok=True)
    json_path = outdir / "report.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path = outdir / "report.md"
    md_path.write_text(markdown(report))
    return [json_path, md_path, *plots(report, outdir)]
