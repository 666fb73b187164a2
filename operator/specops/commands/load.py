"""``specops load``: fixed concurrency, Poisson rate, or a GuideLLM-style sweep.

``specops load sweep --url URL --model NAME [--rates ...] --output DIR`` is a
fixed interface (README, benchmarks, CI): it writes ``DIR/report.json``,
``DIR/report.md`` and the PNG plots. Only loopback URLs are accepted; reach
a remote server through ``kubectl port-forward``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path
from typing import Any

from specops.commands._argtypes import positive_float, positive_int


def _rates(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("rates must be positive numbers")
    return values


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="base URL of the endpoint, e.g. http://127.0.0.1:8000")
    p.add_argument("--model", required=True, help="model name sent in each request")
    p.add_argument("--api", choices=("completions", "chat"), default="completions")
    p.add_argument("--prompts", type=Path, help="JSONL file with a 'prompt' field per line")
    p.add_argument("--prompt-tokens", type=positive_int, default=256, help="synthetic length")
    p.add_argument("--output-tokens", type=positive_int, default=128, help="fixed output")
    p.add_argument("--duration", type=positive_float, default=20.0, help="seconds per profile")
    p.add_argument("--max-requests", type=positive_int, default=200, help="per profile")
    p.add_argument("--timeout", type=positive_float, default=120.0, help="per request, s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, help="directory for report.json, report.md, plots")
    v = p.add_argument_group("virtual time (simulator library instead of --url)")
    v.add_argument("--virtual", action="store_true", help="simulate instead of sending")
    v.add_argument("--gpu", default="H100-80GB", help="simulated GPU type")
    v.add_argument("--hub-mirror", type=Path, help="directory of <org>/<repo>/config.json")
    v.add_argument(
        "--vllm-args",
        default="",
        help="vLLM flags for the simulated replica, one string "
        "(e.g. \"--tensor-parallel-size 1 --speculative-config '{...}'\")",
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("load", help="generate load and report latency/throughput")
    sub = parser.add_subparsers(dest="load_command", metavar="MODE")
    sub.required = True

    sweep = sub.add_parser("sweep", help="synchronous, throughput, then rates in between")
    _common(sweep)
    sweep.add_argument(
        "--rates",
        type=_rates,
        help="comma-separated Poisson rates (req/s) to run instead of the measured sweep",
    )
    sweep.add_argument("--points", type=positive_int, default=8, help="rates between the ends")
    sweep.add_argument("--throughput-concurrency", type=positive_int, default=64)
    sweep.set_defaults(func=_sweep)

    run = sub.add_parser("run", help="one profile: fixed concurrency or Poisson rate")
    _common(run)
    group = run.add_mutually_exclusive_group(required=True)
    group.add_argument("--concurrency", type=positive_int)
    group.add_argument("--rate", type=positive_float, help="Poisson arrivals per second")
    run.set_defaults(func=_run)


def _setup(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Validate shared options; return (run function, report metadata)."""
    from specops.cli import UsageError
    from specops.load import prompts as prompt_source
    from specops.load.runner import Bounds

    bounds = Bounds(duration_s=args.duration, max_requests=args.max_requests)
    try:
        prompts = (
            prompt_source.from_jsonl(args.prompts)
            if args.prompts
            else prompt_source.synthetic(args.max_requests, args.prompt_tokens, args.seed)
        )
    except prompt_source.PromptError as exc:
        raise UsageError(str(exc)) from None
    meta: dict[str, Any] = {
        "prompt_tokens": None if args.prompts else args.prompt_tokens,
        "prompts_file": str(args.prompts) if args.prompts else None,
        "output_tokens": args.output_tokens,
        "seed": args.seed,
        "bounds": {"duration_s": bounds.duration_s, "max_requests": bounds.max_requests},
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if args.virtual:
        from specops.load import virtual

        try:
            run = virtual.make_runner(
                model=args.model,
                gpu=args.gpu,
                vllm_args=args.vllm_args,
                hub_mirror=args.hub_mirror,
                prompts=prompts if args.prompts else None,
                prompt_tokens=args.prompt_tokens,
                output_tokens=args.output_tokens,
                bounds=bounds,
                seed=args.seed,
            )
        except virtual.VirtualError as exc:
            raise UsageError(str(exc)) from None
        meta["mode"] = "virtual"
        meta["target"] = {"model": args.model, "gpu": args.gpu, "vllm_args": args.vllm_args}
        return run, meta

    from specops.load.client import Endpoint
    from specops.load.runner import LiveRunner
    from specops.prom.loopback import require_loopback_url

    if not args.url:
        raise UsageError("--url is required (or --virtual)")
    try:
        require_loopback_url(args.url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    meta["mode"] = "live"
    meta["target"] = {"url": args.url, "model": args.model, "api": args.api}
    endpoint = Endpoint(
        url=args.url,
        model=args.model,
        output_tokens=args.output_tokens,
        api=args.api,
        timeout_s=args.timeout,
    )
    return LiveRunner(endpoint, prompts, bounds, args.seed), meta


def _finish(args: argparse.Namespace, meta: dict[str, Any], results: Any, t0: float) -> int:
    from specops.load import report

    meta["wall_s"] = round(time.monotonic() - t0, 3)
    doc = report.build(meta, results)
    if args.output:
        for path in report.write(doc, args.output):
            print(path)
    else:
        print(report.markdown(doc))
    return 0 if doc["totals"]["completed"] else 1


def _sweep(args: argparse.Namespace) -> int:
    from specops.cli import UsageError
    from specops.load import sweep
    from specops.load.progress import Progress
    from specops.load.schedule import rate_profiles

    if not args.output:
        raise UsageError("sweep needs --output DIR")
    run, meta = _setup(args)
    t0 = time.monotonic()
    if args.rates:
        progress = Progress(len(args.rates))
        run.progress = progress
        results = sweep.run_profiles(run, rate_profiles(args.rates), progress)
    else:
        progress = Progress(2 + args.points)
        run.progress = progress
        try:
            results = sweep.sweep(
                run,
                throughput_concurrency=args.throughput_concurrency,
                points=args.points,
                progress=progress,
            )
        except sweep.SweepError as exc:
            print(f"specops: error: {exc}", file=sys.stderr)
            return 1
    return _finish(args, meta, results, t0)


def _run(args: argparse.Namespace) -> int:
    from specops.load import sweep
    from specops.load.progress import Progress
    from specops.load.schedule import Profile

    run, meta = _setup(args)
    profile = (
        Profile(f"concurrency-{args.concurrency}", "concurrency", args.concurrency)
        if args.concurrency
        else Profile(f"rate-{args.rate:g}", "rate", args.rate)
    )
    progress = Progress(1)
    run.progress = progress
    t0 = time.monotonic()
    return _finish(args, meta, sweep.run_profiles(run, [profile], progress), t0)
