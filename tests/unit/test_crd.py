"""The generated CRD: checked in without drift, structural, and valid for the API server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from specops.api.crd import build_crd, crd_yaml, openapi_schema
from specops.cli import main

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "serving.specops.dev_speculativedeployments.yaml"
INT_OR_STRING_ANYOF = [{"type": "integer"}, {"type": "string"}]


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    found = [(path or ".", node)]
    for name, sub in node.get("properties", {}).items():
        found += walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_checked_in_crd_matches_the_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    printed = capsys.readouterr().out
    assert printed == crd_yaml(), "specops crd prints the generator's output"
    assert CRD_FILE.read_text() == printed, "crds/ drifted from the models: run `make generate`"


def test_output_is_deterministic() -> None:
    assert crd_yaml() == crd_yaml()


def test_schema_is_structural() -> None:
    problems = []
    for path, node in walk(openapi_schema()):
        if path == ".metadata":
            assert node == {"type": "object"}
            continue
        if node.get("x-kubernetes-int-or-string"):
            if node.get("anyOf", INT_OR_STRING_ANYOF) != INT_OR_STRING_ANYOF or "type" in node:
                problems.append(f"{path}: int-or-string must be exactly integer|string")
        elif "type" not in node:
            problems.append(f"{path}: no type")
        for banned in ("$ref", "$defs", "title", "oneOf", "allOf", "nullable", "const"):
            if banned in node:
                problems.append(f"{path}: has {banned}")
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: anyOf outside int-or-string")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if key in node and not isinstance(node[key], bool):
                problems.append(f"{path}: {key} must be a boolean in OpenAPI v3.0")
        if "default" in node:
            try:
                jsonschema.Draft4Validator(node).validate(node["default"])
            except jsonschema.ValidationError as exc:
                problems.append(f"{path}: default invalid: {exc.message}")
        for required in node.get("required", []):
            if required not in node.get("properties", {}):
                problems.append(f"{path}: requires unknown {required}")
    assert problems == []


def test_crd_validates_against_the_kubernetes_1_34_schema() -> None:
    assert kubernetes_validate.validate(build_crd(), "1.34", strict=True) == "1.34"


def test_names_subresources_and_printer_columns() -> None:
    crd = build_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "speculativedeployments.serving.specops.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["specdeploy", "sdep"]
    version = spec["versions"][0]
    assert version["subresources"]["status"] == {}
    scale = version["subresources"]["scale"]
    schema = version["schema"]["openAPIV3Schema"]
    paths = {p for p, _ in walk(schema)}
    for key in ("specReplicasPath", "statusReplicasPath", "labelSelectorPath"):
        assert scale[key] in paths, f"{key} {scale[key]} is not in the schema"
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert {"Ready", "Speculation", "Replicas", "Acceptance", "Age"} <= set(columns)
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    for name in ("Speculation", "Replicas", "Acceptance"):
        assert columns[name]["jsonPath"] in paths


def test_descriptions_defaults_and_enums_come_from_the_models() -> None:
    spec = openapi_schema()["properties"]["spec"]
    assert spec["required"] == ["verifier", "gpu"]
    assert spec["properties"]["gpuMemoryUtilization"]["default"] == 0.9
    assert spec["properties"]["speculation"]["properties"]["mode"]["enum"] == [
        "Auto",
        "Always",
        "Never",
    ]
    speculator = spec["properties"]["speculator"]["properties"]
    assert "default" not in speculator["numSpeculativeTokens"], "k defaults to the drafter's own"
    assert speculator["numSpeculativeTokens"]["minimum"] == 1
    assert all("description" in node for path, node in walk(spec) if path.count(".") == 1)


CEL_IDENT = re.compile(r"(?<![\w'])self((?:\.[A-Za-z_]\w*)+)")


def test_cel_rules_are_balanced_and_name_existing_fields() -> None:
    rules = 0
    for path, node in walk(openapi_schema()):
        for rule in node.get("x-kubernetes-validations", []):
            rules += 1
            text = rule["rule"]
            assert rule["message"], f"{path}: rule without a message"
            for open_, close in ("()", "[]"):
                assert text.count(open_) == text.count(close), f"{path}: unbalanced {text}"
            assert text.count("'") % 2 == 0, f"{path}: unbalanced quotes in {text}"
            for match in CEL_IDENT.finditer(text):
                target = node
                for part in match.group(1).strip(".").split("."):
                    if part in ("size", "matches", "all", "exists", "startsWith"):
                        break
                    if target is node.get("properties", {}).get("metadata"):
                        assert part in ("name", "generateName"), "CEL sees only these"
                        break
                    assert part in target.get("properties", {}), f"{path}: {text} names {part}"
                    target = target["properties"][part]
    assert rules >= 7


def test_examples_pass_the_crd_schema() -> None:
    examples = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
    schema = openapi_schema()
    for example in examples:
        for doc in yaml.safe_load_all(example.read_text()):
            jsonschema.Draft4Validator(schema).validate(doc)
