"""spec.verifier.model / spec.speculator.model on the real API server: Hub ids or absolute paths.

The CRD's pattern is run by the API server's (Go) regexp engine and pydantic's
by Rust's; both must accept and refuse exactly the same references.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_harness import GROUP, PLURAL, VERSION, install_crd, qwen_spec, resource
from pydantic import ValidationError

from specops.api.v1alpha1 import SpeculatorSpec, VerifierSpec

pytestmark = pytest.mark.integration

ACCEPTED = [
    "Qwen/Qwen3-8B",
    "RedHatAI/Qwen3-8B-speculator.eagle3",
    "meta-llama/Llama-3.1-8B-Instruct",
    "a/b.",
    "a_b/c-d",
    "/models/qwen3-8b",
    "/models/with space/and:colon",
    "/",
]
REFUSED = [
    "./model",
    "../model",
    "~/model",
    "~root/model",
    "model",
    "org/name/extra",
    "a..b/c",
    "org/..",
    "-org/name",
    "org/.name",
    "/models/x\n",
    "/models/x\nmore",
    "/models/\rx",
    "org/name\n",
]


@pytest.fixture(scope="module")
def custom(kube_cluster: Any) -> Iterator[client.CustomObjectsApi]:
    with kube_cluster.api_client() as api:
        install_crd(api)
        yield client.CustomObjectsApi(api)


def admitted(custom: client.CustomObjectsApi, namespace: str, field: str, ref: str) -> bool:
    spec = qwen_spec()
    spec[field] = {**spec[field], "model": ref}
    try:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, resource("refs", spec), dry_run="All"
        )
    except ApiException as exc:
        assert exc.status == 422, exc.body
        assert f"spec.{field}.model" in exc.body
        return False
    return True


def pydantic_accepts(field: str, ref: str) -> bool:
    model = VerifierSpec if field == "verifier" else SpeculatorSpec
    try:
        model.model_validate({"model": ref})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("field", ["verifier", "speculator"])
def test_the_api_server_and_pydantic_agree_on_model_references(
    custom: client.CustomObjectsApi, namespace: str, field: str
) -> None:
    for ref in ACCEPTED + REFUSED:
        expected = ref in ACCEPTED
        assert pydantic_accepts(field, ref) is expected, ref
        assert admitted(custom, namespace, field, ref) is expected, ref
