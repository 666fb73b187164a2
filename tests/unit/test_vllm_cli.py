"""``spec.vllm.extraArgs`` as vLLM 0.33.0 reads them: managed flags refused in every spelling.

The standard is vLLM's own parser: a property test replays vLLM's
``FlexibleArgumentParser.parse_args`` (transcribed below, separately from the
module under test) in front of Python's real ``argparse`` built from the same
option table, and checks that :func:`specops.api.vllm_cli.resolve` agrees on
what every argument sets and on whether vLLM would refuse to start.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from test_render import CASES, render_case, vllm_container

from specops.api import vllm_cli
from specops.api.crd import openapi_schema
from specops.api.v1alpha1 import SpeculativeDeployment, VllmSpec
from specops.api.vllm_cli import MANAGED_DESTS, managed_violations, option_table, resolve
from specops.cli import main

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "vllm-0.33.0"
TABLE = option_table()
#: Kinds for which vLLM 0.33.0 would exit instead of serving.
VLLM_REFUSES = {"unknown", "ambiguous", "incomplete", "separator"}


def dests(args: list[str]) -> set[str]:
    return {r.dest for r in resolve(args) if r.kind == "option" and r.dest}


def only_dest(args: list[str]) -> str:
    found = [r for r in resolve(args) if r.kind == "option"]
    assert len(found) == 1, found
    assert found[0].index == 0
    return str(found[0].dest)


# --------------------------------------------------------------------------- the table


def test_the_option_table_is_read_from_the_package_not_from_a_test_copy() -> None:
    assert not (GOLDEN / "serve_options.txt").exists(), "tests read the package's copy"
    assert TABLE.actions["--tensor-parallel-size"] == "tensor_parallel_size"
    assert TABLE.actions["-tp"] == "tensor_parallel_size"
    assert TABLE.actions["--device-memory-utilization"] == "gpu_memory_utilization"
    assert TABLE.positionals == ("model_tag",)
    assert len(TABLE.actions) > 400


def test_a_malformed_table_is_refused() -> None:
    with pytest.raises(ValueError, match="bad option table line"):
        vllm_cli.parse_table("--a\ta\n--a\tb\n")
    with pytest.raises(ValueError, match="negative number"):
        vllm_cli.parse_table("-1\tone\n")


# --------------------------------------------------------------------------- managed flags

ONE_PER_MANAGED_DEST = [
    pytest.param(["--model", "other/model"], "model", "spec.verifier.model", id="model"),
    pytest.param(["--revision", "main"], "revision", "spec.verifier.revision", id="revision"),
    pytest.param(
        ["--served-model-name", "x"], "served_model_name", "spec.servedModelName", id="name"
    ),
    pytest.param(
        ["--tensor-parallel-size", "8"],
        "tensor_parallel_size",
        "spec.tensorParallelSize",
        id="tensor-parallel",
    ),
    pytest.param(["--max-model-len", "77"], "max_model_len", "spec.maxModelLen", id="len"),
    pytest.param(
        ["--gpu-memory-utilization", "0.5"],
        "gpu_memory_utilization",
        "spec.gpuMemoryUtilization",
        id="gpu-memory",
    ),
    pytest.param(["--port", "9000"], "port", "operator manages the port", id="port"),
    pytest.param(
        ["--speculative-config", "{}"],
        "speculative_config",
        "spec.speculator and spec.speculation",
        id="speculative-config",
    ),
    pytest.param(["--config", "f.yaml"], "config", "cannot see that file", id="config"),
    pytest.param(["--api-key", "k"], "api_key", "spec.vllm.apiKeySecretRef", id="api-key"),
    pytest.param(["--hf-token", "t"], "hf_token", "spec.hfTokenSecretRef", id="hf-token"),
]


@pytest.mark.parametrize(("args", "dest", "field"), ONE_PER_MANAGED_DEST)
def test_each_managed_flag_is_refused_naming_the_field_to_use(
    args: list[str], dest: str, field: str
) -> None:
    assert only_dest(args) == dest
    (message,) = managed_violations(args)
    assert f"extraArgs[0] {args[0]!r}" in message
    assert TABLE.canonical[dest] in message
    assert field in message


def test_every_managed_dest_is_tested_and_no_option_sets_the_positional_model() -> None:
    tested = {p.values[1] for p in ONE_PER_MANAGED_DEST}
    assert set(MANAGED_DESTS) - tested == {"model_tag"}
    assert "model_tag" not in TABLE.actions.values()
    assert resolve(["other/model"])[0].kind == "value"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_flag_the_renderer_writes_resolves_to_a_managed_destination(case: str) -> None:
    """Adding a rendered flag without managing it (or a typo vLLM would reject) fails here."""
    _, spec, _, _ = CASES[case]
    args = vllm_container(render_case(case))["args"]
    extra = spec.get("vllm", {}).get("extraArgs", [])
    rendered = args[1 : len(args) - len(extra)]
    resolved = resolve(rendered)
    options = [r for r in resolved if r.kind == "option"]
    assert len(options) >= 6
    assert {r.kind for r in resolved} <= {"option", "value"}
    for r in options:
        assert r.dest in MANAGED_DESTS, f"{r.option} is rendered but not managed"
    assert resolved[0].kind == "value", "the model is the positional model_tag"


# --------------------------------------------------------------------------- spelling rules


@pytest.mark.parametrize(
    ("args", "dest"),
    [
        pytest.param(["--tensor_parallel_size=8"], "tensor_parallel_size", id="underscores"),
        pytest.param(["-tp", "4"], "tensor_parallel_size", id="short-alias-tp"),
        pytest.param(["--tensor-parallel=8"], "tensor_parallel_size", id="prefix-equals"),
        pytest.param(["--max-model", "77"], "max_model_len", id="prefix"),
        pytest.param(["-sc", '{"method":"ngram"}'], "speculative_config", id="short-alias-sc"),
        pytest.param(["--speculative_config", "{}"], "speculative_config", id="underscore-json"),
        pytest.param(
            ["--speculative-config.num_speculative_tokens", "9"],
            "speculative_config",
            id="dotted-key",
        ),
        pytest.param(["--config", "f.yaml"], "config", id="config-file"),
    ],
)
def test_the_readme_spellings_resolve_to_the_managed_flag_and_are_refused(
    args: list[str], dest: str
) -> None:
    assert only_dest(args) == dest
    assert len(managed_violations(args)) == 1


@pytest.mark.parametrize("args", [["-O3"], ["-O", "3"], ["-O=2"]])
def test_optimization_level_spellings_are_accepted(args: list[str]) -> None:
    assert dests(args) == {"optimization_level"}
    assert managed_violations(args) == []


@pytest.mark.parametrize(
    ("args", "dest"),
    [
        pytest.param(["-t", "4"], "tensor_parallel_size", id="single-dash-prefix"),
        pytest.param(["-t=4"], "tensor_parallel_size", id="single-dash-prefix-equals-gh124345"),
        pytest.param(["-s", "{}"], "speculative_config", id="single-dash-prefix-sc"),
        pytest.param(["-tp=4"], "tensor_parallel_size", id="short-alias-equals"),
        pytest.param(["-sc.method", "ngram"], "speculative_config", id="dotted-short-alias"),
        pytest.param(["--speculative.k", "9"], "speculative_config", id="dotted-abbreviation"),
        pytest.param(["--speculative-config.k=9"], "speculative_config", id="dotted-equals"),
        pytest.param(["--device_memory=0.5"], "gpu_memory_utilization", id="alias-abbreviated"),
        pytest.param(["--gpu"], "gpu_memory_utilization", id="shortest-prefix"),
        pytest.param(["--model=x"], "model", id="model-equals"),
        pytest.param(["--model.x", "1"], "model", id="model-dotted"),
        pytest.param(["--config=f.yaml"], "config", id="config-equals"),
        pytest.param(["--por", "1"], "port", id="port-prefix"),
        pytest.param(["--served", "x"], "served_model_name", id="served-prefix"),
    ],
)
def test_more_spellings_vllm_accepts_are_refused(args: list[str], dest: str) -> None:
    assert only_dest(args) == dest
    assert len(managed_violations(args)) == 1


@pytest.mark.parametrize(
    ("args", "dest"),
    [
        pytest.param(["--max-num-seqs", "64"], "max_num_seqs", id="ordinary"),
        pytest.param(["--enable-prefix-caching"], "enable_prefix_caching", id="flag"),
        pytest.param(["--no-enforce-eager"], "enforce_eager", id="no-form"),
        pytest.param(["--disable-chunked-prefill"], "enable_chunked_prefill", id="disable-form"),
        pytest.param(["--enable-cascade-attn"], "disable_cascade_attn", id="enable-form"),
        pytest.param(["-n4"], "nnodes", id="single-char-glued-value"),
        pytest.param(["-qfp8"], "quantization", id="single-char-glued-value-q"),
        pytest.param(["--seed", "-1"], "seed", id="negative-number-is-a-value"),
        pytest.param(["--max-num-seq=8"], "max_num_seqs", id="unambiguous-prefix"),
        pytest.param(["--compilation-config.mode", "3"], "compilation_config", id="dotted"),
        pytest.param(["--compilation-config.x", "--port"], "compilation_config", id="eats-next"),
        pytest.param(["--seed", "-1.5", "--port"], "seed", id="dotted-negative-eats-next"),
    ],
)
def test_ordinary_arguments_are_accepted(args: list[str], dest: str) -> None:
    assert only_dest(args) == dest
    assert managed_violations(args) == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(["--dis"], "abbreviates several vLLM options", id="ambiguous-prefix"),
        pytest.param(["--mod", "x"], "--model-impl", id="ambiguous-names-candidates"),
        pytest.param(["-d", "1"], "abbreviates several", id="ambiguous-single-dash"),
        pytest.param(["--no-such-flag"], "not a vllm serve option", id="unknown"),
        pytest.param(["-tp4"], "not a vllm serve option", id="multi-char-alias-glued"),
        pytest.param(["-O", "5"], "not a vllm serve option", id="bare-O-without-a-level"),
        pytest.param(["--port.x"], "dotted key with no value", id="dotted-key-last"),
        pytest.param(["--", "--port"], "after '--'", id="separator"),
        pytest.param(["-h"], "print its help", id="help"),
        pytest.param(["--help=all"], "print its help", id="help-search"),
    ],
)
def test_arguments_vllm_would_refuse_are_refused(args: list[str], fragment: str) -> None:
    (message,) = managed_violations(args)
    assert fragment in message


def test_tokens_that_are_not_options_are_values() -> None:
    for token in ["--tensor-parallel-size 8", "8", "", "-", "-5", "{}", "a b", " -tp"]:
        assert [r.kind for r in resolve([token])] == ["value"], token
    assert managed_violations(["--served-model-name", "--tensor-parallel-size 8"]) != []
    assert managed_violations(["--max-num-seqs", "--tensor-parallel-size 8"]) == []


def test_dotted_keys_of_one_flag_merge_into_one_option_for_each_source() -> None:
    args = ["--speculative-config.a", "1", "--max-num-seqs", "4", "-sc.b=2"]
    found = [(r.index, r.kind, r.dest) for r in resolve(args) if r.kind == "option"]
    assert found == [
        (0, "option", "speculative_config"),
        (2, "option", "max_num_seqs"),
        (4, "option", "speculative_config"),
    ]
    assert len(managed_violations(args)) == 2


def test_for_another_vllm_version_only_managed_flags_are_refused() -> None:
    """A newer vLLM may know options 0.33.0 does not; managed flags stay managed."""
    unknown = ["--a-flag-from-the-future", "--dis"]
    assert managed_violations(unknown, known_version=False) == []
    assert len(managed_violations(["-tp", "8"], known_version=False)) == 1


def test_messages_name_the_argument_but_never_its_value() -> None:
    secret = "hf_s3cr3tT0kenValue"
    for args in (
        [f"--hf-token={secret}"],
        [f"--hf_tokn={secret}"],
        [f"--speculative-config.x={secret}"],
    ):
        messages = managed_violations(args)
        assert messages and all(secret not in m for m in messages), messages


def test_the_model_validator_refuses_with_one_clear_message_and_ignores_value_tokens() -> None:
    with pytest.raises(ValidationError) as info:
        VllmSpec.model_validate({"extraArgs": ["--enable-prefix-caching", "-tp", "8", "--dis"]})
    message = info.value.errors()[0]["msg"]
    assert "may not set flags the operator manages" in message
    assert "extraArgs[1] '-tp' sets vLLM's --tensor-parallel-size" in message
    assert "extraArgs[3] '--dis' abbreviates several" in message
    ok = VllmSpec.model_validate({"extraArgs": ["--max-num-seqs", "64", "-O3"]})
    assert ok.extra_args == ["--max-num-seqs", "64", "-O3"]
    newer = VllmSpec.model_validate({"version": "0.34.0", "extraArgs": ["--new-flag"]})
    assert newer.extra_args == ["--new-flag"]


def test_a_whole_resource_with_an_abbreviated_managed_flag_is_invalid() -> None:
    doc: dict[str, Any] = {
        "apiVersion": "serving.specops.dev/v1alpha1",
        "kind": "SpeculativeDeployment",
        "metadata": {"name": "x", "namespace": "llm"},
        "spec": {
            "verifier": {"model": "Qwen/Qwen3-8B"},
            "gpu": {"type": "H100-80GB"},
            "vllm": {"extraArgs": ["--tensor-parallel=8"]},
        },
    }
    with pytest.raises(ValidationError, match=r"spec\.tensorParallelSize"):
        SpeculativeDeployment.model_validate(doc)


def test_specops_render_refuses_it_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sd.yaml"
    doc = {
        "apiVersion": "serving.specops.dev/v1alpha1",
        "kind": "SpeculativeDeployment",
        "metadata": {"name": "x", "namespace": "llm"},
        "spec": {
            "verifier": {"model": "Qwen/Qwen3-8B"},
            "gpu": {"type": "H100-80GB"},
            "vllm": {"extraArgs": ["--speculative-config.num_speculative_tokens", "9"]},
        },
    }
    path.write_text(json.dumps(doc))
    assert main(["render", "-f", str(path), "--hub-mirror", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "'--speculative-config.num_speculative_tokens' sets vLLM's --speculative-config" in err
    assert "use spec.speculator and spec.speculation" in err


# --------------------------------------------------------------------------- the CRD's regex

CEL_PATTERN = vllm_cli.cel_pattern(MANAGED_DESTS)
#: RE2's ``$`` is the end of the text; Python's also matches before a final newline.
PY_PATTERN = re.compile(CEL_PATTERN.replace("|$)", r"|\Z)"))


def test_the_crd_rule_is_the_pattern_built_from_the_table() -> None:
    vllm = openapi_schema()["properties"]["spec"]["properties"]["vllm"]["properties"]
    (rule,) = vllm["extraArgs"]["x-kubernetes-validations"]
    assert rule["rule"] == f"self.all(a, !a.matches('{CEL_PATTERN}'))"
    assert "\\" not in CEL_PATTERN and "'" not in CEL_PATTERN, "no escaping inside CEL"


@pytest.mark.parametrize(
    "arg",
    [
        "--tensor_parallel_size=8",
        "-tp",
        "--tensor-parallel=8",
        "--max-model",
        "-sc",
        "--speculative_config",
        "--speculative-config.num_speculative_tokens",
        "--config",
        "--config=f.yaml",
        "--model",
        "--model=x",
        "--port=9000",
        "--rev",
        "--served_model",
        "--gpu-mem=0.5",
        "--device_memory_utilization",
        "-t",
        "-s=x",
        "--api-key",
        "--hf_token=x",
    ],
)
def test_the_crd_pattern_catches_the_common_spellings(arg: str) -> None:
    assert PY_PATTERN.search(arg), arg


@pytest.mark.parametrize(
    "arg",
    [
        "--max-num-seqs",
        "--enable-prefix-caching",
        "--seed=1",
        "-O3",
        "--mod",
        "--conf",
        "--model-impl",
        "--config-format",
        "--portx",
        "--spec-model",
        "-tp4",
        "--tensor-parallel-size 8",
        "8",
        "--port\n",
    ],
)
def test_the_crd_pattern_leaves_other_arguments_to_the_operator(arg: str) -> None:
    assert not PY_PATTERN.search(arg), arg


# --------------------------------------------------------------------------- the oracle


class OracleRefused(Exception):
    """vLLM's parser would exit with this message."""


class _Argparse(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise OracleRefused(message)


def _json_merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _json_merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key] += value
        else:
            into[key] = value


def _underscores_to_dashes(arg: str) -> str:
    return re.sub(r"(?<=--)[^.]*", lambda m: m.group(0).replace("_", "-"), arg, count=1)


class VllmOracle(_Argparse):
    """vLLM 0.33.0's ``FlexibleArgumentParser.parse_args``, step for step (no ``--config``)."""

    def rewrite(self, args: list[str]) -> list[str]:
        """What vLLM hands to argparse."""
        if args[:1] == ["serve"]:
            at = next((i for i, a in enumerate(args) if re.match(r"^--model(=.+|$)", a)), None)
            if at is not None:
                if args[at] == "--model":
                    if at + 1 >= len(args) or args[at + 1].startswith("-"):
                        self.error("argument --model: expected one argument")
                    tag, rest = args[at + 1], at + 2
                else:
                    tag, rest = args[at].removeprefix("--model="), at + 1
                args = ["serve", tag, *args[1:at], *args[rest:]]
        processed: list[str] = []
        for i, arg in enumerate(args):
            if arg.startswith("--help="):
                processed.append("--help")
            elif arg.startswith("--"):
                if "=" in arg:
                    key, value = arg.split("=", 1)
                    processed.append(f"{_underscores_to_dashes(key)}={value}")
                else:
                    processed.append(_underscores_to_dashes(arg))
            elif arg.startswith("-O") and arg != "-O":
                processed += ["--optimization-level", arg[3:] if arg[2] == "=" else arg[2:]]
            elif arg == "-O" and i + 1 < len(args) and args[i + 1] in {"0", "1", "2", "3"}:
                processed.append("--optimization-level")
            else:
                processed.append(arg)
        delete: set[int] = set()
        dict_args: dict[str, dict[str, Any]] = {}
        for i, arg in enumerate(processed):
            if i in delete or (arg.startswith("--") and "." not in arg):
                continue
            if arg.startswith("-") and "." in arg:
                if "=" in arg:
                    arg, value = arg.split("=", 1)
                    if "." not in arg:
                        continue
                else:
                    if i + 1 >= len(processed):
                        raise OracleRefused("IndexError: list index out of range")
                    value = processed[i + 1]
                    delete.add(i + 1)
                if arg.endswith("+"):
                    arg, value = arg[:-1], json.dumps(value.split(","))
                key, *keys = arg.split(".")
                try:
                    nested: Any = json.loads(value)
                except json.JSONDecodeError:
                    nested = value
                for part in reversed(keys):
                    nested = {part: nested}
                _json_merge(dict_args.setdefault(key, {}), nested)
                delete.add(i)
        processed = [a for i, a in enumerate(processed) if i not in delete]
        for key, merged in dict_args.items():
            processed += [key, json.dumps(merged)]
        return processed


UNSET = object()


def build_oracle() -> tuple[VllmOracle, argparse.ArgumentParser]:
    """``vllm`` and its ``serve`` subcommand, every option of the table taking ``nargs='?'``."""
    top = VllmOracle(prog="vllm")
    top.add_argument("-v", "--version", action="store_true")
    serve = top.add_subparsers(dest="subparser").add_parser("serve", add_help=False)
    serve.add_argument("model_tag", nargs="?", default=UNSET)
    by_dest: dict[str, list[str]] = {}
    for option, dest in TABLE.actions.items():
        by_dest.setdefault(dest, []).append(option)
    for dest, strings in by_dest.items():
        serve.add_argument(*strings, dest=dest, nargs="?", const="<set>", default=UNSET)
    return top, serve


ORACLE, SERVE = build_oracle()


def oracle_dests(extra: list[str]) -> set[str] | None:
    """What vLLM's parser sets from ``extra`` after ``serve <model>``; None if it refuses.

    Left-over positional values are not counted as refusals: which options take a
    value is not in the table, so the resolver judges options only (vLLM itself
    refuses a stray value as an unrecognized argument).
    """
    try:
        namespace, leftovers = ORACLE.parse_known_args(
            ORACLE.rewrite(["serve", "org/model", *extra])
        )
        if any(SERVE._parse_optional(token) is not None for token in leftovers):
            return None
    except OracleRefused:
        return None
    return {
        dest for dest in set(TABLE.actions.values()) if getattr(namespace, dest, UNSET) is not UNSET
    }


def _single_dash_abbreviation_takes_equals() -> bool:
    """Python 3.12.7+ reads ``-t=4`` as ``-tp 4`` (gh-124345); older ones do not."""
    probe = _Argparse(add_help=False)
    probe.add_argument("-tp")
    try:
        return bool(probe.parse_args(["-t=4"]).tp == "4")
    except OracleRefused:
        return False


NEW_SINGLE_DASH_RULE = _single_dash_abbreviation_takes_equals()
OPTION_STRINGS = sorted(TABLE.actions)
MANAGED_OPTIONS = sorted(o for o, d in TABLE.actions.items() if d in MANAGED_DESTS)
VALUES = st.sampled_from(["8", "0.9", "abc", '{"a":1}', "-1", "-42", "a b", "-x y", "", "x=y"])


@st.composite
def spellings(draw: st.DrawFn) -> str:
    """An option string from the table, maybe abbreviated, with ``_`` for some ``-``."""
    option = draw(st.sampled_from(MANAGED_OPTIONS) | st.sampled_from(OPTION_STRINGS))
    length = draw(st.integers(2, len(option)) | st.just(len(option)))
    spelled = list(option[:length])
    if option.startswith("--"):
        for i in range(2, len(spelled)):
            if spelled[i] == "-" and draw(st.booleans()):
                spelled[i] = "_"
    return "".join(spelled)


@st.composite
def items(draw: st.DrawFn) -> list[str]:
    """One extra argument and the value it takes, in a form vLLM's rewriting knows."""
    form = draw(
        st.sampled_from(["bare", "equals", "dotted", "dotted-equals", "glued", "O", "junk"])
    )
    if form == "O":
        return draw(
            st.sampled_from([["-O3"], ["-O=1"], ["-Ofoo"], ["-O", "2"], ["-O", "7"], ["-O"]])
        )
    name = draw(
        spellings()
        if form != "junk"
        else st.from_regex(r"\A--?[a-z0-9_\-]{1,12}\Z") | st.sampled_from(["-", "--=x", "-5"])
    )
    value = draw(VALUES)
    key = draw(st.sampled_from(["method", "num_speculative_tokens", "a.b", ""]))
    if form == "equals":
        return [f"{name}={value}"]
    if form == "dotted":
        return [f"{name}.{key}", value]
    if form == "dotted-equals":
        return [f"{name}.{key}={value}"]
    if form == "glued" and len(name) == 2 and name[1] != "-":
        return [name + draw(st.sampled_from(["4", "fp8", "x"]))]
    return [name, value] if draw(st.booleans()) else [name]


def _old_python_differs(extra: list[str]) -> bool:
    """``-t=4``-like tokens, which Python before 3.12.7 does not read as abbreviations."""
    for token in extra:
        name = token.partition("=")[0]
        if (
            token.startswith("-")
            and not token.startswith(("--", "-O"))
            and "=" in token
            and name not in TABLE.actions
        ):
            return True
    return False


@settings(max_examples=400, deadline=None)
@given(st.lists(items(), min_size=1, max_size=4))
def test_the_resolver_agrees_with_vllms_parser_in_front_of_real_argparse(
    groups: list[list[str]],
) -> None:
    extra = [token for group in groups for token in group]
    assume(not any(re.match(r"^--model(=.+|$)", t) or t == "--config" for t in extra))
    assume(NEW_SINGLE_DASH_RULE or not _old_python_differs(extra))
    resolved = resolve(extra)
    assume(not any(r.kind == "separator" for r in resolved))
    refused = any(r.kind in VLLM_REFUSES for r in resolved)
    expected = oracle_dests(extra)
    assert refused == (expected is None), (resolved, expected)
    if expected is not None:
        assert {r.dest for r in resolved if r.kind == "option"} == expected - {"model_tag"}


@settings(max_examples=400, deadline=None)
@given(st.lists(items(), min_size=1, max_size=1))
def test_whatever_the_crd_pattern_refuses_the_resolver_refuses_as_managed(
    groups: list[list[str]],
) -> None:
    (group,) = groups
    assume(PY_PATTERN.search(group[0]))
    first = [r for r in resolve([*group, "value"]) if r.index == 0]
    assert first and first[0].kind == "option" and first[0].dest in MANAGED_DESTS, first
