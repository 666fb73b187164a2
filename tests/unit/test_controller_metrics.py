"""The operator's /metrics and /healthz, served for real on loopback."""

from __future__ import annotations

import asyncio

import aiohttp

from specops.metrics import OperatorMetrics, ResourceState, build_app, serve


async def fetch(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as r,
    ):
        return r.status, await r.text()


def test_metrics_and_health_endpoints() -> None:
    async def scenario() -> None:
        metrics = OperatorMetrics()
        metrics.observe("applied", 0.02)
        metrics.observe("blocked", 0.01)
        metrics.set_state(
            "ns",
            "qwen",
            ResourceState((("Ready", "True"), ("Compatible", "True")), True, 3, 1, 1, 2),
        )
        metrics.set_state("ns", "llama", ResourceState((("Ready", "False"),), False, None, 4, 4, 1))
        healthy = [True]
        runner, port = await serve(
            build_app(metrics, lambda: (healthy[0], "ok" if healthy[0] else "wedged")),
            "127.0.0.1",
            0,
        )
        try:
            status, text = await fetch(port, "/metrics")
            assert status == 200
            assert 'specops_reconcile_total{outcome="applied"} 1.0' in text
            assert 'specops_reconcile_duration_seconds_count{outcome="blocked"} 1.0' in text
            assert 'specops_resources{condition="Ready",status="True"} 1.0' in text
            assert 'specops_resources{condition="Ready",status="False"} 1.0' in text
            assert 'specops_speculation_active{name="qwen",namespace="ns"} 1.0' in text
            assert 'specops_speculative_tokens{name="qwen",namespace="ns"} 3.0' in text
            assert 'specops_plan_tensor_parallel_size{name="llama",namespace="ns"} 4.0' in text
            metrics.forget("ns", "llama")
            _, text = await fetch(port, "/metrics")
            assert 'name="llama"' not in text
            assert await fetch(port, "/healthz") == (200, "ok")
            healthy[0] = False
            assert await fetch(port, "/healthz") == (503, "wedged")
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
