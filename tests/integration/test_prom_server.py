"""A real Prometheus scrapes a real loopback exporter found through file SD."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from specops.prom import PrometheusServer
from specops.prom.filesd import TargetGroup, write_targets
from specops.prom.server import free_loopback_port

pytestmark = pytest.mark.integration


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


@pytest.fixture
def exporter() -> Iterator[tuple[int, Counter]]:
    registry = CollectorRegistry()
    counter = Counter("twin_requests", "Requests seen by the test exporter", registry=registry)
    port = free_loopback_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield port, counter
    server.shutdown()
    thread.join()


def test_file_sd_target_is_scraped_with_its_labels(
    prometheus_server: PrometheusServer, exporter: tuple[int, Counter]
) -> None:
    port, counter = exporter
    counter.inc(7)
    write_targets(
        prometheus_server.targets_dir / "pods.json",
        [TargetGroup((f"127.0.0.1:{port}",), {"namespace": "ns1", "pod": "p-0"})],
    )
    client = prometheus_server.client()

    wait_for(lambda: [t.health for t in client.targets("specops-vllm")] == ["up"])
    wait_for(lambda: bool(client.query('twin_requests_total{namespace="ns1",pod="p-0"}')))
    [sample] = client.query('twin_requests_total{namespace="ns1",pod="p-0"}')
    assert sample.value == 7.0

    write_targets(prometheus_server.targets_dir / "pods.json", [])
    wait_for(lambda: client.targets("specops-vllm") == [])


def test_off_loopback_targets_are_dropped_by_relabelling(
    prometheus_server: PrometheusServer, exporter: tuple[int, Counter]
) -> None:
    port, _ = exporter
    # Written by hand, bypassing TargetGroup's check: Prometheus itself must refuse it.
    (prometheus_server.targets_dir / "bad.json").write_text(
        f'[{{"targets": ["10.244.0.9:8000", "127.0.0.1:{port}"], "labels": {{}}}}]'
    )
    client = prometheus_server.client()
    wait_for(lambda: len(client.targets()) == 1)
    assert client.targets()[0].scrape_url == f"http://127.0.0.1:{port}/metrics"


def test_stop_and_start_keeps_url_and_data(
    prometheus_server: PrometheusServer, exporter: tuple[int, Counter]
) -> None:
    port, counter = exporter
    counter.inc(3)
    write_targets(
        prometheus_server.targets_dir / "a.json", [TargetGroup((f"127.0.0.1:{port}",), {})]
    )
    client = prometheus_server.client()
    wait_for(lambda: bool(client.query("twin_requests_total")))

    prometheus_server.stop()
    assert not prometheus_server.running
    with pytest.raises(Exception, match="query"):
        client.query("up")

    prometheus_server.start()
    prometheus_server.reload()
    samples = client.query_range("twin_requests_total", time.time() - 60, time.time(), 1.0)
    assert samples and samples[0].values[0][1] == 3.0


def test_operator_target_added_at_runtime_is_scraped(
    prometheus_server: PrometheusServer, exporter: tuple[int, Counter]
) -> None:
    port, counter = exporter
    counter.inc(2)
    prometheus_server.add_operator_target(f"127.0.0.1:{port}")
    client = prometheus_server.client()
    wait_for(lambda: [t.health for t in client.targets("specops-operator")] == ["up"])
    wait_for(lambda: bool(client.query('twin_requests_total{job="specops-operator"}')))
    assert client.query('twin_requests_total{job="specops-operator"}')[0].value == 2.0
    with pytest.raises(ValueError, match="loopback"):
        prometheus_server.add_operator_target("10.0.0.1:8080")
