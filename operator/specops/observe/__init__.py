"""Observations of a SpeculativeDeployment from Prometheus' HTTP API.

:mod:`.queries` builds the PromQL (pure: vLLM's own formulas over the
labels a Prometheus Operator PodMonitor attaches); :mod:`.prometheus` runs
the queries and assembles a :class:`specops.policy.observations.Observation`
that says what it could not see. See ``docs/observations.md``.
"""

from specops.observe.prometheus import PrometheusObserver
from specops.observe.queries import LabelNames, Queries, Selector

__all__ = ["LabelNames", "PrometheusObserver", "Queries", "Selector"]
