"""Fixtures shared by integration tests: an API client of the session cluster, a real Prometheus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from operator_harness import Kube, install_crd

from specops.devcluster import Cluster
from specops.prom import PrometheusServer


@pytest.fixture
def api(kube_cluster: Cluster) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` for the session cluster, closed after the test."""
    with kube_cluster.api_client() as api_client:
        yield api_client


@pytest.fixture
def kube(api: Any, namespace: str) -> Kube:
    """The test's namespace through the admin client, the CRD installed (idempotent)."""
    install_crd(api)
    return Kube(api, namespace)


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[PrometheusServer]:
    """A fresh Prometheus scraping every second; file SD files go in ``.targets_dir``.

    ``.url``, ``.reload()``, ``.stop()`` and ``.start()`` (same URL after a
    restart) are there for tests that take Prometheus away mid-run.
    """
    server = PrometheusServer(
        tmp_path / "prom-targets", scrape_interval_s=1.0, workdir=tmp_path / "prom"
    )
    server.start()
    try:
        yield server
    finally:
        server.close()
