"""Names from a tenant's spec can never reach another API path."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from specops.api.v1alpha1 import SpeculativeDeployment
from specops.kube.kinds import CHILD_KINDS, SECRET, BadPathSegment, segment

ESCAPES = [
    "../../kube-system/secrets/x",
    "..",
    ".",
    "",
    "a/b",
    "%2e%2e",
    "x?labelSelector=a",
    "x#frag",
    "X_upper",
    "a" * 254,
]


def body(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": {"verifier": {"model": "Qwen/Qwen3-8B"}, "gpu": {"type": "H100-80GB"}, **spec},
    }


@pytest.mark.parametrize("name", ESCAPES)
@pytest.mark.parametrize(
    "field",
    [
        lambda n: {"hfTokenSecretRef": {"name": n}},
        lambda n: {"modelCache": {"existingClaimName": n}},
        lambda n: {"modelCache": {"storageClassName": n}},
    ],
    ids=["hfTokenSecretRef.name", "existingClaimName", "storageClassName"],
)
def test_object_names_in_the_spec_must_be_dns_subdomains(name: str, field: Any) -> None:
    with pytest.raises(ValidationError):
        SpeculativeDeployment.model_validate(body(**field(name)))


@pytest.mark.parametrize("key", ["../x", "a b", "k\n", "", "ключ"])
def test_secret_keys_must_be_data_keys(key: str) -> None:
    with pytest.raises(ValidationError):
        SpeculativeDeployment.model_validate(body(hfTokenSecretRef={"name": "hf", "key": key}))


def test_ordinary_names_and_keys_are_accepted() -> None:
    ok = SpeculativeDeployment.model_validate(
        body(
            hfTokenSecretRef={"name": "hf-token.v2", "key": "HF_TOKEN.txt"},
            modelCache={"existingClaimName": "models-0"},
        )
    )
    assert ok.spec.hf_token_secret_ref is not None
    assert ok.spec.hf_token_secret_ref.name == "hf-token.v2"


def test_the_crd_carries_the_same_patterns() -> None:
    from specops.api.crd import build_crd

    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    ref = spec["properties"]["hfTokenSecretRef"]["properties"]
    assert ref["name"]["pattern"].startswith("^[a-z0-9]")
    assert ref["key"]["pattern"] == "^[-._a-zA-Z0-9]+$"
    cache = spec["properties"]["modelCache"]["properties"]
    assert cache["existingClaimName"]["pattern"] == ref["name"]["pattern"]
    assert cache["storageClassName"]["pattern"] == ref["name"]["pattern"]


@pytest.mark.parametrize("name", ["../../kube-system/secrets/x", "..", ".", "", "a/b", "a%2Fb"])
def test_a_path_segment_that_could_walk_elsewhere_is_refused(name: str) -> None:
    with pytest.raises(BadPathSegment):
        SECRET.object_path("ns", name)
    with pytest.raises(ValueError):  # BadPathSegment, or "a namespace is needed" for ""
        SECRET.object_path(name, "x")


@pytest.mark.parametrize("name", ["x?watch=true", "x#y", "a b", "é"])
def test_every_other_name_stays_one_quoted_segment(name: str) -> None:
    path = SECRET.object_path("ns", name)
    head, _, last = path.rpartition("/")
    assert head == "/api/v1/namespaces/ns/secrets"
    assert last == segment(name) and not set(last) & set("?#/ ")


def test_child_kinds_quote_both_namespace_and_name() -> None:
    for kind in CHILD_KINDS:
        assert kind.object_path("ns", "a.b").endswith(f"/namespaces/ns/{kind.plural}/a.b")
        with pytest.raises(BadPathSegment):
            kind.collection_path("../other")
