"""The handful of Prometheus HTTP API calls tests need, typed.

Deliberately small: the operator's real reader is :mod:`specops.observe`.
This one exists so integration tests can ask "is that target up?" and "what
did Prometheus scrape?" without depending on the policy code under test.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from specops.prom.loopback import require_loopback_url


class PromError(RuntimeError):
    """Prometheus answered with an error, or could not be reached."""


@dataclass(frozen=True)
class Sample:
    """One instant-vector element, or one series of a range query (``values``)."""

    labels: dict[str, str]
    value: float
    values: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Target:
    """One active scrape target as ``/api/v1/targets`` reports it."""

    labels: dict[str, str]
    scrape_url: str
    health: str
    last_error: str
    job: str


class PromClient:
    """Synchronous client for one loopback Prometheus."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = require_loopback_url(url).rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: dict[str, str]) -> Any:
        query = urllib.parse.urlencode(params)
        full = f"{self.url}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(full, timeout=self.timeout_s) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise PromError(f"{path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise PromError(f"{path}: {exc}") from exc
        if body.get("status") != "success":
            raise PromError(f"{path}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[Sample]:
        """Instant query; scalars come back as one sample without labels."""
        data = self._get("/api/v1/query", {"query": expr})
        if data["resultType"] in ("scalar", "string"):
            return [Sample(labels={}, value=float(data["result"][1]))]
        return [Sample(labels=r["metric"], value=float(r["value"][1])) for r in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Sample]:
        """Range query; ``value`` is the last point, ``values`` all of them."""
        data = self._get(
            "/api/v1/query_range",
            {"query": expr, "start": str(start), "end": str(end), "step": str(step_s)},
        )
        out = []
        for r in data["result"]:
            points = tuple((float(t), float(v)) for t, v in r["values"])
            out.append(Sample(labels=r["metric"], value=points[-1][1], values=points))
        return out

    def targets(self, job: str | None = None) -> list[Target]:
        """Active targets, optionally of one job."""
        data = self._get("/api/v1/targets", {"state": "active"})
        out = []
        for t in data["activeTargets"]:
            labels = t["labels"]
            if job is not None and labels.get("job") != job:
                continue
            out.append(
                Target(
                    labels=labels,
                    scrape_url=t["scrapeUrl"],
                    health=t["health"],
                    last_error=t.get("lastError", ""),
                    job=labels.get("job", ""),
                )
            )
        return out
