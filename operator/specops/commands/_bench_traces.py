"""Autoscaling traces: the policy driving a fleet of twin replicas through load shapes.

A fleet over tens of virtual minutes is too many engine steps for the
discrete-event engine to run in minutes on two cores, so the traces use a
*fluid* fleet on the same physics: every second, requests arrive at the
trace's rate, the front door spreads the requests in the system evenly over
the ready replicas, each replica runs ``min(share, max_num_seqs)`` of them
at the step time :func:`specops.perfmodel.decode_step_seconds` gives for the
twin's (perturbable) efficiencies, and completes ``batch x tokens/step /
step time / output length`` requests per second. New replicas serve nothing
for ``COLD_START_S``; a speculation switch restarts replicas one at a time,
each serving nothing for ``RESTART_S``. Every ``PERIOD_S`` the policy gets
an observation of that state (running and waiting per replica, ITL = step
time, acceptance from the profile) and its decision is applied.

The oracle autoscaler knows the trace and the true hardware: at every second
it runs the fewest replicas (with or without speculation, whichever is
cheaper) that keep the time per token under the SLO at that second's rate,
with no cold start. Static provisioning runs the oracle's peak all the time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from specops import gpus
from specops.perfmodel import Efficiencies, Replica, decode_step_seconds
from specops.policy.acceptance import PRIOR_ALPHA, AcceptanceProfile
from specops.policy.decide import ClusterState, PolicySpec, decide, initial_state
from specops.policy.observations import Acceptance, Observation
from specops.policy.physics import cost_model
from specops.policy.replicas import ReplicaSettings
from specops.policy.speculation import SpeculationSettings

PERIOD_S = 2.0
COLD_START_S = 180.0
"""Weights load, compile and CUDA graphs (calibration.md: 2-10 minutes)."""
RESTART_S = 120.0
SLO_TPOT_MS = 12.0
"""Time per output token the deployment promises (``targetITLMilliseconds``)."""
OUTPUT_TOKENS = 256
CONTEXT = 900.0
MAX_SEQS = 1024
MAX_REPLICAS = 24
BASE_RATE = 60.0
STABLE_WINDOW_S = 30.0
"""Stable window of the autoscaler in the traces (Knative's default is 60 s)."""
"""Requests/s of the steady base load (about three replicas' worth)."""


def _trace(kind: str) -> tuple[Callable[[float], float], float, dict[str, float]]:
    """(rate(t), duration_s, events) for a named load shape."""
    b = BASE_RATE
    if kind.startswith("step"):
        factor = {"step-1.5x": 1.5, "step-2x": 2.0, "step-4x": 4.0}[kind]
        return (lambda t: b if t < 600 else b * factor), 1500.0, {"step_at": 600.0}
    if kind == "ramp":
        return (lambda t: b * (1 + 3 * min(max(t - 300, 0) / 1200, 1.0))), 1800.0, {}
    if kind == "diurnal":
        # peak/mean = 2: rate = mean * (1 + sin), one "day" in 40 minutes
        return (
            (lambda t: 1.5 * b * (1 + math.sin(2 * math.pi * t / 2400 - math.pi / 2))),
            2400.0,
            {},
        )
    if kind == "bursty":
        # 2x bursts of 40 s every 5 minutes on top of the base
        return (
            (lambda t: b * (2.0 if t >= 600 and (t - 600) % 300 < 40 else 1.0)),
            1800.0,
            {"burst_at": 600.0},
        )
    if kind == "steady":
        return (lambda t: b), 1800.0, {}
    raise ValueError(f"unknown trace {kind!r}")


TRACES = ("steady", "step-1.5x", "step-2x", "step-4x", "ramp", "diurnal", "bursty")


@dataclass
class Pod:
    ready_at: float
    restarting_until: float = 0.0


@dataclass
class Fleet:
    replica: Replica
    truth: Efficiencies
    alpha: AcceptanceProfile
    pods: list[Pod] = field(default_factory=list)
    in_system: float = 0.0
    k: int = 0

    def ready(self, t: float) -> int:
        return sum(1 for p in self.pods if p.ready_at <= t and p.restarting_until <= t)

    def starting(self, t: float) -> int:
        return sum(1 for p in self.pods if p.ready_at > t)

    def step_s(self, batch: float, k: int) -> float:
        b = max(1, round(batch))
        return decode_step_seconds(self.replica, b, CONTEXT, k, self.truth)

    def tokens_per_step(self, k: int) -> float:
        return self.alpha.expected_tokens(k)

    def advance(self, t: float, rate: float, dt: float) -> dict[str, float]:
        """One tick of the fluid fleet; returns what a scrape would show."""
        self.in_system += rate * dt
        ready = self.ready(t)
        if ready == 0:
            return {
                "ready": 0,
                "running": 0.0,
                "waiting": self.in_system,
                "step_s": 0.0,
                "tpot": math.inf,
            }
        share = self.in_system / ready
        running = min(share, MAX_SEQS)
        step = self.step_s(running, self.k)
        per_step = self.tokens_per_step(self.k)
        done = ready * running * per_step / step / OUTPUT_TOKENS * dt
        self.in_system = max(0.0, self.in_system - done)
        return {
            "ready": ready,
            "running": running,
            "waiting": max(0.0, share - running),
            "step_s": step,
            "tpot": step / per_step,
            "finished": done / dt,
        }


def _oracle_capacity(fleet: Fleet) -> dict[int, float]:
    """Requests/s one replica completes at the largest batch meeting the SLO, per k."""
    out: dict[int, float] = {}
    for k in (0, 1, 2, 3, 4):
        per = fleet.alpha.expected_tokens(k)
        best = 0
        for b in (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024):
            step = decode_step_seconds(fleet.replica, b, CONTEXT, k, fleet.truth)
            if step / per * 1000 <= SLO_TPOT_MS:
                best = b
        if best:
            step = decode_step_seconds(fleet.replica, best, CONTEXT, k, fleet.truth)
            out[k] = best * per / step / OUTPUT_TOKENS
    return out


def _oracle_replicas(capacity: dict[int, float], rate: float) -> int:
    """Fewest replicas meeting the SLO at ``rate`` with the true hardware (best k)."""
    if not capacity:
        return MAX_REPLICAS
    return max(1, min(math.ceil(rate / mu) for mu in capacity.values()))


def run_trace(
    kind: str, replica: Replica, drafter_prior: float, truth: Efficiencies
) -> dict[str, Any]:
    rate_at, duration, events = _trace(kind)
    alpha = AcceptanceProfile.flat(0.8)
    spec = PolicySpec(
        cost=cost_model(replica),
        prior=AcceptanceProfile.flat(drafter_prior),
        mode="Auto",
        has_speculator=True,
        min_replicas=1,
        max_replicas=MAX_REPLICAS,
        target_itl_ms=SLO_TPOT_MS,
        prior_context=CONTEXT,
        max_batch=MAX_SEQS,
        window_s=300.0,
        speculation=SpeculationSettings(restart_s=RESTART_S),
        replicas=ReplicaSettings(stable_window_s=STABLE_WINDOW_S),
    )
    capacity = _oracle_capacity(Fleet(replica, truth, alpha))
    start_replicas = _oracle_replicas(capacity, rate_at(0))
    state = initial_state(spec, start_replicas)
    fleet = Fleet(replica, truth, alpha, [Pod(ready_at=0.0) for _ in range(start_replicas)])
    fleet.k = state.speculation.current_k
    history: list[Observation] = []
    t = 0.0
    timeline: list[dict[str, float]] = []
    scale_events: list[tuple[float, int]] = []
    spec_switches: list[float] = []
    gpu_seconds = 0.0
    oracle_gpu_seconds = 0.0
    oracle_peak = 0
    slo_ok = slo_total = 0
    last_tick: dict[str, float] = {}
    while t < duration:
        rate = rate_at(t)
        tick = fleet.advance(t, rate, 1.0)
        last_tick = tick
        gpu_seconds += len(fleet.pods) * replica.tp
        n_oracle = _oracle_replicas(capacity, rate)
        oracle_peak = max(oracle_peak, n_oracle)
        oracle_gpu_seconds += n_oracle * replica.tp
        if fleet.starting(t) == 0 and all(p.restarting_until <= t for p in fleet.pods):
            slo_total += 1
            slo_ok += int(tick["tpot"] * 1000 <= SLO_TPOT_MS and tick["waiting"] < 1.0)
        t += 1.0
        if t % PERIOD_S == 0:
            ready = int(tick["ready"])
            obs = (
                Observation(
                    at=t,
                    window_s=PERIOD_S,
                    replicas_reporting=ready,
                    running_per_replica=tick["running"],
                    waiting_per_replica=tick["waiting"],
                    mean_itl_s=tick["step_s"] or None,
                    requests_per_s=tick.get("finished"),
                    acceptance=_acceptance(alpha, fleet.k) if fleet.k and ready else None,
                    num_speculative_tokens=fleet.k,
                )
                if ready
                else Observation.unavailable(t, PERIOD_S, "no ready replica")
            )
            history.append(obs)
            history = history[-200:]
            cluster = ClusterState(ready=ready, starting=fleet.starting(t), unschedulable=0)
            d = decide(spec, history, state, t, cluster)
            state = d.state
            if d.replicas_changed:
                want = d.desired_replicas
                scale_events.append((t, want))
                while len(fleet.pods) < want:
                    fleet.pods.append(Pod(ready_at=t + COLD_START_S))
                while len(fleet.pods) > want:
                    fleet.pods.pop()
            if d.speculation_changed:
                spec_switches.append(t)
                fleet.k = d.num_speculative_tokens
                # rolling restart, one pod at a time
                for i, pod in enumerate(fleet.pods):
                    pod.restarting_until = t + (i + 1) * RESTART_S
        timeline.append(
            {
                "t": t,
                "rate": rate,
                "replicas": len(fleet.pods),
                "ready": tick["ready"],
                "oracle": n_oracle,
                "tpot_ms": min(tick["tpot"] * 1000, 1000.0),
                "k": fleet.k,
            }
        )
    del last_tick
    result: dict[str, Any] = {
        "trace": kind,
        "duration_s": duration,
        "gpu_hours": round(gpu_seconds / 3600, 3),
        "oracle_gpu_hours": round(oracle_gpu_seconds / 3600, 3),
        "static_peak_gpu_hours": round(oracle_peak * replica.tp * duration / 3600, 3),
        "slo_attainment_outside_cold_starts": round(slo_ok / slo_total, 4) if slo_total else None,
        "speculation_switches": len(spec_switches),
        "speculation_switches_per_5min": round(len(spec_switches) / (duration / 300), 3),
        "scale_events": scale_events,
        "timeline": timeline[::10],
    }
    counts = [start_replicas, *(n for _, n in scale_events)]
    directions = [1 if y > x else -1 for x, y in itertools.pairwise(counts)]
    reversals = sum(1 for x, y in itertools.pairwise(directions) if x != y)
    result["direction_reversals_per_10min"] = round(reversals / (duration / 600), 3)
    if "step_at" in events:
        first = next((e for e, n in scale_events if e >= events["step_at"]), None)
        result["decision_latency_s"] = None if first is None else first - events["step_at"]
    if "burst_at" in events:
        first = next((e for e, n in scale_events if e >= events["burst_at"]), None)
        result["decision_latency_s"] = None if first is None else first - events["burst_at"]
    return result


def _acceptance(profile: AcceptanceProfile, k: int) -> Acceptance:
    per_pos = []
    survive = 1.0
    for i in range(1, k + 1):
        survive *= profile.at(i)
        per_pos.append(survive)
    al = 1 + sum(per_pos)
    return Acceptance((al - 1) / k, al, tuple(per_pos), drafts_per_s=1.0)


def run_traces(seed: int = 0, perturb: float = 1.0) -> dict[str, Any]:
    """Every trace for Llama-3.1-8B + EAGLE-3 on H100 (seed kept for the interface)."""
    import json
    from pathlib import Path

    from specops import modelarch

    hub = Path.cwd() / "tests" / "fixtures" / "hub"

    def arch(repo: str) -> modelarch.ModelArch:
        return modelarch.from_config(json.loads((hub / repo / "config.json").read_text()))

    replica = Replica.build(
        arch("meta-llama/Llama-3.1-8B-Instruct"),
        gpus.CATALOGUE["H100-80GB"],
        1,
        arch("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"),
    )
    truth = replica.default_efficiencies().perturbed(perturb)
    results = [run_trace(k, replica, PRIOR_ALPHA["chat"], truth) for k in TRACES]
    return {
        "setup": {
            "model": "meta-llama/Llama-3.1-8B-Instruct + EAGLE-3",
            "gpu": "H100-80GB",
            "slo_tpot_ms": SLO_TPOT_MS,
            "cold_start_s": COLD_START_S,
            "restart_s": RESTART_S,
            "base_rate": BASE_RATE,
            "period_s": PERIOD_S,
            "seed": seed,
            "perturb": perturb,
        },
        "traces": results,
    }


def autoscaling_table(doc: dict[str, Any]) -> str:
    """One row per trace with the issue's figures."""
    rows = [
        "| trace | decision latency s | reversals /10 min | spec switches /5 min "
        "| SLO outside cold starts | GPU-h | oracle GPU-h | static peak GPU-h |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["traces"]:
        lat = r.get("decision_latency_s")
        rows.append(
            f"| {r['trace']} | {'-' if lat is None and 'decision_latency_s' not in r else lat} "
            f"| {r['direction_reversals_per_10min']} | {r['speculation_switches_per_5min']} "
            f"| {r['slo_attainment_outside_cold_starts']} | {r['gpu_hours']} "
            f"| {r['oracle_gpu_hours']} | {r['static_peak_gpu_hours']} |"
        )
    return "\n".join(rows)


def plot_traces(doc: dict[str, Any], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = doc["traces"]
    fig, axes = plt.subplots(len(traces), 1, figsize=(9, 2.2 * len(traces)), sharex=False)
    for ax, r in zip(axes, traces, strict=True):
        tl = r["timeline"]
        ts = [p["t"] / 60 for p in tl]
        ax.plot(ts, [p["replicas"] for p in tl], label="replicas (policy)")
        ax.plot(ts, [p["oracle"] for p in tl], "--", label="oracle")
        ax2 = ax.twinx()
        ax2.plot(ts, [p["rate"] for p in tl], ":", color="grey", label="req/s")
        ax.set_ylabel(r["trace"])
    axes[-1].set_xlabel("minutes")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


__all__ = ["TRACES", "autoscaling_table", "plot_traces", "run_traces"]
