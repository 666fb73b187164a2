"""Where each kind the renderer produces lives in the API, without discovery.

Why a fixed table instead of API discovery: the operator writes a known,
small set of kinds, and the RBAC rules in ``config/rbac/role.yaml`` grant
exactly these. A kind missing from the table is a programming error caught by
the unit tests, not something to discover at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote


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
            return f"{root}/namespaces/{segment(namespace)}/{self.plural}"
        return f"{root}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        """URL of one object."""
        if self.namespaced and not namespace:
            raise ValueError(f"{self.kind} is namespaced: a namespace is needed")
        return f"{self.collection_path(namespace)}/{segment(name)}"


class BadPathSegment(ValueError):
    """A string that cannot be one segment of an API path."""


def segment(value: str) -> str:
    """``value`` as exactly one URL path segment, percent-quoted.

    Names reach the API path from a tenant's spec. The models validate them as
    DNS names already; this is the second lock, for any string that gets here
    anyway. What the API server's own rule for names
    (``IsValidPathSegmentName``) forbids is refused: empty, ``.``, ``..``
    (normalised away by clients and proxies even when quoted) and anything with
    ``/`` or ``%`` (the server decodes ``%2F`` before routing, so quoting alone
    would not keep ``../../kube-system/secrets/x`` in one segment). Everything
    else (``?``, ``#``, spaces) is quoted so it cannot end the path.
    """
    if value in ("", ".", "..") or "/" in value or "%" in value:
        raise BadPathSegment(f"{value!r} cannot name an object in an API path")
    return quote(value, safe="")


#: Kinds the renderer may produce (children of a SpeculativeDeployment).
CHILD_KINDS: tuple[Kind, ...] = (
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("v1", "Service", "services"),
    Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Kind("monitoring.coreos.com/v1", "PodMonitor", "podmonitors"),
    Kind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
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
