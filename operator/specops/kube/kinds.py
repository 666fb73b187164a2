"""Where each kind the renderer produces lives in the API, without discovery.

Why a fixed table instead of API discovery: the operator writes a known,
small set of kinds, and the RBAC rules in ``config/rbac/role.yaml`` grant
exactly these. A kind missing from the table is a programming error caught by
the unit tests, not something to discover at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Kind:
    """One API resource: how to build its URL."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        """API group ('' for the core group)."""
        return self.api_version.rpartition("/")[0]

    def collection_path(self, namespace: str | None) -> str:
        """URL of the collection (list, create); ``None`` lists across all namespaces."""
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            return f"{root}/namespaces/{namespace}/{self.plural}"
        return f"{root}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        """URL of one object."""
        if self.namespaced and not namespace:
            raise ValueError(f"{self.kind} is namespaced: a namespace is needed")
        return f"{self.collection_path(namespace)}/{name}"


#: Kinds the renderer may produce (children of a SpeculativeDeployment).
CHILD_KINDS: tuple[Kind, ...] = (
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("v1", "Service", "services"),
    Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Kind("monitoring.coreos.com/v1", "PodMonitor", "podmonitors"),
    Kind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
)

SPECULATIVE_DEPLOYMENT = Kind(
    "serving.specops.dev/v1alpha1", "SpeculativeDeployment", "speculativedeployments"
)
LEASE = Kind("coordination.k8s.io/v1", "Lease", "leases")
EVENT = Kind("v1", "Event", "events")
SECRET = Kind("v1", "Secret", "secrets")

_BY_KEY = {(k.api_version, k.kind): k for k in CHILD_KINDS}


class UnknownKind(ValueError):
    """The renderer produced a kind the operator has no table entry (and no RBAC) for."""


def kind_of(obj: dict[str, Any]) -> Kind:
    """The table entry for a manifest."""
    key = (str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    try:
        return _BY_KEY[key]
    except KeyError:
        raise UnknownKind(
            f"cannot apply {key[1] or '?'} ({key[0] or '?'}): not a kind the operator manages"
        ) from None


def object_key(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(apiVersion, kind, name): identity of a child within its owner's namespace."""
    return (
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        str(obj.get("metadata", {}).get("name", "")),
    )
