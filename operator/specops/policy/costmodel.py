"""A replica's step time with and without speculation, fitted online.

The physics is the twin's (``specops.perfmodel``: a roofline of one vLLM
step), passed in as a function of ``(batch, context, k, efficiencies)``. What
the policy does not know is how efficiently the real hardware runs it, so the
efficiency terms are *fitted* from what Prometheus shows (mean ITL = step time,
at the observed batch, context and k), starting from the per-family priors.
The simulator's true parameters are never read: the benchmark perturbs them
and the fit has to find them.

The fit is a regularised least squares in log space (relative errors, so a
1 ms and a 100 ms step weigh the same), pulled toward the priors so that one
operating point cannot throw the terms it does not constrain somewhere
absurd. It is a few Gauss-Newton steps on a handful of parameters: cheap
enough to redo every evaluation from the window of observations, which keeps
:func:`specops.policy.decide.decide` a pure function.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from specops.policy.acceptance import AcceptanceProfile

E = TypeVar("E")

StepFunction = Callable[[float, float, int, E], float]
"""``(batch, mean context tokens, k, efficiencies) -> seconds per engine step``."""


@dataclass(frozen=True)
class OperatingPoint:
    """One observed step: what the fit is held to."""

    batch: float
    context: float
    k: int
    step_s: float
    weight: float = 1.0


@dataclass(frozen=True)
class Prediction:
    """What a replica would do at one batch size with ``k`` drafts (0 = off)."""

    k: int
    batch: float
    step_s: float
    tokens_per_step: float
    """Tokens emitted per sequence per step (acceptance length; 1 without speculation)."""

    @property
    def tpot_s(self) -> float:
        """Time per output token a user sees: step time / tokens per step."""
        return self.step_s / self.tokens_per_step

    @property
    def tokens_per_s(self) -> float:
        """Output tokens per second of one replica at this batch."""
        return self.batch * self.tokens_per_step / self.step_s


@dataclass(frozen=True)
class FittedCostModel(Generic[E]):
    """The step function with efficiencies fixed (the priors or a fit)."""

    step: StepFunction[E]
    efficiencies: E
    rms_log_error: float = 0.0
    points: int = 0

    def step_time(self, batch: float, context: float, k: int) -> float:
        """Seconds per engine step."""
        return self.step(max(batch, 1.0), max(context, 0.0), k, self.efficiencies)

    def predict(
        self, batch: float, context: float, k: int, profile: AcceptanceProfile
    ) -> Prediction:
        """Step time, tokens per step, TPOT and tokens/s for one candidate ``k``."""
        b = max(batch, 1.0)
        return Prediction(
            k=k,
            batch=b,
            step_s=self.step_time(b, context, k),
            tokens_per_step=profile.expected_tokens(k),
        )

    def max_batch_within(
        self,
        tpot_s: float,
        context: float,
        k: int,
        profile: AcceptanceProfile,
        limit: int = 4096,
    ) -> int:
        """Largest batch whose predicted TPOT stays within ``tpot_s`` (0 if even 1 does not).

        Step time grows with batch, so the TPOT is monotone and a bisection finds it.
        """
        if self.predict(1, context, k, profile).tpot_s > tpot_s:
            return 0
        lo, hi = 1, limit
        if self.predict(hi, context, k, profile).tpot_s <= tpot_s:
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.predict(mid, context, k, profile).tpot_s <= tpot_s:
                lo = mid
            else:
                hi = mid
        return lo


def _float_fields(obj: Any) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(obj)
        if isinstance(getattr(obj, f.name), float) and getattr(obj, f.name) > 0
    ]


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting; ``a`` is small and well conditioned."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        if abs(m[col][col]) < 1e-300:
            continue
        for r in range(n):
            if r != col:
                factor = m[r][col] / m[col][col]
                for c in range(col, n + 1):
                    m[r][c] -= factor * m[col][c]
    return [m[i][n] / m[i][i] if abs(m[i][i]) > 1e-300 else 0.0 for i in range(n)]


@dataclass(frozen=True)
class CostModel(Generic[E]):
    """The unfitted model: physics plus prior efficiencies (a frozen dataclass of floats).

    ``fields`` names the efficiency terms the fit may move (default: every
    positive float field). ``prior_strength`` is how many observations' worth
    of belief the priors carry; ``max_factor`` bounds how far any term may
    move from its prior, so a burst of odd samples cannot produce a model
    that predicts nonsense.
    """

    step: StepFunction[E]
    priors: E
    fields: tuple[str, ...] = ()
    prior_strength: float = 0.02
    max_factor: float = 2.0
    upper: tuple[tuple[str, float], ...] = ()
    """Hard ceilings per field (an efficiency fraction cannot exceed 1)."""

    def prior_model(self) -> FittedCostModel[E]:
        """The model before any observation."""
        return FittedCostModel(self.step, self.priors)

    def fit(self, points: Sequence[OperatingPoint], iterations: int = 8) -> FittedCostModel[E]:
        """Efficiencies that best explain the observed step times, regularised toward the priors."""
        usable = [
            p
            for p in points
            if p.step_s > 0 and p.batch > 0 and p.weight > 0 and math.isfinite(p.step_s)
        ]
        if not usable:
            return self.prior_model()
        names = list(self.fields) or _float_fields(self.priors)
        if not names:
            return self.prior_model()
        base = [float(getattr(self.priors, n)) for n in names]
        bound = math.log(self.max_factor)
        theta = [0.0] * len(names)

        ceilings = dict(self.upper)
        # Bounds in log space; a ceiling (efficiency <= 1) becomes an upper bound on theta,
        # so the fit never wanders where a term stops mattering and the prior drags it back.
        upper = [
            min(bound, math.log(ceilings[n] / b)) if n in ceilings else bound
            for n, b in zip(names, base, strict=True)
        ]

        def make(th: Sequence[float]) -> E:
            values = {
                n: min(b * math.exp(t), ceilings.get(n, math.inf))
                for n, b, t in zip(names, base, th, strict=True)
            }
            return dataclasses.replace(self.priors, **values)  # type: ignore[type-var]

        def residuals(th: Sequence[float]) -> list[float]:
            eff = make(th)
            out = []
            for p in usable:
                predicted = self.step(max(p.batch, 1.0), p.context, p.k, eff)
                out.append(math.sqrt(p.weight) * (math.log(p.step_s) - math.log(predicted)))
            return out

        lam = self.prior_strength
        current = residuals(theta)
        for _ in range(iterations):
            h = 1e-4
            columns = []
            for j in range(len(theta)):
                step = h if theta[j] + h <= upper[j] else -h  # never probe past a ceiling
                shifted = list(theta)
                shifted[j] += step
                r2 = residuals(shifted)
                columns.append([(b - a) / step for a, b in zip(current, r2, strict=True)])
            # Normal equations of  min |r(theta + d)|^2 + lam |theta + d|^2  with r linearised.
            n = len(theta)
            jtj = [[0.0] * n for _ in range(n)]
            jtr = [0.0] * n
            for a in range(n):
                for b in range(n):
                    jtj[a][b] = sum(x * y for x, y in zip(columns[a], columns[b], strict=True))
                jtj[a][a] += lam
                fit_pull = sum(x * y for x, y in zip(columns[a], current, strict=True))
                jtr[a] = -fit_pull - lam * theta[a]
            delta = _solve(jtj, jtr)

            def objective(th: Sequence[float], r: Sequence[float]) -> float:
                return sum(x * x for x in r) + lam * sum(t * t for t in th)

            before = objective(theta, current)
            scale = 1.0
            for _ in range(6):  # backtrack: a Gauss-Newton step may overshoot a ceiling
                trial = [
                    min(max(t + scale * d, -bound), hi)
                    for t, d, hi in zip(theta, delta, upper, strict=True)
                ]
                trial_r = residuals(trial)
                if objective(trial, trial_r) <= before:
                    break
                scale /= 2
            else:
                break
            moved = max(abs(a - b) for a, b in zip(trial, theta, strict=True))
            theta, current = trial, trial_r
            if moved < 1e-6:
                break
        rms = math.sqrt(sum(r * r for r in current) / len(current))
        return FittedCostModel(self.step, make(theta), rms_log_error=rms, points=len(usable))
