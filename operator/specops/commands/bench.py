"""``specops bench``: the policy benchmarks, in virtual time on the serving twin.

``specops bench policy [--model NAME] [--gpu TYPE] [--tensor-parallel-size N]
[--profile code|chat|summarization|math] [--alpha A] [--perturb F] [--seed N]
--output FILE.json`` runs one sweep scenario (fixed interface), prints the
table and writes ``FILE.json`` plus ``FILE.png``.

``specops bench autoscaling --output FILE.json`` runs the autoscaling traces.

``specops bench all --output DIR`` runs the full grid (``make bench``):
Llama-3.1-8B on one H100 and Llama-3.3-70B on four, code/chat/summarization,
hardware equal to the priors and perturbed by +-20%, then the traces, and
writes ``DIR/summary.md`` with every goal and its measured figure.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from specops.commands._argtypes import positive_float, positive_int, unit_interval

PROFILES = ("code", "chat", "summarization", "math")
GRID_MODELS = (
    ("meta-llama/Llama-3.1-8B-Instruct", "H100-80GB", 1),
    ("meta-llama/Llama-3.3-70B-Instruct", "H100-80GB", 4),
)
GRID_PROFILES = ("code", "chat", "summarization")
GRID_PERTURB = (1.0, 0.8, 1.2)


def register(subparsers: Any) -> None:
    """``specops bench policy|autoscaling|all``."""
    bench = subparsers.add_parser("bench", help="policy benchmarks on the serving twin")
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    sub.required = True

    policy = sub.add_parser("policy", help="one sweep scenario: fixed k vs SpecOps vs oracle")
    policy.add_argument("--model", default="meta-llama/Llama-3.1-8B-Instruct")
    policy.add_argument("--gpu", default="H100-80GB", help="catalogue GPU name")
    policy.add_argument("--tensor-parallel-size", type=positive_int, default=1)
    policy.add_argument("--profile", choices=PROFILES, default="code")
    policy.add_argument("--alpha", type=unit_interval, help="flat per-token acceptance instead")
    policy.add_argument(
        "--perturb", type=positive_float, default=1.0, help="twin hardware F times slower"
    )
    policy.add_argument("--seed", type=int, default=0)
    policy.add_argument(
        "--no-table", action="store_true", help="pod-level k only (no dynamic table)"
    )
    policy.add_argument("--hub-mirror", help="directory of <org>/<repo>/config.json")
    policy.add_argument("--output", required=True, help="FILE.json (a PNG is written next to it)")
    policy.set_defaults(func=_policy)

    auto = sub.add_parser("autoscaling", help="autoscaling traces against an oracle")
    auto.add_argument("--seed", type=int, default=0)
    auto.add_argument("--output", required=True, help="FILE.json")
    auto.set_defaults(func=_autoscaling)

    everything = sub.add_parser("all", help="the full grid and the traces (make bench)")
    everything.add_argument("--output", required=True, help="directory")
    everything.add_argument("--hub-mirror")
    everything.add_argument("--jobs", type=positive_int, default=min(2, os.cpu_count() or 1))
    everything.set_defaults(func=_all)


# ---------------------------------------------------------------- policy


def _scenario(args: argparse.Namespace) -> Any:
    from specops.commands._bench_policy import Scenario

    return Scenario(
        model=args.model,
        gpu=args.gpu,
        tensor_parallel_size=args.tensor_parallel_size,
        profile=args.profile,
        alpha=args.alpha,
        perturb=args.perturb,
        seed=args.seed,
        table=not args.no_table,
        hub_mirror=args.hub_mirror,
    )


def run_policy(scenario: Any) -> dict[str, Any]:
    """Run one scenario; a bad scenario becomes a :class:`UsageError`."""
    from specops.cli import UsageError
    from specops.commands._bench_policy import BenchError, run_scenario

    try:
        return run_scenario(scenario)
    except (BenchError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def policy_table(doc: dict[str, Any]) -> str:
    """Median request latency (s) / median ITL (ms) per strategy and point, then the goals."""
    names = list(doc["points"][0]["strategies"])
    head = ["point", "req/s", *names]
    rows = [head, ["---"] * len(head)]
    for p in doc["points"]:
        cells = [p["kind"], f"{p['rate']:.2f}"]
        for n in names:
            m = p["strategies"][n]
            cells.append(f"{m['latency_p50_s']:.2f} / {m['itl_p50_ms']:.1f}")
        rows.append(cells)
    text = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    goals = doc["goals"]
    text += "\n\n(cells: median request latency s / median ITL ms)\n\n"
    text += "\n".join(f"- {k}: {v}" for k, v in goals.items())
    return text


def policy_plot(doc: dict[str, Any], path: Path) -> None:
    """Latency and ITL against request rate for every strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in doc["points"] if p["kind"] == "rate"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in points[0]["strategies"]:
        style = {"specops": "-o", "oracle": "--", "no-spec": "-s"}.get(name, ":")
        rates = [p["rate"] for p in points]
        axes[0].plot(
            rates, [p["strategies"][name]["latency_p50_s"] for p in points], style, label=name
        )
        axes[1].plot(
            rates, [p["strategies"][name]["itl_p50_ms"] for p in points], style, label=name
        )
    sc = doc["scenario"]
    title = f"{sc['model'].split('/')[-1]} TP{sc['tensor_parallel_size']} {sc['gpu']} "
    title += f"{sc['profile'] or 'alpha=' + str(sc['alpha'])} perturb {sc['perturb']}"
    axes[0].set(xlabel="request rate (req/s)", ylabel="median request latency (s)", title=title)
    axes[1].set(xlabel="request rate (req/s)", ylabel="median ITL (ms)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _write(doc: dict[str, Any], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(doc, indent=1) + "\n")


def _policy(args: argparse.Namespace) -> int:
    from specops.cli import UsageError

    output = Path(args.output)
    if output.suffix != ".json":
        raise UsageError(f"--output must name a .json file, got {args.output!r}")
    doc = run_policy(_scenario(args))
    _write(doc, output)
    policy_plot(doc, output.with_suffix(".png"))
    print(policy_table(doc))
    print(f"\nwrote {output} and {output.with_suffix('.png')}")
    return 0


# ---------------------------------------------------------------- autoscaling


def _autoscaling(args: argparse.Namespace) -> int:
    from specops.cli import UsageError
    from specops.commands._bench_traces import autoscaling_table, plot_traces, run_traces

    output = Path(args.output)
    if output.suffix != ".json":
        raise UsageError(f"--output must name a .json file, got {args.output!r}")
    doc = run_traces(seed=args.seed)
    _write(doc, output)
    plot_traces(doc, output.with_suffix(".png"))
    print(autoscaling_table(doc))
    return 0


# ---------------------------------------------------------------- all


def _grid_one(item: tuple[str, str, int, str, float, str | None]) -> dict[str, Any]:
    from specops.commands._bench_policy import Scenario, run_scenario

    model, gpu, tp, profile, perturb, mirror = item
    return run_scenario(
        Scenario(
            model=model,
            gpu=gpu,
            tensor_parallel_size=tp,
            profile=profile,
            perturb=perturb,
            hub_mirror=mirror,
        )
    )


def _name(sc: dict[str, Any]) -> str:
    model = sc["model"].split("/")[-1]
    return f"policy-{model}-tp{sc['tensor_parallel_size']}-{sc['profile']}-p{sc['perturb']:g}"


def summary_markdown(docs: Sequence[dict[str, Any]], traces: dict[str, Any] | None) -> str:
    """Every scenario's goals in one table (and the autoscaling figures)."""
    lines = [
        "# SpecOps policy benchmark",
        "",
        "Regenerate with `make bench` (`python -m specops bench all --output out/bench`).",
        "Virtual time on the serving twin; see docs/policy.md for the method.",
        "",
        "| scenario | max ITL p50 / oracle | max latency p50 / oracle | max vs no-spec "
        "| sync share of best k | mean latency / best single k (oracle's) |",
        "|---|---|---|---|---|---|",
    ]
    for doc in docs:
        g = doc["goals"]
        lines.append(
            f"| {_name(doc['scenario'])} | {g['max_itl_p50_vs_oracle']:.3f} "
            f"| {g['max_latency_p50_vs_oracle']:.3f} | {g['max_vs_no_spec']:.3f} "
            f"| {g['sync_share_of_best_fixed']:.3f} "
            f"| {g['mean_latency_vs_best_single_k']:.3f} ({g['best_single_fixed_k']}; "
            f"oracle {g['oracle_mean_latency_vs_best_single_k']:.3f}) |"
        )
    lines += [
        "",
        "Goals: ITL and latency within 5% of the oracle at every point (<= 1.05); never more "
        "than 2% worse than no speculation (<= 1.02); at least 95% of the best fixed-k speedup "
        "at the synchronous point (>= 0.95); at least 5% better than the best single fixed k "
        "over the sweep (<= 0.95).",
    ]
    if traces is not None:
        from specops.commands._bench_traces import autoscaling_table

        lines += ["", "## Autoscaling traces", "", autoscaling_table(traces)]
    return "\n".join(lines) + "\n"


def _all(args: argparse.Namespace) -> int:
    from specops.commands._bench_traces import plot_traces, run_traces

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    mirror = args.hub_mirror or os.environ.get("SPECOPS_HUB_MIRROR")
    if mirror is None and (Path.cwd() / "tests" / "fixtures" / "hub").is_dir():
        mirror = str(Path.cwd() / "tests" / "fixtures" / "hub")
    items = [
        (model, gpu, tp, profile, perturb, mirror)
        for model, gpu, tp in GRID_MODELS
        for profile in GRID_PROFILES
        for perturb in GRID_PERTURB
    ]
    docs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for doc in pool.map(_grid_one, items):
            name = _name(doc["scenario"])
            _write(doc, out / f"{name}.json")
            policy_plot(doc, out / f"{name}.png")
            g = doc["goals"]
            print(
                f"{name}: vs oracle {g['max_latency_p50_vs_oracle']:.3f}, "
                f"vs no-spec {g['max_vs_no_spec']:.3f}, sync {g['sync_share_of_best_fixed']:.3f}"
            )
            docs.append(doc)
    traces = run_traces(seed=0)
    _write(traces, out / "autoscaling.json")
    plot_traces(traces, out / "autoscaling.png")
    summary = summary_markdown(docs, traces)
    (out / "summary.md").write_text(summary)
    print(summary)
    print(f"wrote {out}/")
    return 0
