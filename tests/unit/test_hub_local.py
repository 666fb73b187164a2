"""Local model files: admin-allowed directories only in the operator, capped and bounded reads."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kubernetes import client

from specops.hub import (
    ConfigNotFound,
    HubError,
    InvalidModelConfig,
    LocalPathNotAllowed,
    ModelFileTooLarge,
    ModelNotFound,
    Resolver,
)
from specops.hub.paths import NOT_ALLOWED

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
QWEN = FIXTURES / "Qwen" / "Qwen3-8B" / "config.json"
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def no_mirror_or_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SPECOPS_HUB_MIRROR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """/allowed/model (a model), /allowed/escape -> /outside, /outside/model, /allowed-evil."""
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    for model in (allowed / "model", outside / "model", tmp_path / "allowed-evil" / "model"):
        model.mkdir(parents=True)
        (model / "config.json").write_bytes(QWEN.read_bytes())
    (allowed / "escape").symlink_to(outside)
    (allowed / "inner-link").symlink_to(allowed / "model")
    return {"root": tmp_path, "allowed": allowed, "outside": outside}


def operator_resolver(*dirs: Path, **kwargs: Any) -> Resolver:
    return Resolver(allowed_dirs=list(dirs), implicit_token=False, **kwargs)


def refusal(resolver: Resolver, ref: str) -> str:
    with pytest.raises(LocalPathNotAllowed) as err:
        resolver.resolve(ref)
    assert err.value.permanent and err.value.reason == "LocalPathNotAllowed"
    return str(err.value)


def finishes(call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a thread; what it raised. The join bound only guards against a hang."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    assert outcome, "resolve() blocked"
    return outcome[0]


# --------------------------------------------------------------------------- allowed dirs


def test_a_path_inside_an_allowed_directory_resolves(layout: dict[str, Path]) -> None:
    resolver = operator_resolver(layout["allowed"])
    model = resolver.resolve(str(layout["allowed"] / "model"))
    assert model.source == "local" and model.config["hidden_size"] == 4096
    assert resolver.resolve(str(layout["allowed"] / "inner-link")).sha == model.sha


def test_every_refused_path_gets_the_same_message(layout: dict[str, Path]) -> None:
    """Existing or not, directory or file, escaping by symlink, .. or prefix: one message."""
    resolver = operator_resolver(layout["allowed"])
    root, allowed = layout["root"], layout["allowed"]
    refs = [
        str(layout["outside"] / "model"),  # exists, outside
        str(root / "no" / "such" / "dir"),  # does not exist, outside
        str(layout["outside"] / "model" / "config.json"),  # a file
        "/etc",
        "/proc/self/root/etc",
        str(allowed / "escape" / "model"),  # a symlink out of the allowed dir
        str(allowed / ".." / "outside" / "model"),  # .. out of it
        str(allowed / "model" / ".." / "model"),  # .. even when it stays inside
        str(root / "allowed-evil" / "model"),  # a sibling sharing the prefix
        "./model",
        "../model",
        "~/model",
        "~root",
    ]
    messages = {refusal(resolver, ref) for ref in refs}
    assert messages == {NOT_ALLOWED}


def test_no_allowed_directory_refuses_every_path(layout: dict[str, Path]) -> None:
    resolver = operator_resolver()
    assert refusal(resolver, str(layout["allowed"] / "model")) == NOT_ALLOWED


def test_a_config_json_symlink_leaving_the_allowed_directory_is_refused(
    layout: dict[str, Path],
) -> None:
    model = layout["allowed"] / "linked"
    model.mkdir()
    (model / "config.json").symlink_to(layout["outside"] / "model" / "config.json")
    assert refusal(operator_resolver(layout["allowed"]), str(model)) == NOT_ALLOWED


def test_an_allowed_directory_reached_through_a_symlink_still_works(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "m").mkdir(parents=True)
    (real / "m" / "config.json").write_bytes(QWEN.read_bytes())
    (tmp_path / "alias").symlink_to(real)
    resolver = operator_resolver(tmp_path / "alias")
    assert resolver.resolve(str(tmp_path / "alias" / "m")).config["hidden_size"] == 4096


def test_inside_an_allowed_directory_errors_are_specific(layout: dict[str, Path]) -> None:
    resolver = operator_resolver(layout["allowed"])
    with pytest.raises(ModelNotFound, match="not a directory"):
        resolver.resolve(str(layout["allowed"] / "nope"))
    (layout["allowed"] / "empty").mkdir()
    with pytest.raises(ConfigNotFound):
        resolver.resolve(str(layout["allowed"] / "empty"))


def test_the_org_repo_working_directory_fallback_is_off_in_the_operator(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hub id that happens to name a directory under the cwd is not read from disk."""
    (layout["outside"] / "org").mkdir()
    (layout["outside"] / "model").rename(layout["outside"] / "org" / "model")
    monkeypatch.chdir(layout["outside"])
    assert Resolver().resolve("org/model").source == "local"  # the CLI: as before
    with pytest.raises(HubError) as err:
        operator_resolver(layout["allowed"]).resolve("org/model")
    assert err.value.reason == "NotCached"  # it went to the (offline) Hub instead
    monkeypatch.chdir(layout["allowed"].parent)
    (layout["allowed"] / "model").rename(layout["allowed"] / "org-model")
    assert operator_resolver(layout["root"]).resolve("allowed/org-model").source == "local"


def test_the_cli_still_takes_any_path(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(layout["outside"])
    assert Resolver().resolve("./model").source == "local"
    assert Resolver().resolve(str(layout["outside"] / "model")).source == "local"


def test_the_mirror_stays_allowed_in_the_operator(tmp_path: Path) -> None:
    model = operator_resolver().resolve("Qwen/Qwen3-8B", mirror_dir=FIXTURES)
    assert model.source == "mirror"


# --------------------------------------------------------------------------- hostile files


def test_a_fifo_config_is_refused_without_hanging(tmp_path: Path) -> None:
    model = tmp_path / "org" / "fifo"
    model.mkdir(parents=True)
    os.mkfifo(model / "config.json")
    raised = finishes(lambda: Resolver().resolve(str(model)))
    assert isinstance(raised, InvalidModelConfig)
    assert "FIFO" in str(raised)
    raised = finishes(lambda: operator_resolver(tmp_path).resolve(str(model)))
    assert isinstance(raised, InvalidModelConfig)


@pytest.mark.parametrize("name", ["config.json", ".sha", "safetensors.json"])
def test_a_device_as_any_model_file_is_refused(tmp_path: Path, name: str) -> None:
    model = tmp_path / "m"
    model.mkdir()
    if name != "config.json":
        (model / "config.json").write_bytes(QWEN.read_bytes())
    (model / name).symlink_to("/dev/zero")
    raised = finishes(lambda: Resolver().resolve(str(model)))
    assert isinstance(raised, InvalidModelConfig)
    assert "character device" in str(raised)


def test_an_oversized_config_on_disk_is_refused_unread(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    with (model / "config.json").open("wb") as handle:
        handle.truncate(50 * MiB)  # sparse
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileTooLarge, match=r"52428800 bytes.*maxModelFileBytes") as err:
            Resolver().resolve(str(model))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * MiB
    assert err.value.reason == "ModelFileTooLarge" and err.value.permanent


def test_the_cap_is_the_resolvers(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_bytes(QWEN.read_bytes())
    size = QWEN.stat().st_size
    assert Resolver(max_file_bytes=size).resolve(str(model)).config["hidden_size"] == 4096
    with pytest.raises(ModelFileTooLarge):
        Resolver(max_file_bytes=size - 1).resolve(str(model))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "deeper than 64"),
        (b'{"a":' * 65 + b"{}" + b"}" * 65, "deeper than 64"),
        (b'{"vocab_size": ' + b"9" * 5_000 + b"}", "more than 100 digits"),
        (b'{"hidden_size": 4', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "must hold a JSON object"),
    ],
)
def test_hostile_json_is_an_invalid_config(tmp_path: Path, content: bytes, message: str) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_bytes(content)
    with pytest.raises(InvalidModelConfig, match=message) as err:
        Resolver().resolve(str(model))
    assert err.value.reason == "InvalidConfig"


def test_hostile_safetensors_json_only_loses_the_counts(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_bytes(QWEN.read_bytes())
    (model / "safetensors.json").write_bytes(b'{"parameters": {"BF16": ' + b"1" * 5000 + b"}}")
    assert Resolver().resolve(str(model)).safetensors is None


HOSTILE = st.one_of(
    st.binary(max_size=400),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=30,
    ).map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=1, max_value=3_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=90, max_value=6_000).map(lambda n: b'{"x": ' + b"7" * n + b"}"),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=HOSTILE)
@example(content=b'{"a": NaN, "b": -Infinity}')
@example(content=b'{"a": "\\ud800"}')
@example(content=b"\x00")
def test_any_config_bytes_resolve_or_raise_a_hub_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "config.json").write_bytes(content)
        try:
            model = operator_resolver(Path(directory)).resolve(directory)
        except HubError as exc:
            assert str(exc)
        else:
            assert isinstance(model.config, dict)


# --------------------------------------------------------------------------- settings


def test_settings_parse_the_allowed_dirs_and_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from specops.settings import SettingsError, load_settings

    monkeypatch.setenv("SPECOPS_ALLOWED_MODEL_DIRS", "/models, /data/models,")
    monkeypatch.setenv("SPECOPS_MAX_MODEL_FILE_BYTES", "1048576")
    loaded = load_settings()
    assert loaded.allowed_model_dirs == [Path("/models"), Path("/data/models")]
    assert loaded.max_model_file_bytes == 1048576
    monkeypatch.setenv("SPECOPS_ALLOWED_MODEL_DIRS", "models")
    with pytest.raises(SettingsError, match=r"SPECOPS_ALLOWED_MODEL_DIRS.*absolute"):
        load_settings()
    monkeypatch.delenv("SPECOPS_ALLOWED_MODEL_DIRS")
    monkeypatch.delenv("SPECOPS_MAX_MODEL_FILE_BYTES")
    defaults = load_settings()
    assert defaults.allowed_model_dirs == []
    assert defaults.max_model_file_bytes == 4 * MiB


def reconciler(**settings: Any) -> Any:
    from specops.controller.reconcile import Reconciler
    from specops.kube.client import KubeClient
    from specops.kube.events import EventRecorder
    from specops.metrics import OperatorMetrics
    from specops.settings import load_settings

    kube = KubeClient(client.ApiClient(client.Configuration()))  # never called here
    loaded = load_settings(prometheus_url="http://127.0.0.1:9", **settings)
    return Reconciler(loaded, kube, EventRecorder(kube, instance="t"), OperatorMetrics())


def test_the_operator_resolves_under_its_settings(layout: dict[str, Path]) -> None:
    model = str(layout["allowed"] / "model")
    closed = reconciler()
    with pytest.raises(LocalPathNotAllowed):
        asyncio.run(closed._resolve(model, "main", None))
    opened = reconciler(allowed_model_dirs=[str(layout["allowed"])], max_model_file_bytes=100)
    with pytest.raises(ModelFileTooLarge):
        asyncio.run(opened._resolve(model, "main", None))
    roomy = reconciler(allowed_model_dirs=[str(layout["allowed"])])
    assert asyncio.run(roomy._resolve(model, "main", None)).source == "local"
