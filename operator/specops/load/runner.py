"""Run load profiles against a live endpoint, bounded in time and request count.

Each profile stops issuing requests at ``duration_s`` or ``max_requests``,
whichever comes first, then waits for what is in flight (each request has
its own timeout), so a sweep's wall time is bounded by the settings alone.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from specops.load import client
from specops.load.progress import Progress
from specops.load.schedule import Profile, poisson_arrivals
from specops.load.stats import RequestRecord

Tick = Callable[[int, int, float], None]
"""Progress callback: (finished, planned, elapsed seconds)."""


@dataclass(frozen=True)
class Bounds:
    """Per-profile limits."""

    duration_s: float = 20.0
    max_requests: int = 200

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.max_requests < 1:
            raise ValueError("a profile needs a positive duration and at least one request")


async def run_profile(
    endpoint: client.Endpoint,
    profile: Profile,
    prompts: Sequence[str],
    bounds: Bounds,
    seed: int,
    tick: Tick | None = None,
) -> list[RequestRecord]:
    """Run one profile and return every request's record (including failures)."""
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    records: list[RequestRecord] = []
    prompt_cycle = itertools.cycle(prompts)
    started = time.monotonic()
    deadline = started + bounds.duration_s

    def note(record: RequestRecord, planned: int) -> None:
        records.append(record)
        if tick is not None:
            tick(len(records), planned, time.monotonic() - started)

    async with aiohttp.ClientSession(connector=connector) as session:
        if profile.kind == "concurrency":
            issued = 0

            async def worker() -> None:
                nonlocal issued
                while time.monotonic() < deadline and issued < bounds.max_requests:
                    issued += 1
                    note(
                        await client.send(session, endpoint, next(prompt_cycle)),
                        bounds.max_requests,
                    )

            await asyncio.gather(*(worker() for _ in range(int(profile.value))))
        else:
            arrivals = poisson_arrivals(profile.value, bounds.duration_s, bounds.max_requests, seed)
            tasks: list[asyncio.Task[None]] = []

            async def one(prompt: str) -> None:
                note(await client.send(session, endpoint, prompt), len(arrivals))

            for offset in arrivals:
                delay = started + offset - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(next(prompt_cycle))))
            await asyncio.gather(*tasks)
    return records


class LiveRunner:
    """``run(profile, index)`` for :mod:`specops.load.sweep` against a live endpoint.

    Each profile gets a fresh event loop and connection pool, so one
    profile's stragglers cannot leak into the next profile's timings.
    """

    def __init__(
        self, endpoint: client.Endpoint, prompts: Sequence[str], bounds: Bounds, seed: int
    ) -> None:
        if not prompts:
            raise ValueError("no prompts")
        self.endpoint = endpoint
        self.prompts = list(prompts)
        self.bounds = bounds
        self.seed = seed
        self.progress: Progress | None = None

    def __call__(self, profile: Profile, index: int) -> list[RequestRecord]:
        progress = self.progress

        def tick(done: int, planned: int, elapsed: float) -> None:
            if progress is not None:
                progress.update(index, profile.label, done, planned, elapsed)

        coro = run_profile(
            self.endpoint, profile, self.prompts, self.bounds, self.seed + index, tick
        )
        return asyncio.run(coro)
