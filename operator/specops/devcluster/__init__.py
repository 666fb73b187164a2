"""A real local Kubernetes control plane with simulated GPU nodes.

Tests, benchmarks and the demo run against genuine etcd, kube-apiserver,
kube-controller-manager and kube-scheduler built from Go modules, with kwok playing
the kubelets of GPU nodes described by :mod:`specops.devcluster.nodepools`.

Use :func:`up` / :func:`down` from Python, ``python -m specops.devcluster up|down|env``
(or ``hack/cluster``) from a shell, and the ``kube_cluster`` pytest fixture in tests.
"""

from specops.devcluster.cluster import (
    DEFAULT_NAME,
    Cluster,
    ClusterError,
    clean_stale,
    down,
    find,
    state_dir,
    up,
)
from specops.devcluster.nodepools import DEFAULT_POOLS, GPUSpec, NodePool, NodePoolError
from specops.devcluster.tools import ToolsError

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_POOLS",
    "Cluster",
    "ClusterError",
    "GPUSpec",
    "NodePool",
    "NodePoolError",
    "ToolsError",
    "clean_stale",
    "down",
    "find",
    "state_dir",
    "up",
]
