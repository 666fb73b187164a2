"""kwok's configuration file: options plus the one extra stage the cluster needs.

kwok falls back to its built-in ``node-fast`` and ``pod-fast`` stages (from its
kustomize directory) for Nodes and Pods when the config lists none for them, and
those are exactly what we want: nodes become Ready at once and pods go Running and
Ready as soon as they are bound. The config is written explicitly (rather than
letting kwok read ``~/.kwok/kwok.yaml``) so a developer's own kwok set-up cannot
change how the test cluster behaves.

The extra stage recycles released PersistentVolumes of the pre-created pool: it
clears ``spec.claimRef`` once a claim is gone, and the real PV controller then
marks the volume Available again. Without it a test session would drain the pool.
"""

from __future__ import annotations

from typing import Any

from specops.devcluster.nodepools import KWOK_ANNOTATION, KWOK_ANNOTATION_VALUE
from specops.devcluster.storage import POOL_LABEL


def documents(*, pod_cidr: str = "10.244.0.1/16") -> list[dict[str, Any]]:
    """The YAML documents of kwok's ``--config`` file."""
    configuration = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "options": {
            "cidr": pod_cidr,
            "nodeIP": "127.0.0.1",
            "manageNodesWithAnnotationSelector": f"{KWOK_ANNOTATION}={KWOK_ANNOTATION_VALUE}",
            "nodeLeaseDurationSeconds": 40,
        },
    }
    recycle = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "specops-volume-recycle"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "PersistentVolume"},
            "selector": {
                "matchExpressions": [
                    {"key": ".status.phase", "operator": "In", "values": ["Released"]},
                    {"key": f'.metadata.labels["{POOL_LABEL}"]', "operator": "Exists"},
                ]
            },
            "next": {"patches": [{"type": "merge", "root": "spec", "template": "claimRef: null"}]},
        },
    }
    return [configuration, recycle]
