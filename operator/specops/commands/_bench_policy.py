"""The policy sweep: SpecOps against fixed settings and the oracle, in virtual time.

One scenario is a model, a GPU, a tensor-parallel size, an acceptance profile
(or flat alpha) and a hardware perturbation. The twin (``specops.sim``)
serves a GuideLLM-style sweep: a synchronous run, 8 constant Poisson rates
evenly spaced between the synchronous and the no-speculation throughput
rate, and a throughput run. At each point every fixed strategy (no
speculation, k = 1..5) runs the same requests (same seed); the oracle is
the best of them in hindsight (lowest median request latency); SpecOps runs
the policy against what the twin's metrics would show.

How SpecOps runs: the policy's state carries over from one point to the
next as the load grows (as it would in production). At each point the twin
serves the policy's current setting; every ``WINDOW_S`` of virtual time the
step results become an :class:`~specops.policy.observations.Observation`
(vLLM's formulas on the same counters the exporter would publish) and
``decide()`` runs. If it switches, the point is served again with the new
setting and that run is reported: the switch's restart transient is not in
the sweep (it is a steady-state comparison); the trace benchmark covers
transients. The cost model starts from the GPU family's priors and fits the
efficiency terms from those observations; the twin may run perturbed
hardware (``--perturb F``: every efficiency ``F`` times slower), which the
policy is never told.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from specops.policy.acceptance import PRIOR_ALPHA, AcceptanceProfile
from specops.policy.decide import PolicySpec, PolicyState, decide, initial_state
from specops.policy.observations import Acceptance, Observation
from specops.policy.physics import cost_model
from specops.policy.speculation import SpeculationSettings
from specops.sim.args import SimArgsError, build_replica, parse_serve_args
from specops.sim.engine import EngineConfig, SimulationResult, StepResult, Workload, simulate

WINDOW_S = 10.0
"""Virtual seconds per observation (an evaluation period)."""

FIXED_K = (1, 2, 3, 4, 5)
METRICS = (
    "itl_p50_ms",
    "itl_p99_ms",
    "latency_p50_s",
    "latency_p99_s",
    "ttft_p99_s",
    "throughput_tok_s",
)


class BenchError(ValueError):
    """A scenario that cannot run (unknown model, no speculator for it, ...)."""


@dataclass(frozen=True)
class Scenario:
    """What one ``specops bench policy`` run compares."""

    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    gpu: str = "H100-80GB"
    tensor_parallel_size: int = 1
    profile: str | None = "code"
    alpha: float | None = None
    perturb: float = 1.0
    seed: int = 0
    table: bool = True
    """Let the policy render vLLM's dynamic speculation table (vLLM >= 0.33 supports it)."""
    hub_mirror: str | None = None
    max_model_len: int = 4096
    prompt_tokens: tuple[int, int] = (256, 1024)
    output_tokens: tuple[int, int] = (128, 384)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "gpu": self.gpu,
            "tensor_parallel_size": self.tensor_parallel_size,
            "profile": None if self.alpha is not None else self.profile,
            "alpha": self.alpha,
            "perturb": self.perturb,
            "seed": self.seed,
            "dynamic_table": self.table,
            "prompt_tokens": list(self.prompt_tokens),
            "output_tokens": list(self.output_tokens),
            "window_s": WINDOW_S,
        }


def _default_mirror() -> str | None:
    env = os.environ.get("SPECOPS_HUB_MIRROR")
    if env:
        return env
    here = Path.cwd() / "tests" / "fixtures" / "hub"
    return str(here) if here.is_dir() else None


def _speculator_for(model: str, mirror: str | None) -> str:
    """The fixture speculator whose verifier is ``model`` (or ``model`` if it is one)."""
    if mirror is None:
        raise BenchError("no hub mirror: pass --hub-mirror or set SPECOPS_HUB_MIRROR")
    import json

    root = Path(mirror)
    own = root / model / "config.json"
    if own.is_file() and "speculators_config" in json.loads(own.read_text()):
        return model
    for path in sorted(root.glob("*/*/config.json")):
        try:
            cfg = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        verifier = cfg.get("speculators_config", {}).get("verifier", {}).get("name_or_path")
        if verifier == model:
            return f"{path.parent.parent.name}/{path.parent.name}"
    raise BenchError(
        f"no speculator for {model!r} in {mirror} (a speculator's verifier must name it)"
    )


def engine_config(scenario: Scenario) -> tuple[EngineConfig, EngineConfig]:
    """(twin config with k=3, the same replica built for the policy's priors)."""
    mirror = scenario.hub_mirror or _default_mirror()
    speculator = _speculator_for(scenario.model, mirror)
    argv = [
        speculator,
        "--gpu",
        scenario.gpu,
        "--tensor-parallel-size",
        str(scenario.tensor_parallel_size),
        "--max-model-len",
        str(scenario.max_model_len),
        "--seed",
        str(scenario.seed),
    ]
    if mirror:
        argv += ["--hub-mirror", mirror]
    if scenario.alpha is not None:
        argv += ["--alpha", str(scenario.alpha)]
    elif scenario.profile:
        argv += ["--acceptance-profile", scenario.profile]
    try:
        built = build_replica(parse_serve_args(argv)).engine
    except SimArgsError as exc:
        raise BenchError(str(exc)) from None
    twin = replace(
        built, efficiencies=built.replica.default_efficiencies().perturbed(scenario.perturb)
    )
    return twin, built


# ---------------------------------------------------------------- observations


@dataclass
class _Window:
    start: float
    busy: float = 0.0
    running_time: float = 0.0
    waiting_time: float = 0.0
    kv_time: float = 0.0
    steps: int = 0
    tokens: int = 0
    itl_sum: float = 0.0
    itl_count: int = 0
    ttft_sum: float = 0.0
    ttft_count: int = 0
    generated: int = 0
    finished: int = 0
    drafts: int = 0
    draft_tokens: int = 0
    accepted: int = 0
    per_position: list[int] = field(default_factory=list)
    k_steps: dict[int, int] = field(default_factory=dict)


class Recorder:
    """Turns engine steps into per-window Observations, as Prometheus would show them."""

    def __init__(self, offset: float, window_s: float = WINDOW_S) -> None:
        self.offset = offset
        self.window_s = window_s
        self.windows: list[_Window] = []

    def _window(self, t: float) -> _Window:
        index = int(t // self.window_s)
        while len(self.windows) <= index:
            self.windows.append(_Window(start=len(self.windows) * self.window_s))
        return self.windows[index]

    def __call__(self, step: StepResult) -> None:
        w = self._window(step.start)
        dt = step.end - step.start
        w.busy += dt
        w.running_time += step.running * dt
        w.waiting_time += step.waiting * dt
        w.kv_time += step.kv_usage * dt
        w.steps += 1
        w.tokens += step.prompt_tokens + step.generation_tokens
        w.generated += step.generation_tokens
        w.drafts += step.drafts
        w.draft_tokens += step.draft_tokens
        w.accepted += step.accepted_tokens
        for i, n in enumerate(step.accepted_per_position):
            while len(w.per_position) <= i:
                w.per_position.append(0)
            w.per_position[i] += n
        w.k_steps[step.k] = w.k_steps.get(step.k, 0) + 1
        for event in step.events:
            if event.finished:
                w.finished += 1
            if event.first:
                w.ttft_sum += step.end - event.request.arrival
                w.ttft_count += 1
            else:
                w.itl_sum += step.end - event.previous_token_at
                w.itl_count += 1

    def observations(self, until: float | None = None) -> list[Observation]:
        """One observation per complete window (the last partial one is dropped)."""
        out = []
        for w in self.windows:
            if until is not None and w.start + self.window_s > until + 1e-9:
                break
            span = self.window_s
            acceptance = None
            if w.drafts:
                acceptance = Acceptance(
                    acceptance_rate=w.accepted / w.draft_tokens if w.draft_tokens else 0.0,
                    mean_acceptance_length=1 + w.accepted / w.drafts,
                    per_position=tuple(n / w.drafts for n in w.per_position),
                    drafts_per_s=w.drafts / span,
                )
            k = max(w.k_steps, key=lambda key: w.k_steps[key]) if w.k_steps else 0
            out.append(
                Observation(
                    at=self.offset + w.start + span,
                    window_s=span,
                    replicas_reporting=1,
                    running_per_replica=w.running_time / span,
                    waiting_per_replica=w.waiting_time / span,
                    tokens_per_step=w.tokens / w.steps if w.steps else None,
                    kv_cache_usage=w.kv_time / span,
                    generation_tokens_per_s=w.generated / span,
                    requests_per_s=w.finished / span,
                    mean_itl_s=w.itl_sum / w.itl_count if w.itl_count else None,
                    mean_ttft_s=w.ttft_sum / w.ttft_count if w.ttft_count else None,
                    acceptance=acceptance,
                    num_speculative_tokens=k,
                )
            )
        return out


# ---------------------------------------------------------------- metrics


def metrics_of(result: SimulationResult) -> dict[str, float]:
    """GuideLLM's numbers: ITL = time per output token after the first, per request."""
    return {
        "itl_p50_ms": round(result.percentile("tpot", 50) * 1000, 4),
        "itl_p99_ms": round(result.percentile("tpot", 99) * 1000, 4),
        "latency_p50_s": round(result.percentile("e2e", 50), 5),
        "latency_p99_s": round(result.percentile("e2e", 99), 5),
        "ttft_p99_s": round(result.percentile("ttft", 99), 5),
        "throughput_tok_s": round(result.output_tokens_per_second, 2),
    }


@dataclass(frozen=True)
class Point:
    """One load of the sweep."""

    kind: str
    """``synchronous``, ``rate`` or ``throughput``."""
    workload: Workload
    rate: float


def _workload(scenario: Scenario, n: int, **kw: Any) -> Workload:
    return Workload(n, scenario.prompt_tokens, scenario.output_tokens, seed=scenario.seed, **kw)


def sweep_points(scenario: Scenario, twin: EngineConfig) -> tuple[list[Point], dict[str, Any]]:
    """Synchronous, 8 rates between, throughput (GuideLLM's sweep) on the no-spec baseline."""
    base = replace(twin, num_speculative_tokens=0, k_by_batch_size=())
    sync = _workload(scenario, 24, concurrency=1)
    conc = min(twin.max_num_seqs, 512)
    thr = _workload(scenario, conc, concurrency=conc)
    sync_rate = simulate(base, sync).requests_per_second
    max_rate = simulate(base, thr).requests_per_second
    lo, hi = sorted((sync_rate, max_rate))
    step = (hi - lo) / 9
    points = [Point("synchronous", sync, sync_rate)]
    for i in range(1, 9):
        rate = lo + step * i
        n = max(40, min(320, round(rate * 40)))
        points.append(Point("rate", _workload(scenario, n, rate=rate), rate))
    points.append(Point("throughput", thr, max_rate))
    return points, {"synchronous_rate": sync_rate, "throughput_rate": max_rate}


# ---------------------------------------------------------------- the policy


def policy_spec(scenario: Scenario, priors_config: EngineConfig) -> PolicySpec:
    """What the operator would hand ``decide()`` for this deployment (priors only)."""
    alpha = PRIOR_ALPHA.get(scenario.profile or "", PRIOR_ALPHA["chat"])
    blocks = priors_config.num_gpu_blocks * priors_config.block_size
    return PolicySpec(
        cost=cost_model(priors_config.replica),
        prior=AcceptanceProfile.flat(alpha),
        mode="Auto",
        has_speculator=True,
        per_batch_size_table=scenario.table,
        table_supported=scenario.table,
        prior_context=float(sum(scenario.prompt_tokens) / 2 + sum(scenario.output_tokens) / 4),
        kv_capacity_tokens=float(blocks),
        max_batch=min(priors_config.max_num_seqs, 1024),
        window_s=300.0,
        speculation=SpeculationSettings(
            # the sweep compares steady-state choices: timing guards are the trace bench's job
            dwell_s=2 * WINDOW_S,
            min_switch_interval_s=0.0,
            restart_s=0.0,
        ),
    )


def configure(twin: EngineConfig, state: PolicyState) -> EngineConfig:
    """The twin running what the policy decided."""
    sp = state.speculation
    if not sp.active:
        return replace(twin, num_speculative_tokens=0, k_by_batch_size=())
    if state.table is not None:
        return replace(twin, num_speculative_tokens=sp.k, k_by_batch_size=state.table)
    return replace(twin, num_speculative_tokens=sp.k, k_by_batch_size=())


@dataclass
class PolicyRun:
    """The policy's life across the sweep."""

    spec: PolicySpec
    state: PolicyState
    clock: float = 0.0
    history: list[Observation] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)

    def serve(self, twin: EngineConfig, workload: Workload, max_runs: int = 3) -> SimulationResult:
        """Serve one point; re-serve it after each switch (up to ``max_runs``)."""
        result: SimulationResult | None = None
        for _ in range(max_runs):
            recorder = Recorder(self.clock)
            result = simulate(configure(twin, self.state), workload, observer=recorder)
            switched = False
            for obs in recorder.observations(result.duration):
                self.history.append(obs)
                self.history = self.history[-120:]
                d = decide(self.spec, self.history, self.state, obs.at)
                self.state = d.state
                if d.speculation_changed:
                    sp = d.state.speculation
                    self.log.append(
                        {
                            "at": round(obs.at, 1),
                            "active": sp.active,
                            "k": sp.k,
                            "reason": sp.reason,
                            "table": [list(b) for b in d.state.table or ()],
                        }
                    )
                    switched = True
                    break
            self.clock += max(result.duration, WINDOW_S)
            if not switched:
                break
        assert result is not None
        return result


def run_scenario(
    scenario: Scenario, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The JSON document ``specops bench policy`` writes."""
    twin, priors_config = engine_config(scenario)
    points, ends = sweep_points(scenario, twin)
    spec = policy_spec(scenario, priors_config)
    policy = PolicyRun(spec, initial_state(spec, replicas=1))
    out_points = []
    for point in points:
        strategies: dict[str, dict[str, float]] = {}
        strategies["no-spec"] = metrics_of(
            simulate(replace(twin, num_speculative_tokens=0, k_by_batch_size=()), point.workload)
        )
        for k in FIXED_K:
            strategies[f"k={k}"] = metrics_of(
                simulate(
                    replace(twin, num_speculative_tokens=k, k_by_batch_size=()), point.workload
                )
            )
        strategies["specops"] = metrics_of(policy.serve(twin, point.workload))
        fixed = ["no-spec", *(f"k={k}" for k in FIXED_K)]
        best = min(
            fixed, key=lambda s: (strategies[s]["latency_p50_s"], strategies[s]["itl_p50_ms"])
        )
        strategies["oracle"] = dict(strategies[best])
        sp = policy.state.speculation
        out_points.append(
            {
                "kind": point.kind,
                "rate": round(point.rate, 4),
                "requests": point.workload.num_requests,
                "oracle_choice": best,
                "specops_choice": (
                    ("table" if policy.state.table else f"k={sp.k}") if sp.active else "no-spec"
                ),
                "strategies": strategies,
            }
        )
        if progress:
            progress(f"{point.kind} {point.rate:.2f} req/s: oracle {best}")
    model = policy.state
    return {
        "scenario": scenario.describe(),
        "sweep": {k: round(v, 4) for k, v in ends.items()},
        "points": out_points,
        "policy": {
            "switches": policy.log,
            "final": {
                "active": model.speculation.active,
                "k": model.speculation.k,
                "reason": model.speculation.reason,
                "table": [list(b) for b in model.table or ()],
            },
        },
        "goals": goals(out_points),
    }


# ---------------------------------------------------------------- goals


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


def goals(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals, measured (ratios > 1 mean SpecOps is slower)."""
    vs_oracle_itl = [
        _ratio(p["strategies"]["specops"]["itl_p50_ms"], p["strategies"]["oracle"]["itl_p50_ms"])
        for p in points
    ]
    vs_oracle_lat = [
        _ratio(
            p["strategies"]["specops"]["latency_p50_s"], p["strategies"]["oracle"]["latency_p50_s"]
        )
        for p in points
    ]
    vs_nospec = [
        max(
            _ratio(
                p["strategies"]["specops"]["itl_p50_ms"], p["strategies"]["no-spec"]["itl_p50_ms"]
            ),
            _ratio(
                p["strategies"]["specops"]["latency_p50_s"],
                p["strategies"]["no-spec"]["latency_p50_s"],
            ),
        )
        for p in points
    ]
    sync = points[0]["strategies"]
    base = sync["no-spec"]["latency_p50_s"]
    best_fixed = max(_ratio(base, sync[f"k={k}"]["latency_p50_s"]) for k in FIXED_K)
    ours = _ratio(base, sync["specops"]["latency_p50_s"])
    # mean over the sweep of SpecOps' latency relative to each fixed k; the best single
    # fixed k is the one SpecOps has the hardest time beating
    per_k = {}
    for k in FIXED_K:
        ratios = [
            _ratio(
                p["strategies"]["specops"]["latency_p50_s"],
                p["strategies"][f"k={k}"]["latency_p50_s"],
            )
            for p in points
        ]
        per_k[f"k={k}"] = sum(ratios) / len(ratios)
    best_single = max(per_k, key=lambda key: per_k[key])
    oracle_vs_single = [
        _ratio(
            p["strategies"]["oracle"]["latency_p50_s"],
            p["strategies"][best_single]["latency_p50_s"],
        )
        for p in points
    ]
    return {
        "max_itl_p50_vs_oracle": round(max(vs_oracle_itl), 4),
        "max_latency_p50_vs_oracle": round(max(vs_oracle_lat), 4),
        "within_5pct_of_oracle_at_every_point": max(vs_oracle_itl + vs_oracle_lat) <= 1.05,
        "max_vs_no_spec": round(max(vs_nospec), 4),
        "never_2pct_worse_than_no_spec": max(vs_nospec) <= 1.02,
        "sync_speedup_specops": round(ours, 4),
        "sync_speedup_best_fixed_k": round(best_fixed, 4),
        "sync_share_of_best_fixed": round(ours / best_fixed, 4),
        "sync_at_least_95pct_of_best_fixed": ours >= 0.95 * best_fixed,
        "best_single_fixed_k": best_single,
        "mean_latency_vs_best_single_k": round(per_k[best_single], 4),
        "at_least_5pct_better_than_best_single_k": per_k[best_single] <= 0.95,
        "oracle_mean_latency_vs_best_single_k": round(
            sum(oracle_vs_single) / len(oracle_vs_single), 4
        ),
    }
