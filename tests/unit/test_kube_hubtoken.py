"""token_from_secret: the label, the key, the value's shape; every value read is registered."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fakekube import MARKER

from specops.api import redact as registry
from specops.api.v1alpha1 import HUB_TOKEN_SECRET_LABEL
from specops.kube.hubtoken import token_from_secret


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.clear()
    yield
    registry.clear()


def secret(raw: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"labels": {HUB_TOKEN_SECRET_LABEL: "true"} if labels is None else labels},
        "data": {"HF_TOKEN": raw},
    }


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_labelled_single_line_token_is_used_trimmed() -> None:
    assert token_from_secret(secret(b64(f"{MARKER}\n")), "HF_TOKEN") == MARKER
    assert registry.redact(MARKER) == registry.REDACTED


@pytest.mark.parametrize(
    "raw",
    ["not base64!", b64("a\nb" + MARKER), "/w==", b64(MARKER + "\u00e9"), b64(MARKER + "\t1")],
    ids=["not base64", "two lines", "not UTF-8", "non-ASCII", "tab"],
)
def test_unusable_values_are_refused(raw: str) -> None:
    assert token_from_secret(secret(raw), "HF_TOKEN") is None


def test_an_unusable_value_is_still_registered_so_it_can_never_be_printed() -> None:
    assert token_from_secret(secret(b64(f"{MARKER}\nline two")), "HF_TOKEN") is None
    assert MARKER not in registry.redact(f"...{MARKER}\nline two...")


@pytest.mark.parametrize("labels", [{}, {HUB_TOKEN_SECRET_LABEL: "True"}, {"other": "true"}])
def test_without_the_exact_label_the_data_is_not_even_decoded(labels: dict[str, str]) -> None:
    assert token_from_secret(secret(b64(MARKER), labels), "HF_TOKEN") is None
    assert registry.redact(MARKER) == MARKER, "an unlabelled Secret's data is never touched"


def test_missing_secret_or_key() -> None:
    assert token_from_secret(None, "HF_TOKEN") is None
    assert token_from_secret(secret(b64(MARKER)), "OTHER") is None
