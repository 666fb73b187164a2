"""Model resolution against a loopback Hub, through the real huggingface_hub client."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hubserver import FIXTURES, HubServer
from specops.hub import (
    ConfigNotFound,
    GatedModel,
    HubError,
    HubUnavailable,
    InvalidModelConfig,
    ModelNotFound,
    NotCached,
    Resolver,
    RevisionNotFound,
)

pytestmark = pytest.mark.integration

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_SAFETENSORS = {"parameters": {"BF16": 8030261248}, "total": 8030261248}


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        server.add_fixtures()
        server.repos[LLAMA].safetensors = LLAMA_SAFETENSORS
        yield server


@pytest.fixture(autouse=True)
def isolated_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's HF token and cache out of the tests."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SPECOPS_HUB_MIRROR", raising=False)


def resolver() -> Resolver:
    return Resolver()


def test_resolves_revision_to_commit_and_reads_config(hub: HubServer, tmp_path: Path) -> None:
    model = resolver().resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path, timeout=2)
    assert model.source == "hub"
    assert model.sha == hub.repos[LLAMA].refs["main"]
    assert model.config == json.loads((FIXTURES / LLAMA / "config.json").read_text())
    assert model.safetensors is not None
    assert model.safetensors.total == 8030261248
    assert f"/api/models/{LLAMA}/revision/main" in hub.paths("GET")
    assert f"/{LLAMA}/resolve/main/config.json" in hub.paths("HEAD")


def test_config_is_read_at_the_resolved_sha_even_if_the_branch_moves(
    hub: HubServer, tmp_path: Path
) -> None:
    """A push between model_info and the download must not pair a SHA with a newer config."""
    repo = hub.repos[LLAMA]
    old_sha = repo.refs["main"]
    moved = json.dumps({"moved": True}).encode()

    def push_after_model_info(method: str, path: str) -> None:
        if "/resolve/" in path and repo.refs["main"] == old_sha:
            repo.add_commit({"config.json": moved})

    hub.on_request = push_after_model_info
    model = resolver().resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path, timeout=2)
    assert model.sha == old_sha
    assert model.config["hidden_size"] == 4096
    assert f"/{LLAMA}/resolve/{old_sha}/config.json" in hub.paths()


def test_second_resolve_is_served_from_the_in_process_cache(hub: HubServer, tmp_path: Path) -> None:
    r = resolver()
    first = r.resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path, timeout=2)
    before = len(hub.requests)
    second = r.resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path, timeout=2)
    assert second == first
    assert len(hub.requests) == before


def test_branch_move_is_seen_after_the_ttl(hub: HubServer, tmp_path: Path) -> None:
    now = [1000.0]
    r = Resolver(revision_ttl=60, clock=lambda: now[0])
    old = r.resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path, timeout=2)
    config = dict(old.config, max_position_embeddings=8192)
    new_sha = hub.repos[LLAMA].add_commit({"config.json": json.dumps(config).encode()})
    now[0] += 30
    assert r.resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path, timeout=2).sha == old.sha
    now[0] += 31
    moved = r.resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path, timeout=2)
    assert moved.sha == new_sha
    assert moved.config["max_position_embeddings"] == 8192


def test_pinned_commit_and_tag_resolve(hub: HubServer, tmp_path: Path) -> None:
    repo = hub.repos[LLAMA]
    sha = repo.refs["main"]
    repo.refs["v1"] = sha
    r = resolver()
    assert r.resolve(LLAMA, sha, endpoint=hub.endpoint, cache_dir=tmp_path).sha == sha
    assert r.resolve(LLAMA, "v1", endpoint=hub.endpoint, cache_dir=tmp_path).sha == sha


def test_missing_repo_is_permanent(hub: HubServer, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no-such/model") as err:
        resolver().resolve("no-such/model", endpoint=hub.endpoint, cache_dir=tmp_path)
    assert err.value.permanent


def test_missing_revision_is_permanent_and_named(hub: HubServer, tmp_path: Path) -> None:
    with pytest.raises(RevisionNotFound, match="does-not-exist") as err:
        resolver().resolve(LLAMA, "does-not-exist", endpoint=hub.endpoint, cache_dir=tmp_path)
    assert err.value.permanent


def test_repo_without_config_json(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/weights-only", {"README.md": b"hi"})
    with pytest.raises(ConfigNotFound, match=r"config\.json"):
        resolver().resolve("org/weights-only", endpoint=hub.endpoint, cache_dir=tmp_path)


def test_truncated_config_is_an_invalid_config(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/broken", {"config.json": b'{"hidden_size": 4'})
    with pytest.raises(InvalidModelConfig, match="not valid JSON"):
        resolver().resolve("org/broken", endpoint=hub.endpoint, cache_dir=tmp_path)


def test_gated_repo_without_token_says_how_to_fix(hub: HubServer, tmp_path: Path) -> None:
    hub.repos[LLAMA].gated = True
    with pytest.raises(GatedModel, match="HF_TOKEN") as err:
        resolver().resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path)
    assert err.value.permanent


def test_gated_repo_with_wrong_token_is_gated(hub: HubServer, tmp_path: Path) -> None:
    hub.repos[LLAMA].gated = True
    hub.repos[LLAMA].allowed_tokens = {"hf_good"}
    with pytest.raises(GatedModel):
        resolver().resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path, token="hf_bad")


def test_gated_repo_with_granted_token_resolves(hub: HubServer, tmp_path: Path) -> None:
    hub.repos[LLAMA].gated = True
    hub.repos[LLAMA].allowed_tokens = {"hf_good"}
    model = resolver().resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path, token="hf_good")
    assert model.config["hidden_size"] == 4096
    assert "Bearer hf_good" in {r.authorization for r in hub.requests}


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_temporary(hub: HubServer, tmp_path: Path, status: int) -> None:
    hub.fail_next(1, status, match="/api/models/")
    with pytest.raises(HubUnavailable, match=str(status)) as err:
        resolver().resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path)
    assert not err.value.permanent


def test_rate_limit_is_temporary_with_retry_hint(hub: HubServer, tmp_path: Path) -> None:
    hub.fail_next(1, 429, match="/api/models/", retry_after=7)
    with pytest.raises(HubUnavailable, match="retry after 7s") as err:
        resolver().resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path)
    assert err.value.retry_after == 7


def test_slow_hub_times_out_as_temporary(hub: HubServer, tmp_path: Path) -> None:
    hub.delay_seconds = 1.0
    started = time.monotonic()
    with pytest.raises(HubUnavailable, match="timed out"):
        resolver().resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path, timeout=0.2)
    assert time.monotonic() - started < 5


def test_unreachable_endpoint_is_temporary(tmp_path: Path) -> None:
    with HubServer() as dead:
        endpoint = dead.endpoint
    with pytest.raises(HubUnavailable):
        resolver().resolve(LLAMA, endpoint=endpoint, cache_dir=tmp_path, timeout=1)


def test_transient_download_error_is_retried_by_the_client(hub: HubServer, tmp_path: Path) -> None:
    hub.fail_next(1, 503, match="/resolve/")
    model = resolver().resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path, timeout=2)
    assert model.config["hidden_size"] == 4096


def test_mirror_is_consulted_before_the_hub(hub: HubServer, tmp_path: Path) -> None:
    model = resolver().resolve(
        LLAMA, mirror_dir=FIXTURES, endpoint=hub.endpoint, cache_dir=tmp_path
    )
    assert model.source == "mirror"
    assert model.sha.startswith("mirror-") and len(model.sha) == len("mirror-") + 64
    assert hub.requests == []


def test_mirror_sha_file_pins_the_hub_commit(tmp_path: Path) -> None:
    entry = tmp_path / "mirror" / "org" / "model"
    entry.mkdir(parents=True)
    (entry / "config.json").write_bytes((FIXTURES / LLAMA / "config.json").read_bytes())
    (entry / ".sha").write_text("a" * 40 + "\n")
    (entry / "safetensors.json").write_text(json.dumps(LLAMA_SAFETENSORS))
    model = resolver().resolve("org/model", mirror_dir=tmp_path / "mirror")
    assert model.sha == "a" * 40
    assert model.safetensors is not None and model.safetensors.total == 8030261248
    with pytest.raises(RevisionNotFound):
        resolver().resolve("org/model", "b" * 40, mirror_dir=tmp_path / "mirror")


def test_missing_mirror_directory_is_an_error_not_a_silent_hub_lookup(tmp_path: Path) -> None:
    with pytest.raises(HubError, match="not a directory") as err:
        resolver().resolve(LLAMA, mirror_dir=tmp_path / "nope")
    assert err.value.permanent


def test_mirror_from_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECOPS_HUB_MIRROR", str(FIXTURES))
    assert resolver().resolve("Qwen/Qwen3-8B").source == "mirror"


def test_local_directory_gets_a_content_sha(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes((FIXTURES / LLAMA / "config.json").read_bytes())
    a = resolver().resolve(str(tmp_path))
    assert a.source == "local" and a.sha.startswith("local-")
    (tmp_path / "config.json").write_text(json.dumps(dict(a.config, vocab_size=1)))
    assert resolver().resolve(str(tmp_path)).sha != a.sha


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        ("/nonexistent/dir", ModelNotFound),
        ("./also/not/here", ModelNotFound),
        ("not a repo id", ModelNotFound),
        ("", ModelNotFound),
        ("~no-such-user-here/model", ModelNotFound),
    ],
)
def test_bad_references_are_named_errors(ref: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        resolver().resolve(ref)


def test_local_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigNotFound):
        resolver().resolve(str(tmp_path))


def test_offline_mode_uses_the_hf_cache(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    online = resolver().resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path)
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = resolver().resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path)
    assert (cached.sha, cached.config) == (online.sha, online.config)
    with pytest.raises(NotCached, match="HF_HUB_OFFLINE"):
        resolver().resolve("Qwen/Qwen3-8B", endpoint=hub.endpoint, cache_dir=tmp_path)


def test_hf_endpoint_and_token_from_the_environment(hub: HubServer, tmp_path: Path) -> None:
    """HF_ENDPOINT is read when huggingface_hub is imported, so this runs in a fresh process."""
    hub.repos[LLAMA].gated = True
    hub.repos[LLAMA].allowed_tokens = {"hf_env"}
    code = (
        "import json, sys; from specops.hub import resolve; "
        f"m = resolve({LLAMA!r}, timeout=2); "
        "print(json.dumps({'sha': m.sha, 'hidden': m.config['hidden_size']}))"
    )
    env = dict(
        os.environ,
        HF_ENDPOINT=hub.endpoint,
        HF_TOKEN="hf_env",
        HF_HOME=str(tmp_path / "home"),
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"sha": hub.repos[LLAMA].refs["main"], "hidden": 4096}
    assert any(r.authorization == "Bearer hf_env" for r in hub.requests)


@settings(max_examples=200, deadline=None)
@given(ref=st.text(max_size=40), revision=st.text(max_size=12))
@example(ref="~\x00", revision="")  # once raised ValueError: embedded null byte
def test_any_reference_resolves_or_raises_a_hub_error(ref: str, revision: str) -> None:
    """Offline (so nothing leaves the machine), any string is a model or a named HubError."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with tempfile.TemporaryDirectory() as cache:
            resolver().resolve(ref, revision, mirror_dir=FIXTURES, cache_dir=cache)
    except HubError as exc:
        assert str(exc)
    finally:
        del os.environ["HF_HUB_OFFLINE"]


def test_lfs_files_are_cached_under_their_sha256(hub: HubServer, tmp_path: Path) -> None:
    """The server's LFS headers are the ones huggingface_hub keys its blob cache on."""
    from huggingface_hub import hf_hub_download

    weights = b"\x00" * 1000 + b"weights"
    hub.repos[LLAMA].add_commit(
        {
            "config.json": (FIXTURES / LLAMA / "config.json").read_bytes(),
            "model.safetensors": weights,
        }
    )
    path = hf_hub_download(LLAMA, "model.safetensors", endpoint=hub.endpoint, cache_dir=tmp_path)
    assert Path(path).read_bytes() == weights
    blob = Path(path).resolve()
    assert blob.name == hashlib.sha256(weights).hexdigest()
