"""Drive the load through the front door while watching the operator; then report.

The load runs in a worker thread with its own event loop (the generator is
asyncio); the main thread samples the resource's status and Prometheus
every few seconds and prints the live view. Every loop here ends: the load
at its schedule's end plus one request timeout, the sampling at the load's
end plus the cool-down.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from specops.demo import report, schedule, timeline
from specops.demo.stack import Stack, frontdoor
from specops.demo.values import DemoTiming
from specops.load import client
from specops.load.prompts import synthetic
from specops.load.stats import RequestRecord
from specops.prom.client import PromClient, PromError

Say = Callable[[str], None]


@dataclass(frozen=True)
class LoadOptions:
    duration_s: float = 180.0
    peak_rate: float = 64.0
    prompt_tokens: int = 256
    output_tokens: int = 128
    cooldown_s: float = 40.0
    sample_s: float = 3.0
    seed: int = 0
    request_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.peak_rate <= 0 or self.sample_s <= 0:
            raise ValueError("duration, peak rate and sample interval must be positive")
        if self.prompt_tokens < 1 or self.output_tokens < 2 or self.cooldown_s < 0:
            raise ValueError("need >= 1 prompt token, >= 2 output tokens, cool-down >= 0")


@dataclass
class LoadState:
    """Shared between the load thread and the sampler (appends only)."""

    t0: float
    records: list[tuple[int, RequestRecord]] = field(default_factory=list)
    sent: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    error: str = ""


async def _drive(
    endpoint: client.Endpoint, plan: list[schedule.Step], opts: LoadOptions, state: LoadState
) -> None:
    prompts = synthetic(64, opts.prompt_tokens, opts.seed)
    tasks: list[asyncio.Task[None]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(index: int, prompt: str) -> None:
            record = await client.send(session, endpoint, prompt)
            state.records.append((index, record))

        for n, (offset, index) in enumerate(schedule.arrivals(plan, opts.seed)):
            delay = state.t0 + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, prompts[n % len(prompts)])))
            state.sent += 1
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=opts.request_timeout_s + 5)


def _load_thread(
    endpoint: client.Endpoint, plan: list[schedule.Step], opts: LoadOptions, state: LoadState
) -> None:
    try:
        asyncio.run(_drive(endpoint, plan, opts, state))
    except Exception as exc:  # reported by the sampler, never a traceback
        state.error = f"{type(exc).__name__}: {exc}"
    finally:
        state.done.set()


def _selector(stack: Stack) -> str:
    return f'namespace="{stack.namespace}",app_kubernetes_io_instance="{stack.resource}"'


def prometheus_view(prom: PromClient, stack: Stack, window: str = "10s") -> dict[str, float | None]:
    """vLLM's view over the last window: mean ITL, tokens/s, acceptance, running."""
    sel = _selector(stack)

    def scalar(expr: str) -> float | None:
        try:
            samples = prom.query(expr)
        except PromError:
            return None
        if not samples:
            return None
        value = samples[0].value
        return None if value != value else value  # NaN: 0/0, nothing in the window

    itl = scalar(
        f"sum(rate(vllm:inter_token_latency_seconds_sum{{{sel}}}[{window}]))"
        f" / sum(rate(vllm:inter_token_latency_seconds_count{{{sel}}}[{window}]))"
    )
    return {
        "vllm_itl_ms": None if itl is None else itl * 1000,
        "tokens_per_s": scalar(f"sum(rate(vllm:generation_tokens_total{{{sel}}}[{window}]))"),
        "acceptance": scalar(
            f"sum(rate(vllm:spec_decode_num_accepted_tokens_total{{{sel}}}[{window}]))"
            f" / sum(rate(vllm:spec_decode_num_draft_tokens_total{{{sel}}}[{window}]))"
        ),
        "running": scalar(f"sum(vllm:num_requests_running{{{sel}}})"),
    }


def read_resource(api: Any, stack: Stack) -> dict[str, Any] | None:
    from kubernetes import client as k8s

    try:
        obj = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            "serving.specops.dev",
            "v1alpha1",
            stack.namespace,
            "speculativedeployments",
            stack.resource,
            _request_timeout=5,
        )
    except Exception:  # a hiccup shows as "not seen" in this sample
        return None
    return dict(obj)


def resource_events(api: Any, stack: Stack) -> list[dict[str, Any]]:
    from kubernetes import client as k8s

    events = k8s.CoreV1Api(api).list_namespaced_event(stack.namespace, _request_timeout=10)
    out = []
    for e in sorted(events.items, key=lambda e: str(e.last_timestamp or e.event_time or "")):
        obj = e.involved_object
        if obj.kind == "SpeculativeDeployment" and obj.name == stack.resource:
            out.append(
                {
                    "type": e.type,
                    "reason": e.reason,
                    "message": e.message,
                    "count": e.count or 1,
                    "last": str(e.last_timestamp or e.event_time or ""),
                }
            )
    return out


_FORBIDDEN = re.compile(r"\b403\b|Forbidden", re.IGNORECASE)


def operator_log_summary(log_dir: Path) -> dict[str, Any]:
    """Pods run, 403 lines and ERROR lines across the operator pods' logs."""
    pods, forbidden, errors = [], 0, 0
    for path in sorted(log_dir.glob("*.log")):
        pods.append(path.stem)
        for line in path.read_text(errors="replace").splitlines():
            forbidden += bool(_FORBIDDEN.search(line))
            errors += " ERROR " in line
    return {"pods": pods, "forbidden": forbidden, "errors": errors, "log_dir": str(log_dir)}


def error_kinds(records: list[RequestRecord]) -> dict[str, int]:
    """Failed requests by kind (the error text up to its first colon), most frequent first."""
    counts: dict[str, int] = {}
    for r in records:
        if r.error:
            kind = r.error.split(":", 1)[0].strip() or "error"
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def run(
    stack: Stack,
    opts: LoadOptions,
    *,
    timing: DemoTiming,
    output: Path,
    target_itl_ms: float | None,
    say: Say = print,
) -> Path:
    """Load, watch, report; returns the report's path."""
    door_key = f"{stack.namespace}/{stack.resource}"
    url, ready = frontdoor(stack.targets_dir, door_key)
    if url is None or ready == 0:
        raise RuntimeError("no ready replica behind the front door")
    endpoint = client.Endpoint(
        url=url,
        model=stack.model,
        output_tokens=opts.output_tokens,
        timeout_s=opts.request_timeout_s,
    )
    plan = schedule.steps(opts.duration_s, opts.peak_rate)
    from kubernetes import config

    api = config.new_client_from_config(config_file=stack.kubeconfig)
    prom = PromClient(stack.prometheus_url)
    state = LoadState(t0=time.monotonic() + 1.0)
    thread = threading.Thread(target=_load_thread, args=(endpoint, plan, opts, state), daemon=True)
    say(
        f"load: Poisson, rising to {opts.peak_rate:g} req/s and back over {opts.duration_s:.0f}s "
        f"via the front door {url} (then {opts.cooldown_s:.0f}s cool-down)"
    )
    say(timeline.HEADER)
    load_start = os.getloadavg()[0]
    thread.start()
    samples: list[timeline.Sample] = []
    last = state.t0
    end_by = state.t0 + opts.duration_s + opts.cooldown_s + opts.request_timeout_s + 10
    load_end: float | None = None
    while time.monotonic() < end_by:
        time.sleep(max(0.0, last + opts.sample_s - time.monotonic()))
        now = time.monotonic()
        if state.done.is_set() and load_end is None:
            load_end = now
        if (
            load_end is not None
            and now >= max(load_end, state.t0 + opts.duration_s) + opts.cooldown_s
        ):
            break
        t = now - state.t0
        step = schedule.step_at(plan, t)
        completed, errors, tpot = timeline.window_stats([r for _, r in state.records], last, now)
        fields: dict[str, Any] = timeline.status_fields(read_resource(api, stack))
        fields.update(prometheus_view(prom, stack))
        fields["serving_replicas"] = frontdoor(stack.targets_dir, door_key)[1]
        sample = timeline.Sample(
            t=t,
            offered_rate=step.rate if step else 0.0,
            completed_rate=completed,
            errors=errors,
            client_tpot_ms=tpot,
            **fields,
        )
        samples.append(sample)
        say(timeline.live_line(sample))
        last = now
    if state.error:
        say(f"load generator stopped early: {state.error}")
    events = resource_events(api, stack)
    api.close()
    operator = operator_log_summary(stack.operator_logs)
    summaries = timeline.summarise(plan, samples, state.records)
    changes = timeline.transitions(samples)
    output.mkdir(parents=True, exist_ok=True)
    meta = {
        "resource": f"{stack.namespace}/{stack.resource}",
        "model": stack.model,
        "gpu": "H100-80GB",
        "peak_rate": opts.peak_rate,
        "duration_s": opts.duration_s,
        "prompt_tokens": opts.prompt_tokens,
        "output_tokens": opts.output_tokens,
        "target_itl_ms": target_itl_ms,
        "window_s": timing.window_s,
        "evaluation_s": timing.evaluation_s,
        "kubeconfig": stack.kubeconfig,
        "prometheus_url": stack.prometheus_url,
        "requests_sent": state.sent,
        "requests_ok": sum(1 for _, r in state.records if r.ok),
        "load_error": state.error,
        "errors_by_kind": error_kinds([r for _, r in state.records]),
        "cpus": os.cpu_count(),
        "load_average": [round(load_start, 1), round(os.getloadavg()[0], 1)],
    }
    pngs = report.plots(samples, plan, output, target_itl_ms)
    text = report.markdown(
        meta=meta,
        summaries=summaries,
        changes=changes,
        events=events,
        operator=operator,
        plots=[str(p) for p in pngs],
    )
    path = output / "report.md"
    path.write_text(text)
    (output / "timeline.json").write_text(
        report.timeline_json(meta, plan, samples, changes, events, operator)
    )
    return path
