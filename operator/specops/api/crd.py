"""Generate the ``SpeculativeDeployment`` CustomResourceDefinition from the pydantic models.

Pydantic emits JSON Schema 2020-12; the API server wants a *structural*
OpenAPI v3 schema: every node typed, no ``$ref``, no ``anyOf`` with ``null``,
no ``title``, no ``additionalProperties`` beside ``properties``, and
``exclusiveMinimum`` as a boolean. :func:`structural` does that translation
once, so the models stay the only place a field is defined, and the checked-in
YAML can be regenerated and diffed (``make generate``; a unit test fails on
drift).
"""

from __future__ import annotations

from typing import Any

import yaml

from specops.api.v1alpha1 import (
    API_VERSION,
    DNS_LABEL,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    SpeculativeDeployment,
    SpeculativeDeploymentSpec,
    SpeculativeDeploymentStatus,
    cel,
)

CRD_NAME = f"{PLURAL}.{GROUP}"
_DROP = frozenset({"title", "examples"})


def _deref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline a ``$ref``; keys beside the ``$ref`` (a field's description) win."""
    ref = node.get("$ref")
    if ref is None:
        return node
    name = ref.rsplit("/", 1)[-1]
    if name not in defs:
        raise ValueError(f"schema references unknown definition {ref}")
    siblings = {k: v for k, v in node.items() if k != "$ref"}
    return {**_deref(defs[name], defs), **siblings}


def _drop_null(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` (an optional field) becomes X: absent means unset."""
    branches = node.get("anyOf")
    if not isinstance(branches, list):
        return node
    non_null = [b for b in branches if b != {"type": "null"}]
    if len(non_null) == len(branches):
        return node
    if len(non_null) != 1:
        raise ValueError(f"cannot express a union of {len(non_null)} types structurally")
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if rest.get("default", ...) is None:
        del rest["default"]
    return {**non_null[0], **rest}


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Translate one pydantic JSON-schema node (recursively) into a structural schema."""
    node = _drop_null(_deref(node, defs))
    node = _drop_null(_deref(node, defs))  # a $ref inside the non-null branch
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = structural(value, defs)
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif value is False:
                continue  # extra="forbid": the API server prunes unknown fields instead
            else:
                out[key] = structural(value, defs)
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "anyOf" and not node.get("x-kubernetes-int-or-string"):
            raise ValueError(f"unsupported union in schema: {value!r}")
        elif key == "default" and value is None:
            continue
        else:
            out[key] = value
    if "x-kubernetes-preserve-unknown-fields" in out and "type" not in out:
        out["type"] = "object"
    return out


def _model_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return structural(raw, defs)


def openapi_schema() -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the served version."""
    return {
        "type": "object",
        "description": (SpeculativeDeployment.__doc__ or "").strip(),
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion defines the versioned schema of this object.",
            },
            "kind": {
                "type": "string",
                "description": "Kind is the REST resource this object represents.",
            },
            "metadata": {"type": "object"},
            "spec": _model_schema(SpeculativeDeploymentSpec),
            "status": _model_schema(SpeculativeDeploymentStatus),
        },
        "required": ["spec"],
        "x-kubernetes-validations": [
            cel(
                f"self.metadata.name.size() <= 63 && self.metadata.name.matches('{DNS_LABEL}')",
                "metadata.name must be a DNS label of at most 63 characters (it names the Service)",
            )
        ],
    }


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "The Ready condition.",
    },
    {
        "name": "Speculation",
        "type": "boolean",
        "jsonPath": ".status.speculation.active",
        "description": "Whether vLLM drafts tokens now.",
    },
    {
        "name": "K",
        "type": "integer",
        "jsonPath": ".status.speculation.numSpeculativeTokens",
        "description": "Tokens drafted per step.",
        "priority": 1,
    },
    {
        "name": "Replicas",
        "type": "integer",
        "jsonPath": ".status.replicas",
        "description": "Pods of the Deployment.",
    },
    {
        "name": "Acceptance",
        "type": "number",
        "jsonPath": ".status.speculation.acceptanceRate",
        "description": "vLLM's accepted / drafted tokens over the policy window.",
    },
    {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    },
]


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {
                "app.kubernetes.io/name": "specops",
                "app.kubernetes.io/managed-by": "specops",
            },
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["all", "specops"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as YAML, byte-for-byte deterministic (sorted keys, no timestamps)."""
    header = (
        "# Generated by `specops crd` from specops.api.v1alpha1; do not edit.\n"
        f"# {API_VERSION} {KIND}\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=True, width=100)
