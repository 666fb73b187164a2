"""A real Prometheus server on loopback, for tests, benchmarks and the demo.

The twin is only worth something if the operator reads the same PromQL it
would read in production, so we run the Debian ``prometheus`` binary rather
than faking its HTTP API. :mod:`.config` builds the configuration (pure),
:mod:`.server` runs the process, :mod:`.client` is the few HTTP API calls our
tests need (the operator's own reader is :mod:`specops.observe`).
"""

from specops.prom.client import PromClient, PromError, Sample, Target
from specops.prom.config import PromSettings, build_config
from specops.prom.server import PrometheusServer, PrometheusStartError

__all__ = [
    "PromClient",
    "PromError",
    "PromSettings",
    "PrometheusServer",
    "PrometheusStartError",
    "Sample",
    "Target",
    "build_config",
]
