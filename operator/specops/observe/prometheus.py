"""Run the queries against Prometheus' HTTP API and assemble an Observation.

Thin on purpose: HTTP and JSON here, formulas in :mod:`.queries`, meaning in
:mod:`specops.policy`. Every query is evaluated at the same instant (the
``time`` parameter) so the numbers of one observation describe one window.
Prometheus unreachable gives an observation that saw nothing; one query
failing or returning no series leaves that quantity ``None`` and says why in
``missing``.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from specops.observe.queries import LabelNames, Queries, Selector, bucket_quantile
from specops.policy.observations import Acceptance, Observation

Vector = list[tuple[dict[str, str], float]]


class QueryError(RuntimeError):
    """Prometheus rejected one query (bad PromQL, timeout on its side)."""


class UnreachableError(RuntimeError):
    """Prometheus could not be reached at all."""


class PrometheusObserver:
    """Reads one Prometheus for the operator (any URL the operator is configured with)."""

    def __init__(
        self,
        url: str,
        labels: LabelNames | None = None,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Prometheus URL {url!r} is not an http(s) URL with a host")
        self.url = url.rstrip("/")
        self.labels = labels or LabelNames()
        self.timeout_s = timeout_s
        self.clock = clock

    def _instant(self, expr: str, at: float) -> Vector:
        params = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
        try:
            with urllib.request.urlopen(
                f"{self.url}/api/v1/query?{params}", timeout=self.timeout_s
            ) as resp:
                body: Any = json.load(resp)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise QueryError(f"HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise UnreachableError(str(getattr(exc, "reason", exc))) from exc
        if body.get("status") != "success":
            raise QueryError(f"{body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] != "vector":
            raise QueryError(f"expected a vector, got {data['resultType']}")
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def observe(self, namespace: str, name: str, window_s: float) -> Observation:
        """One observation of the deployment ``namespace/name`` over the last ``window_s``."""
        at = self.clock()
        queries = Queries(Selector(namespace, name, self.labels), window_s).all()
        results: dict[str, Vector] = {}
        missing: list[str] = []
        for key, expr in queries.items():
            try:
                results[key] = self._instant(expr, at)
            except UnreachableError as exc:
                return Observation.unavailable(at, window_s, f"Prometheus unreachable: {exc}")
            except QueryError as exc:
                missing.append(f"{key}: {exc}")
        return assemble(at, window_s, results, missing)


def _scalar(results: dict[str, Vector], key: str) -> float | None:
    vector = results.get(key)
    if not vector:
        return None
    value = vector[0][1]
    return value if math.isfinite(value) else None


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def assemble(
    at: float, window_s: float, results: dict[str, Vector], missing: list[str]
) -> Observation:
    """Turn query results into an Observation (pure; exposed for unit tests)."""
    missing = list(missing)

    failed = {entry.split(":", 1)[0] for entry in missing}

    def need(key: str, value: float | None, why: str = "no series") -> float | None:
        # a failed query is already listed with its error; an empty one says why here
        if value is None and not any(f.startswith(key) for f in failed):
            missing.append(f"{key}: {why}")
        return value

    replicas = int(_scalar(results, "replicas") or 0)
    if replicas == 0:
        missing.append("replicas: no pod reported vllm:num_requests_running in the window")
    running = need("running", _scalar(results, "running"))
    waiting = need("waiting", _scalar(results, "waiting"))
    kv = need("kv_cache_usage", _scalar(results, "kv_cache_usage"))
    gen = need("generation_tokens", _scalar(results, "generation_tokens"))
    finished = need("requests", _scalar(results, "requests"))
    tokens_per_step = need(
        "iteration_tokens",
        _ratio(
            _scalar(results, "iteration_tokens_sum"), _scalar(results, "iteration_tokens_count")
        ),
        "no engine steps in the window",
    )
    itl = need(
        "itl",
        _ratio(_scalar(results, "itl_sum"), _scalar(results, "itl_count")),
        "no tokens generated in the window",
    )
    ttft = need(
        "ttft",
        _ratio(_scalar(results, "ttft_sum"), _scalar(results, "ttft_count")),
        "no first tokens in the window",
    )

    def quantile(key: str, q: float, label: str) -> float | None:
        buckets = [(float(m.get("le", "nan")), v) for m, v in results.get(key, [])]
        buckets = [(b, v) for b, v in buckets if not math.isnan(b)]
        value, why = bucket_quantile(q, buckets)
        if value is None and key not in failed:
            missing.append(f"{label}: {why}")
        return value

    itl_p50 = quantile("itl_buckets", 0.5, "itl_p50")
    itl_p99 = quantile("itl_buckets", 0.99, "itl_p99")
    ttft_p99 = quantile("ttft_buckets", 0.99, "ttft_p99")

    drafts = _scalar(results, "drafts")
    positions = sorted(
        ((int(m.get("position", "-1")), v) for m, v in results.get("accepted_per_position", [])),
    )
    seen = {p: v for p, v in positions if p >= 0}
    k = max(seen) + 1 if seen else 0
    acceptance = None
    if drafts is not None and drafts > 0:
        accepted = _scalar(results, "accepted_tokens") or 0.0
        draft_tokens = _scalar(results, "draft_tokens")
        rate = _ratio(accepted, draft_tokens)
        if draft_tokens:
            # every draft proposes k tokens, so the two counters give k exactly
            k = max(k, round(draft_tokens / drafts))
        acceptance = Acceptance(
            acceptance_rate=rate if rate is not None else 0.0,
            mean_acceptance_length=1.0 + accepted / drafts,
            # a position never accepted in the window may have no series yet: it is 0
            per_position=tuple(seen.get(i, 0.0) / drafts for i in range(k)),
            drafts_per_s=drafts,
        )
    elif k:
        missing.append("acceptance: no drafts in the window (idle or speculation off)")
    return Observation(
        at=at,
        window_s=window_s,
        replicas_reporting=replicas,
        running_per_replica=running,
        waiting_per_replica=waiting,
        tokens_per_step=tokens_per_step,
        kv_cache_usage=kv,
        generation_tokens_per_s=gen,
        requests_per_s=finished,
        mean_itl_s=itl,
        mean_ttft_s=ttft,
        itl_p50_s=itl_p50,
        itl_p99_s=itl_p99,
        ttft_p99_s=ttft_p99,
        acceptance=acceptance,
        num_speculative_tokens=k,
        missing=tuple(missing),
    )
