"""The optional NetworkPolicy of a resource's vLLM pods (pure).

Off by default (``spec.networkPolicy.enabled``): a policy that selects a pod
denies every ingress it does not list, which would cut off clients in other
namespaces that reach the Service today. When on, the pods accept TCP on the
serving port only, from pods of their own namespace, from the namespace of the
Prometheus that scrapes ``/metrics`` (the ``prometheusNamespace`` setting) and
from the namespaces the resource lists. Peers are matched by the
``kubernetes.io/metadata.name`` label, which the API server sets on every
namespace to its name and which nobody can change, so a tenant cannot label
its own namespace into the list.

Ingress only: egress stays open, because the download init containers fetch
the models from the Hub (or ``HF_ENDPOINT``) at pod start, from addresses a
policy cannot name. Kubelet probes come from the node, which NetworkPolicy
implementations always admit.
"""

from __future__ import annotations

from typing import Any

from specops.api.v1alpha1 import SpeculativeDeployment
from specops.render.meta import SERVER, object_meta, selector_labels
from specops.render.model import RenderOptions
from specops.render.vllm_args import PORT

#: Label the API server keeps equal to a namespace's name (immutable, Kubernetes >= 1.21).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def allowed_namespaces(resource: SpeculativeDeployment, options: RenderOptions) -> list[str]:
    """Namespaces admitted besides the resource's own: Prometheus's first, no repeats."""
    names = [options.prometheus_namespace, *resource.spec.network_policy.allow_from_namespaces]
    return [n for i, n in enumerate(names) if n not in names[:i] and n != resource.namespace]


def network_policy(resource: SpeculativeDeployment, options: RenderOptions) -> dict[str, Any]:
    """Ingress to the serving port from this namespace, Prometheus's and the listed ones."""
    peers: list[dict[str, Any]] = [{"podSelector": {}}]
    peers += [
        {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}
        for name in allowed_namespaces(resource, options)
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(resource, resource.name, SERVER),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(resource.name)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": PORT}]}],
        },
    }
