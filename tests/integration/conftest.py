"""Fixtures shared by integration tests: a real Prometheus on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from specops.prom import PrometheusServer


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
