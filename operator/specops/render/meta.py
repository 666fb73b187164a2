"""Labels, names and owner references shared by every rendered object.

The selector labels are a fixed subset: a Deployment's selector is immutable,
so it must never include anything that can change (like the speculation state).
"""

from __future__ import annotations

from typing import Any

from specops.api.v1alpha1 import API_VERSION, KIND, SpeculativeDeployment

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
SPECULATION_LABEL = "specops.dev/speculation"
CONFIG_HASH_ANNOTATION = "specops.dev/config-hash"
SERVER = "server"
MODEL_CACHE = "model-cache"


def selector_labels(name: str) -> dict[str, str]:
    """Labels selecting the vLLM pods of resource ``name`` (Deployment, Service, PDB, monitors)."""
    return {NAME_LABEL: "vllm", INSTANCE_LABEL: name, COMPONENT_LABEL: SERVER}


def selector_string(name: str) -> str:
    """The same selector as a string, for ``status.selector`` (the scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def labels(name: str, component: str) -> dict[str, str]:
    """The ``app.kubernetes.io`` labels every object carries."""
    return {
        NAME_LABEL: "vllm",
        INSTANCE_LABEL: name,
        COMPONENT_LABEL: component,
        MANAGED_BY_LABEL: "specops",
    }


def owner_references(resource: SpeculativeDeployment) -> list[dict[str, Any]]:
    """A controller reference to the resource, so garbage collection removes the children.

    Without a ``metadata.uid`` (a resource file rendered offline, never
    applied) there is no owner to point at: a made-up UID would make the
    garbage collector delete the objects, so none is written.
    """
    uid = resource.metadata.get("uid")
    if not uid:
        return []
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": resource.name,
            "uid": str(uid),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def object_meta(
    resource: SpeculativeDeployment,
    name: str,
    component: str,
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Metadata for one child object."""
    meta: dict[str, Any] = {
        "name": name,
        "labels": {**(extra_labels or {}), **labels(resource.name, component)},
    }
    if resource.namespace:
        meta["namespace"] = resource.namespace
    owners = owner_references(resource)
    if owners:
        meta["ownerReferences"] = owners
    return meta
