"""What the demo saw, second by second, and how it is summarised (pure).

A :class:`Sample` joins three views taken at the same moment: the load
generator's (what users sent and experienced), the resource's status (what
the operator decided and why) and Prometheus (what vLLM reported). Keeping
them in one row is what lets the report say "ITL crossed the target, then
the operator added a replica, for this reason".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from specops.demo.schedule import Step
from specops.load.stats import RequestRecord, percentile


@dataclass(frozen=True)
class Sample:
    """One moment of the demo; ``None`` means "not seen" (never zero by default)."""

    t: float
    """Seconds since the load started (negative: before, beyond the end: cool-down)."""
    offered_rate: float
    completed_rate: float | None = None
    errors: int = 0
    client_tpot_ms: float | None = None
    """Mean time per output token of requests finished since the last sample."""
    speculation_active: bool | None = None
    k: int | None = None
    speculation_reason: str | None = None
    speculation_message: str | None = None
    """The SpeculationActive condition's message: the numbers behind the decision."""
    desired_replicas: int | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    scale_reason: str | None = None
    serving_replicas: int | None = None
    """Replicas whose simulator answers /health behind the front door (loaded, responsive)."""
    acceptance: float | None = None
    """vLLM's acceptance rate (accepted / drafted) over the last window."""
    vllm_itl_ms: float | None = None
    """Mean of vLLM's inter-token-latency histogram over the last window (step time)."""
    tokens_per_s: float | None = None
    running: float | None = None


def status_fields(resource: dict[str, Any] | None) -> dict[str, Any]:
    """The operator's decision, read from a SpeculativeDeployment's status."""
    status = (resource or {}).get("status") or {}
    spec_status = status.get("speculation") or {}
    auto = status.get("autoscaling") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    active = spec_status.get("active")
    if active is None and "SpeculationActive" in conditions:
        active = conditions["SpeculationActive"].get("status") == "True"
    reason = spec_status.get("reason") or conditions.get("SpeculationActive", {}).get("reason")
    return {
        "speculation_active": active,
        "k": spec_status.get("numSpeculativeTokens"),
        "speculation_reason": reason,
        "speculation_message": conditions.get("SpeculationActive", {}).get("message"),
        "desired_replicas": auto.get("desiredReplicas"),
        "scale_reason": auto.get("reason"),
        "replicas": status.get("replicas"),
        "ready_replicas": status.get("readyReplicas"),
    }


def window_stats(
    records: Sequence[RequestRecord], since: float, until: float
) -> tuple[float | None, int, float | None]:
    """(completed req/s, errors, mean TPOT ms) of requests that ended in (since, until]."""
    if until <= since:
        return None, 0, None
    done = [r for r in records if since < r.end <= until]
    errors = sum(1 for r in records if r.error and since < (r.end or r.start) <= until)
    ok = [r for r in done if r.ok]
    tpots = [t for r in ok if (t := r.tpot) is not None]
    tpot = sum(tpots) / len(tpots) * 1000 if tpots else None
    return len(ok) / (until - since), errors, tpot


def _fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{unit}"


def speculation_text(active: bool | None, k: int | None) -> str:
    if active is None:
        return "?"
    if not active:
        return "off"
    return f"on k={k}" if k is not None else "on"


HEADER = (
    f"{'t(s)':>6} {'load':>6} {'done':>6} {'TPOT':>6} {'ITL':>6} {'tok/s':>7} "
    f"{'replicas':>8} {'spec':>8} {'accept':>6}  why"
)
"""Live view columns: offered and completed req/s, client TPOT and vLLM ITL (ms), replicas
serving behind the front door / ready pods / desired."""


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def live_line(sample: Sample) -> str:
    """One row of the live view."""
    repl = "/".join(
        _count(v) for v in (sample.serving_replicas, sample.ready_replicas, sample.desired_replicas)
    )
    why = " | ".join(x for x in (sample.speculation_reason, sample.scale_reason) if x)
    return (
        f"{sample.t:6.0f} {sample.offered_rate:6.1f} {_fmt(sample.completed_rate):>6} "
        f"{_fmt(sample.client_tpot_ms):>6} {_fmt(sample.vllm_itl_ms):>6} "
        f"{_fmt(sample.tokens_per_s, 0):>7} {repl:>8} "
        f"{speculation_text(sample.speculation_active, sample.k):>8} "
        f"{_fmt(sample.acceptance, 2):>6}  {why}"
    )


@dataclass(frozen=True)
class Transition:
    """A change in the operator's decision, as the status showed it."""

    t: float
    what: str
    before: str
    after: str
    reason: str
    message: str = ""


def transitions(samples: Sequence[Sample]) -> list[Transition]:
    """Every change of speculation (on/off, k) or desired replicas, with the reason shown."""
    out: list[Transition] = []
    previous: Sample | None = None
    for s in samples:
        if previous is not None:
            before = speculation_text(previous.speculation_active, previous.k)
            after = speculation_text(s.speculation_active, s.k)
            if s.speculation_active is not None and before != after:
                out.append(
                    Transition(
                        s.t,
                        "speculation",
                        before,
                        after,
                        s.speculation_reason or "",
                        s.speculation_message or "",
                    )
                )
            if (
                s.desired_replicas is not None
                and previous.desired_replicas is not None
                and s.desired_replicas != previous.desired_replicas
            ):
                out.append(
                    Transition(
                        s.t,
                        "replicas",
                        str(previous.desired_replicas),
                        str(s.desired_replicas),
                        s.scale_reason or "",
                    )
                )
        if s.speculation_active is not None or s.desired_replicas is not None:
            previous = s
    return out


@dataclass(frozen=True)
class StepSummary:
    """One load plateau as the report's table shows it."""

    step: Step
    completed_rate: float | None
    errors: int
    tpot_p50_ms: float | None
    vllm_itl_ms: float | None
    tokens_per_s: float | None
    replicas: str
    speculation: str
    acceptance: float | None
    reasons: list[str] = field(default_factory=list)


def _mean(values: Sequence[float | None]) -> float | None:
    seen = [v for v in values if v is not None and not math.isnan(v)]
    return sum(seen) / len(seen) if seen else None


def _spread(values: Sequence[Any]) -> str:
    """ "2" when constant, "1→2" when it changed during the step, "-" when unseen."""
    seen: list[str] = []
    for v in values:
        if v is not None and (not seen or seen[-1] != str(v)):
            seen.append(str(v))
    return "→".join(seen) if seen else "-"


def summarise(
    plan: Sequence[Step], samples: Sequence[Sample], records: Sequence[tuple[int, RequestRecord]]
) -> list[StepSummary]:
    """Per step: what was asked, what came back, what the operator ran meanwhile."""
    out = []
    for step in plan:
        inside = [s for s in samples if step.start <= s.t < step.end]
        mine = [r for i, r in records if i == step.index]
        ok = [r for r in mine if r.ok]
        width = step.end - step.start
        tpots = [t * 1000 for r in ok if (t := r.tpot) is not None]
        reasons: list[str] = []
        for s in inside:
            for reason in (s.speculation_reason, s.scale_reason):
                if reason and reason not in reasons:
                    reasons.append(reason)
        out.append(
            StepSummary(
                step=step,
                completed_rate=len(ok) / width if width > 0 else None,
                errors=sum(1 for r in mine if r.error),
                tpot_p50_ms=percentile(tpots, 50) if tpots else None,
                vllm_itl_ms=_mean([s.vllm_itl_ms for s in inside]),
                tokens_per_s=_mean([s.tokens_per_s for s in inside]),
                replicas=_spread([s.ready_replicas for s in inside]),
                speculation=_spread(
                    [
                        speculation_text(s.speculation_active, s.k)
                        for s in inside
                        if s.speculation_active is not None
                    ]
                ),
                acceptance=_mean([s.acceptance for s in inside]),
                reasons=reasons,
            )
        )
    return out
