"""The image allowlist: references normalised as runtimes read them, matched part by part.

Each row reads as a sentence: an entry, an image, and whether the image may run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops.api.v1alpha1 import SpeculativeDeployment
from specops.controller import checks
from specops.hub import ResolvedModel
from specops.render.images import (
    ImageReferenceError,
    image_allowed,
    parse_image,
    parse_rule,
    parse_rules,
    refusal,
)
from specops.settings import SettingsError, load_settings

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("vllm/vllm-openai:v0.33.0", "docker.io/vllm/vllm-openai:v0.33.0"),
        ("docker.io/vllm/vllm-openai:v0.33.0", "docker.io/vllm/vllm-openai:v0.33.0"),
        ("index.docker.io/vllm/vllm-openai:v0.33.0", "docker.io/vllm/vllm-openai:v0.33.0"),
        ("ubuntu", "docker.io/library/ubuntu:latest"),
        ("docker.io/ubuntu", "docker.io/library/ubuntu:latest"),
        ("Registry.Example.com:5000/a/b", "registry.example.com:5000/a/b:latest"),
        ("localhost/x@" + DIGEST_A, "localhost/x@" + DIGEST_A),
        ("quay.io/x/y:1@" + DIGEST_A, "quay.io/x/y:1@" + DIGEST_A),
    ],
)
def test_references_are_normalised_with_docker_hub_defaults(text: str, normalised: str) -> None:
    assert str(parse_image(text)) == normalised


@pytest.mark.parametrize(
    "text",
    [
        "",
        " vllm/vllm-openai",
        "vllm/vllm-openai:v1 ",
        "Vllm-openai",  # upper case in a repository name
        "registry.example.com/../x",
        "registry.example.com/x@sha256:short",
        "registry.example.com@evil.io/x",
        "a" * 600,
    ],
)
def test_strings_that_are_not_references_are_refused(text: str) -> None:
    with pytest.raises(ImageReferenceError):
        parse_image(text)


@pytest.mark.parametrize(
    ("entry", "image", "allowed"),
    [
        # a registry: anything from it, nothing from a host that merely starts the same
        ("registry.example.com", "registry.example.com/vllm/vllm-openai:v1", True),
        ("registry.example.com", "registry.example.com.evil.io/vllm/vllm-openai:v1", False),
        ("registry.example.com", "evil.io/registry.example.com/vllm:v1", False),
        ("registry.example.com/", "registry.example.com/x:1", True),
        ("registry.example.com", "REGISTRY.EXAMPLE.COM/x:1", True),
        ("registry.example.com:5000", "registry.example.com/x:1", False),
        ("localhost:5000", "localhost:5000/x:1", True),
        ("docker.io", "vllm/vllm-openai:v0.33.0", True),
        # a path prefix ends at a slash
        ("registry.example.com/vllm/", "registry.example.com/vllm/vllm-openai:v1", True),
        ("registry.example.com/vllm/", "registry.example.com/vllm-evil/x:v1", False),
        ("registry.example.com/vllm/", "registry.example.com/vllm:v1", False),
        ("vllm/", "docker.io/vllm/vllm-openai:v0.33.0", True),
        ("vllm/", "evil/vllm:1", False),
        # a repository: any tag or digest of it, not a longer name
        ("vllm/vllm-openai", "docker.io/vllm/vllm-openai:v0.34.0", True),
        ("docker.io/vllm/vllm-openai", "vllm/vllm-openai@" + DIGEST_A, True),
        ("vllm/vllm-openai", "vllm/vllm-openai-evil:v1", False),
        ("vllm/vllm-openai", "registry.example.com/vllm/vllm-openai:v1", False),
        # a tag: only that tag, and not with a digest (the runtime would pull the digest)
        ("vllm/vllm-openai:v0.33.0", "docker.io/vllm/vllm-openai:v0.33.0", True),
        ("vllm/vllm-openai:v0.33.0", "vllm/vllm-openai:v0.33.0.1", False),
        ("vllm/vllm-openai:v0.33", "vllm/vllm-openai:v0.33.0", False),
        ("vllm/vllm-openai:v0.33.0", "vllm/vllm-openai:v0.33.0@" + DIGEST_A, False),
        ("vllm/vllm-openai:latest", "vllm/vllm-openai", True),
        ("ubuntu:22.04", "docker.io/library/ubuntu:22.04", True),
        # a digest: that digest; an empty one: any digest, nothing by tag
        ("vllm/vllm-openai@" + DIGEST_A, "vllm/vllm-openai:v1@" + DIGEST_A, True),
        ("vllm/vllm-openai@" + DIGEST_A, "vllm/vllm-openai@" + DIGEST_B, False),
        ("vllm/vllm-openai@" + DIGEST_A, "vllm/vllm-openai:v0.33.0", False),
        ("vllm/vllm-openai@sha256:", "vllm/vllm-openai@" + DIGEST_B, True),
        ("vllm/vllm-openai@sha256:", "vllm/vllm-openai:v0.33.0", False),
        # whatever the entry, a string that is not a reference never runs
        ("registry.example.com", "registry.example.com/X:1", False),
    ],
)
def test_entry_admits_image(entry: str, image: str, allowed: bool) -> None:
    assert image_allowed(image, [parse_rule(entry)]) is allowed


def test_no_entries_allow_any_image_even_a_malformed_one() -> None:
    assert image_allowed("not an image", [])
    assert refusal("not an image", ()) is None


def test_one_matching_entry_of_several_is_enough() -> None:
    rules = parse_rules(["quay.io/org/", "vllm/vllm-openai:v0.33.0"])
    assert image_allowed("vllm/vllm-openai:v0.33.0", rules)
    assert image_allowed("quay.io/org/vllm:1", rules)
    assert not image_allowed("quay.io/other/vllm:1", rules)


@pytest.mark.parametrize(
    "entry",
    ["", "  ", "vllm/vllm-openai:v1@" + DIGEST_A, "registry/X", "x@md5", "host/../x", "a:b:c"],
)
def test_bad_entries_are_refused_naming_the_entry(entry: str) -> None:
    with pytest.raises(ImageReferenceError, match="allowed image entry"):
        parse_rule(entry)


def test_refusal_names_the_field_the_image_and_every_allowed_entry() -> None:
    rules = parse_rules(["registry.example.com/vllm/", "vllm/vllm-openai:v0.33.0"])
    message = refusal("evil.io/miner:1", rules)
    assert message is not None
    assert "spec.vllm.image 'evil.io/miner:1'" in message
    assert "registry.example.com/vllm/, vllm/vllm-openai:v0.33.0" in message
    assert "allowedImages" in message
    assert refusal("registry.example.com/vllm/vllm-openai:v1", rules) is None


# --------------------------------------------------------------------------- the setting


def test_the_setting_is_a_comma_separated_list_checked_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPECOPS_ALLOWED_IMAGES", " registry.example.com/vllm/ , vllm/vllm-openai")
    assert load_settings().allowed_images == ["registry.example.com/vllm/", "vllm/vllm-openai"]
    monkeypatch.setenv("SPECOPS_ALLOWED_IMAGES", "registry.example.com/vllm/,Bad/Entry")
    with pytest.raises(SettingsError, match=r"SPECOPS_ALLOWED_IMAGES.*'Bad/Entry'"):
        load_settings()
    monkeypatch.delenv("SPECOPS_ALLOWED_IMAGES")
    assert load_settings().allowed_images == []


# --------------------------------------------------------------------------- the check


def _resolved(ref: str) -> ResolvedModel:
    config = json.loads((HUB / ref / "config.json").read_text())
    return ResolvedModel(ref, "main", "0" * 40, config, None, "mirror")


def _spec(image: str) -> SpeculativeDeployment:
    return SpeculativeDeployment.model_validate(
        {
            "metadata": {"name": "qwen", "namespace": "ns"},
            "spec": {
                "verifier": {"model": "Qwen/Qwen3-8B"},
                "gpu": {"type": "H100-80GB"},
                "vllm": {"image": image},
            },
        }
    )


def test_a_refused_image_is_compatible_false_with_no_plan() -> None:
    rules = parse_rules(["registry.example.com/"])
    verifier = _resolved("Qwen/Qwen3-8B")
    refused = checks.check(
        _spec("vllm/vllm-openai:v0.33.0").spec, verifier, None, image_rules=rules
    )
    assert (refused.verdict.status, refused.verdict.reason) == ("False", "ImageNotAllowed")
    assert refused.plan is None, "no plan: the cycle renders and applies nothing"
    assert "spec.vllm.image" in refused.verdict.message
    allowed = checks.check(
        _spec("registry.example.com/vllm/vllm-openai:v0.33.0").spec,
        verifier,
        None,
        image_rules=rules,
    )
    assert allowed.verdict.status == "True" and allowed.plan is not None
    default = checks.check(_spec("vllm/vllm-openai:v0.33.0").spec, verifier, None)
    assert default.plan is not None, "no rules: any image"
